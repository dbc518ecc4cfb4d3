"""DiffWave: unconditional waveform diffusion with the philsyn/RF5 WaveNet (SC09, 16 kHz, 1 s clips)."""
from __future__ import annotations

from zoo.diffusion.schedule import DiscreteSchedule

from .model import WaveNet, WaveNetConfig
from .unconditional import UnconditionalWaveDiffusion

__all__ = ["WaveNet", "WaveNetConfig", "UnconditionalWaveDiffusion", "build_diffwave", "schedule_from_config",
           "sc09_config"]


def sc09_config() -> dict:
    """The model part of the RF5/philsyn SC09 ``config.json`` (release v0.1): 36 layers, 256 channels, T = 200."""
    return {
        "model": "diffwave",
        "diffusion_config": {"T": 200, "beta_0": 0.0001, "beta_T": 0.02},
        "wavenet_config": WaveNetConfig().to_dict(),
        "trainset_config": {"segment_length": 16000, "sampling_rate": 16000},
    }


def schedule_from_config(config: dict) -> DiscreteSchedule:
    """Linear schedule from ``config['diffusion_config'] = {T, beta_0, beta_T}``."""
    d = config["diffusion_config"]
    return DiscreteSchedule.linear(int(d["T"]), float(d["beta_0"]), float(d["beta_T"]))


def build_diffwave(config: dict) -> UnconditionalWaveDiffusion:
    """Build an untrained DiffWave from an RF5-style config (``diffusion_config``, ``wavenet_config``,
    ``trainset_config.{segment_length, sampling_rate}``)."""
    ts = config.get("trainset_config", {})
    return UnconditionalWaveDiffusion(
        WaveNet(WaveNetConfig.from_dict(config["wavenet_config"])),
        schedule_from_config(config),
        sample_rate=int(ts.get("sampling_rate", 16000)),
        num_samples=int(ts.get("segment_length", 16000)),
        config=config,
    )
