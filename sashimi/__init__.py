"""SaShiMi (Goel et al. 2022) as the DiffWave backbone: RF5's ``SashimiDiffWave`` with an exact S4 on every device."""
from __future__ import annotations

from diffwave import schedule_from_config
from diffwave.unconditional import UnconditionalWaveDiffusion

from .model import SashimiConfig, SashimiDiffWave

__all__ = ["SashimiConfig", "SashimiDiffWave", "build_sashimi", "sc09_config"]


def sc09_config() -> dict:
    """RF5's SaShiMi SC09 model: d_model 128, 6 layers per level, pools [4, 4]; diffusion T = 200 (v0.1 config)."""
    return {
        "model": "sashimi",
        "diffusion_config": {"T": 200, "beta_0": 0.0001, "beta_T": 0.02},
        "sashimi_config": SashimiConfig().to_dict(),
        "trainset_config": {"segment_length": 16000, "sampling_rate": 16000},
    }


def build_sashimi(config: dict) -> UnconditionalWaveDiffusion:
    """Build an untrained SaShiMi-DiffWave from a config with ``diffusion_config``, ``sashimi_config`` and
    ``trainset_config.{segment_length, sampling_rate}``."""
    ts = config.get("trainset_config", {})
    cfg = SashimiConfig.from_dict(config.get("sashimi_config", {}))
    length = int(ts.get("segment_length", 16000))
    factor = 1
    for p in cfg.pool:
        factor *= p
    if length % factor or length > cfg.l_max:
        raise ValueError(f"segment_length {length} must be a multiple of {factor} (the pooling) and <= l_max "
                         f"{cfg.l_max}")
    return UnconditionalWaveDiffusion(SashimiDiffWave(cfg), schedule_from_config(config),
                                      sample_rate=int(ts.get("sampling_rate", 16000)), num_samples=length,
                                      config=config)
