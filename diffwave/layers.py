"""Building blocks shared by the DiffWave WaveNet and the SaShiMi U-Net (RF5/philsyn layout and key names)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def weight_norm_weight(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``w = g * v / ||v||``, the norm taken over every dimension but the first (legacy weight norm, ``dim=0``)."""
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
    return v * (g / norm)


def use_legacy_weight_norm(module: nn.Module) -> None:
    """Replace ``module.weight`` by the parameters ``weight_v`` (its value) and ``weight_g`` (the norm of every
    slice along the first dimension, shaped ``[out, 1, ...]``): the state-dict layout of the deprecated
    ``torch.nn.utils.weight_norm(dim=0)``. The module's forward must then use :func:`weight_norm_weight`."""
    v = module.weight.detach().clone()
    del module.weight
    module.weight_v = nn.Parameter(v)
    module.weight_g = nn.Parameter(v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1))))


class WeightNormConv1d(nn.Conv1d):
    """``nn.Conv1d`` with legacy weight normalisation: parameters ``weight_g [out,1,1]``, ``weight_v``, ``bias``.

    Holds the state-dict names of ``torch.nn.utils.weight_norm`` (as in upstream checkpoints) without using that
    deprecated API; ``weight`` is recomputed from ``g`` and ``v`` on every call.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        use_legacy_weight_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, weight_norm_weight(self.weight_g, self.weight_v), self.bias)


class Conv(nn.Module):
    """Weight-normed ``Conv1d`` with "same" padding for odd kernels; key prefix ``conv.`` as upstream."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        # default Conv1d initialisation: upstream's kaiming_normal_ on the weight-normed ``.weight`` has no effect
        self.conv = WeightNormConv1d(in_channels, out_channels, kernel_size, dilation=dilation,
                                     padding=dilation * (kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ZeroConv1d(nn.Module):
    """1x1 ``Conv1d`` initialised to zero (no weight norm); key prefix ``conv.``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def step_embedding(t: torch.Tensor, dim: int = 128) -> torch.Tensor:
    """Sinusoidal diffusion-step embedding of DiffWave upstream.

    ``f_j = exp(-j ln(10000) / (dim/2 - 1))`` (decreasing frequencies), ``emb = [sin(t f), cos(t f)]``.

    Args:
        t: ``[B]`` or ``[B, 1]`` step indices (0-based; int or float).
    Returns:
        ``[B, dim]`` float32.
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"step embedding dimension must be even and >= 4, got {dim}")
    t = t.reshape(-1, 1).to(torch.float32)
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = t * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def embed_steps(t: torch.Tensor, fc_t1: nn.Linear, fc_t2: nn.Linear) -> torch.Tensor:
    """``swish(fc_t2(swish(fc_t1(sinusoid(t)))))``: ``[B]`` step indices -> ``[B, fc_t2.out_features]``.

    The two linear layers live in the caller so that their state-dict keys stay where upstream has them
    (``residual_layer.fc_t1`` in DiffWave, ``sashimi.fc_t1`` in SaShiMi).
    """
    emb = step_embedding(t, fc_t1.in_features).to(fc_t1.weight.dtype)
    return F.silu(fc_t2(F.silu(fc_t1(emb))))
