"""DiffSinger (Liu et al. 2022, MoonInTheRiver/DiffSinger): the shallow-diffusion mel decoder.

- :class:`DiffNet` (``net.py``): the WaveNet noise predictor, ``(spec [B,1,M,T], t [B], cond [B,H,T]) -> [B,1,M,T]``;
- :class:`DiffSingerDecoder` (``decoder.py``): the ``GaussianDiffusion`` decoder, condition ``[B,T,H]`` -> mel
  ``[B,T,M]`` with the pndm / ddpm / ddim / dpm-solver++ samplers and shallow diffusion from ``x_start``;
- ``release.py``: reading the upstream release zips (``config.yaml`` + ``model_ckpt_steps_*.ckpt``);
- ``hifigan.py`` / ``vocoder.py``: the HifiGAN-Singing (NSF) vocoder of the release, mel ``[B,T,80]`` -> 24 kHz wave.
"""
from __future__ import annotations

from .decoder import DiffSingerDecoder, make_betas
from .net import DiffNet
from .release import DEFAULT_RELEASE, RELEASES, load_decoder, release_config
from .vocoder import DiffSingerHifiGAN, load_vocoder

__all__ = ["DiffNet", "DiffSingerDecoder", "DiffSingerHifiGAN", "DEFAULT_RELEASE", "RELEASES", "load_decoder",
           "load_vocoder", "make_betas", "release_config"]
