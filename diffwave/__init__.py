"""DiffWave: unconditional waveform diffusion with the philsyn/RF5 WaveNet (SC09, 16 kHz, 1 s clips)."""
from __future__ import annotations

from zoo.diffusion.schedule import DiscreteSchedule

from .model import WaveNet, WaveNetConfig
from .unconditional import UnconditionalWaveDiffusion

__all__ = ["WaveNet", "WaveNetConfig", "UnconditionalWaveDiffusion", "build_diffwave", "schedule_from_config"]


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
