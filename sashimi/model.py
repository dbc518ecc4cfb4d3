"""The SaShiMi U-Net as the DiffWave denoiser (RF5 ``SashimiDiffWave``), key-compatible with release v0.2.

``x [B, 1, L]`` noisy audio and ``t [B]`` step indices -> ``eps [B, 1, L]``. Widths 128 -> 256 -> 512 -> 256 -> 128
and lengths L -> L/4 -> L/16 for the SC09 configuration; every state-dict key starts with ``sashimi.``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from zoo.config import ConfigSection

from diffwave.layers import Conv, ZeroConv1d, embed_steps, use_legacy_weight_norm, weight_norm_weight

from .s4 import S4, TransposedLinear, linear_over_channels


@dataclass
class SashimiConfig(ConfigSection):
    """Architecture of RF5's ``DiffusionConfig`` (SC09 values as defaults)."""

    SECTION = "sashimi_config"

    d_model: int = 128
    n_layers: int = 6
    pool: list = field(default_factory=lambda: [4, 4])
    expand: int = 2
    ff: int = 2
    d_state: int = 64
    l_max: int = 16000
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    diffusion_step_embed_dim_in: int = 128
    diffusion_step_embed_dim_mid: int = 512
    diffusion_step_embed_dim_out: int = 512
    ssm_lr_max: float = 1e-3        # the SSM parameters train at min(lr, ssm_lr_max), without weight decay


class WeightNormTransposedLinear(TransposedLinear):
    """``TransposedLinear`` with legacy weight norm: ``weight_g [out, 1]``, ``weight_v [out, in]``, ``bias [out, 1]``."""

    def __init__(self, d_input: int, d_output: int):
        super().__init__(d_input, d_output)
        use_legacy_weight_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_over_channels(x, weight_norm_weight(self.weight_g, self.weight_v), self.bias)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of ``[B, H, L]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(-1, -2)).transpose(-1, -2)


class DownPool(nn.Module):
    """``[B, H, L] -> [B, H*expand, L/pool]``: fold ``pool`` neighbours into channels (``h (l s) -> (h s) l``)."""

    def __init__(self, d_input: int, expand: int, pool: int):
        super().__init__()
        self.pool = pool
        self.linear = WeightNormTransposedLinear(d_input * pool, d_input * expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, L = x.shape
        x = x.reshape(B, H, L // self.pool, self.pool).transpose(-1, -2).reshape(B, H * self.pool, L // self.pool)
        return self.linear(x)


class UpPool(nn.Module):
    """``[B, H, L] -> [B, H/expand, L*pool]``: unfold channels into time (``(h s) l -> h (l s)``); non-causal."""

    def __init__(self, d_input: int, expand: int, pool: int):
        super().__init__()
        self.pool = pool
        self.linear = WeightNormTransposedLinear(d_input, d_input // expand * pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        B, HS, L = x.shape
        return x.reshape(B, HS // self.pool, self.pool, L).transpose(-1, -2).reshape(B, HS // self.pool, L * self.pool)


class FFBlock(nn.Module):
    """Residual feed-forward block: ``x + W2 gelu(W1 norm(x))``; keys ``layer.ff.{0.0,2}``, ``norm``."""

    def __init__(self, d_model: int, expand: int):
        super().__init__()
        self.layer = nn.Module()
        self.layer.ff = nn.Sequential(
            nn.Sequential(TransposedLinear(d_model, d_model * expand), nn.GELU()),
            nn.Identity(),                                   # upstream's (disabled) dropout slot
            TransposedLinear(d_model * expand, d_model),
        )
        self.norm = ChannelLayerNorm(d_model)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.layer.ff(self.norm(x))


class DiffWaveS4Block(nn.Module):
    """Residual S4 block with the step embedding: ``x + S4(norm(x) + fc_t(emb))``."""

    def __init__(self, d_model: int, cfg: SashimiConfig):
        super().__init__()
        self.fc_t = nn.Linear(cfg.diffusion_step_embed_dim_out, d_model)
        self.layer = S4(d_model, d_state=cfg.d_state, l_max=cfg.l_max, dt_min=cfg.dt_min, dt_max=cfg.dt_max)
        self.norm = ChannelLayerNorm(d_model)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        y = self.norm(x) + self.fc_t(emb).unsqueeze(-1).to(x.dtype)
        return x + self.layer(y)


class Sashimi(nn.Module):
    """The U-Net: ``d_layers`` (blocks then DownPool per level), ``c_layers``, ``u_layers`` (UpPool then blocks)."""

    def __init__(self, cfg: SashimiConfig):
        super().__init__()
        H = cfg.d_model
        self.init_conv = nn.Sequential(Conv(1, H, kernel_size=1), nn.ReLU())
        self.fc_t1 = nn.Linear(cfg.diffusion_step_embed_dim_in, cfg.diffusion_step_embed_dim_mid)
        self.fc_t2 = nn.Linear(cfg.diffusion_step_embed_dim_mid, cfg.diffusion_step_embed_dim_out)

        def blocks(dim):
            out = []
            for _ in range(cfg.n_layers):
                out.append(DiffWaveS4Block(dim, cfg))
                if cfg.ff > 0:
                    out.append(FFBlock(dim, cfg.ff))
            return out

        d_layers = []
        for p in cfg.pool:
            d_layers += blocks(H) + [DownPool(H, cfg.expand, p)]
            H *= cfg.expand
        self.d_layers = nn.ModuleList(d_layers)
        self.c_layers = nn.ModuleList(blocks(H))
        u_layers = []
        for p in cfg.pool[::-1]:
            H //= cfg.expand
            u_layers.append(nn.ModuleList([UpPool(H * cfg.expand, cfg.expand, p)] + blocks(H)))
        self.u_layers = nn.ModuleList(u_layers)
        self.norm = nn.LayerNorm(H)
        self.final_conv = nn.Sequential(Conv(H, H, kernel_size=1), nn.ReLU(), ZeroConv1d(H, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = embed_steps(t, self.fc_t1, self.fc_t2)
        x = self.init_conv(x)
        skips = [x]
        for layer in self.d_layers:
            x = layer(x, emb) if not isinstance(layer, DownPool) else layer(x)
            skips.append(x)
        for layer in self.c_layers:
            x = layer(x, emb)
        x = x + skips.pop()
        for block in self.u_layers:
            for layer in block:
                x = layer(x, emb) if not isinstance(layer, UpPool) else layer(x)
                x = x + skips.pop()
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.final_conv(x)


class SashimiDiffWave(nn.Module):
    """Denoiser backbone ``(x [B, 1, L], t [B]) -> eps [B, 1, L]``; keys under ``sashimi.`` as in RF5's release."""

    def __init__(self, cfg: Optional[SashimiConfig] = None):
        super().__init__()
        self.config = cfg or SashimiConfig()
        self.sashimi = Sashimi(self.config)

    def s4_layers(self) -> list[S4]:
        return [m for m in self.modules() if isinstance(m, S4)]

    def set_cauchy_backend(self, backend: Optional[str]) -> None:
        """Force a Cauchy backend (``'cuda'``, ``'keops'``, ``'torch'``) or ``None`` for automatic choice."""
        for layer in self.s4_layers():
            layer.cauchy_backend = backend
            layer.clear_cache()

    def optimizer_param_groups(self, lr: float) -> list[dict]:
        """Two groups as in S4 upstream: the SSM parameters (A, B, P, dt) at ``min(lr, ssm_lr_max)`` without weight
        decay, everything else at ``lr``."""
        ssm = {id(p) for layer in self.s4_layers() for p in layer.kernel.kernel.ssm_parameters()}
        rest = [p for p in self.parameters() if id(p) not in ssm]
        ssm_params = [p for p in self.parameters() if id(p) in ssm]
        return [{"params": rest, "lr": lr},
                {"params": ssm_params, "lr": min(lr, self.config.ssm_lr_max), "weight_decay": 0.0}]

    def set_kernel_cache(self, enabled: bool) -> None:
        """Turn eval-mode reuse of the S4 kernels on or off (off: recompute on every call, as upstream)."""
        for layer in self.s4_layers():
            layer.cache_kernels = enabled
            layer.clear_cache()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.sashimi(x, t)
