"""The S4 layer of RF5's SaShiMi (state-spaces ``diffwave`` branch): NPLR/DPLR kernel, HiPPO-LegS, bilinear
discretisation, bidirectional convolution, GLU output. State-dict names follow upstream
(``kernel.kernel.{C,log_dt,B,P,log_w_real,w_imag,omega,z}``, ``D``, ``output_linear.0.*``).

Kernel maths (N/2 conjugate pairs per channel, rank-1 correction, ``A = diag(w) - P P^*``):

- ``w = -exp(log_w_real) + i w_imag`` (Hurwitz), ``dt = exp(log_dt)``;
- generating function at the nodes ``z_k = 2(1 - omega_k)/(1 + omega_k)``, ``omega_k = exp(-2 pi i k / L_max)``:
  ``r = dt * cauchy(B_i C_j, z, w dt)`` for ``(B_i, C_j)`` in ``{B, P} x {C, conj(P)}``;
- Woodbury: ``k_f = r00 - r01 r10 / (1 + r11)``, times ``2 / (1 + omega)``; ``irfft`` to ``L_max`` samples, truncated
  to the layer's length ``L``. ``C`` is stored already multiplied by ``(I - dA^L_max)`` (upstream's length
  correction), so the result is the truncated impulse response ``k[l] = C dA^l dB``.

In eval mode the convolution kernels depend only on the weights, so their FFTs are cached per length, device and
dtype, and recomputed when any kernel parameter changes (tracked by tensor versions) or on ``train()``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cauchy import cauchy


def hippo_legs_nplr(N: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Diagonal-plus-low-rank form of the HiPPO-LegS matrix, one eigenvalue of each conjugate pair.

    Returns ``w [N/2]``, ``P [1, N/2]``, ``B [N/2]`` (complex128) with ``A_legs = V (diag(w) - P P^*) V^*`` restricted
    to the kept half.
    """
    q = torch.arange(N, dtype=torch.float64)
    r = 2 * q + 1
    row, col = q[:, None], q[None, :]
    A = -torch.where(row > col, torch.sqrt(r[:, None] * r[None, :]), torch.diag(q + 1))
    A = A * (row >= col)
    B = torch.sqrt(r)
    P = torch.sqrt(q + 0.5)
    normal = A + P[:, None] * P[None, :]                  # skew-symmetric part minus I/2: normal
    w, V = torch.linalg.eig(normal)
    keep = torch.argsort(w.imag, descending=True)[: N // 2]   # the upper half-plane member of each pair
    w, V = w[keep], V[:, keep]
    Vh = V.conj().T
    return w, (Vh @ P.to(V.dtype)).unsqueeze(0), Vh @ B.to(V.dtype)


def fft_nodes(L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``omega [L/2+1]`` and ``z = 2(1-omega)/(1+omega)`` in complex64, computed as upstream does
    (``exp(-2 pi i / L) ** arange`` in single precision, whose drift the release buffers carry)."""
    omega = torch.tensor(complex(math.cos(-2 * math.pi / L), math.sin(-2 * math.pi / L)), dtype=torch.complex64)
    omega = omega ** torch.arange(0, L // 2 + 1)
    return omega, 2 * (1 - omega) / (1 + omega)


class SSKernelNPLR(nn.Module):
    """Bidirectional NPLR SSM kernel generator for ``H`` channels, ``N/2`` complex modes each.

    Args:
        H: number of features; channels: kernels per feature (2 for a bidirectional layer).
        N: state size (``N/2`` conjugate pairs are stored); l_max: length of the kernel grid (16000).
        dt_min, dt_max: range of the initial log-uniform time steps.
    """

    PARAMS = ("C", "log_dt", "B", "P", "log_w_real", "w_imag", "omega", "z")

    def __init__(self, H: int, channels: int = 2, N: int = 64, l_max: int = 16000,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        self.H, self.N, self.channels, self.l_max = H, N // 2, channels, l_max
        w, P, B = hippo_legs_nplr(N)
        log_dt = torch.rand(H, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        C = torch.randn(channels, H, self.N, dtype=torch.complex128)
        # Upstream multiplies C by (I - dA^L) at construction (`_setup_C`, seconds to minutes of CPU). With
        # Re(w dt) <= -5e-4 and L = 16000, |dA^L| <= e^-8, so that product is C to 3e-4; C is used as stored.
        self.C = nn.Parameter(torch.view_as_real(C.to(torch.complex64)).contiguous())
        self.log_dt = nn.Parameter(log_dt.float())
        self.B = nn.Parameter(torch.view_as_real(B.expand(1, H, self.N).to(torch.complex64)).contiguous())
        self.P = nn.Parameter(torch.view_as_real(P.unsqueeze(1).expand(1, H, self.N).to(torch.complex64)).contiguous())
        self.log_w_real = nn.Parameter(torch.log(-w.real + 1e-3).float().expand(H, self.N).contiguous())
        self.w_imag = nn.Parameter(w.imag.float().expand(H, self.N).contiguous())
        omega, z = fft_nodes(l_max)
        self.register_buffer("omega", torch.view_as_real(omega).contiguous())
        self.register_buffer("z", torch.view_as_real(z).contiguous())

    def ssm_parameters(self) -> list[nn.Parameter]:
        """The state-space parameters that upstream trains with their own lr and no weight decay (all but C)."""
        return [self.log_dt, self.B, self.P, self.log_w_real, self.w_imag]

    def forward(self, L: int, backend: Optional[str] = None) -> torch.Tensor:
        """Kernels ``k [channels, H, L]`` float32, ``L <= l_max``."""
        if L > self.l_max:
            raise ValueError(f"S4 kernel of length {L} requested, but the layer was built for l_max={self.l_max}")
        dt = torch.exp(self.log_dt)
        w = torch.complex(-torch.exp(self.log_w_real), self.w_imag) * dt.unsqueeze(-1)   # (H, N)
        B, C, P = (torch.view_as_complex(p) for p in (self.B, self.C, self.P))
        omega, z = torch.view_as_complex(self.omega), torch.view_as_complex(self.z)
        Bs = torch.cat([B, P], dim=0)                        # (2, H, N): input, low-rank
        Cs = torch.cat([C, P.conj()], dim=0)                 # (channels+1, H, N): outputs, low-rank
        v = Bs.unsqueeze(1) * Cs.unsqueeze(0)                # (2, channels+1, H, N)
        r = cauchy(v, z, w, backend=backend) * dt[:, None]   # (2, channels+1, H, L/2+1)
        k_f = r[:-1, :-1] - r[:-1, -1:] * r[-1:, :-1] / (1 + r[-1:, -1:])
        k_f = k_f * 2 / (1 + omega)
        k = torch.fft.irfft(k_f)                             # (1, channels, H, l_max)
        return k[-1, ..., :L].float()


def linear_over_channels(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``weight @ x + bias`` for ``x [B, in, L]``, ``weight [out, in]``, ``bias [out, 1]``, as a 1x1 convolution
    (oneDNN fuses the bias and, on AVX-512 CPUs, runs faster than ``matmul``)."""
    return F.conv1d(x, weight.unsqueeze(-1).to(x.dtype), bias.squeeze(-1).to(x.dtype))


class TransposedLinear(nn.Module):
    """Linear map over the channel axis: ``x [..., in, L] -> [..., out, L]``; ``weight [out, in]``, ``bias [out, 1]``."""

    def __init__(self, d_input: int, d_output: int):
        super().__init__()
        layer = nn.Linear(d_input, d_output)                 # nn.Linear's default initialisation
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone().unsqueeze(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_over_channels(x, self.weight, self.bias)


class S4(nn.Module):
    """Bidirectional S4 layer: ``u [B, H, L] -> GLU(W gelu(k * u + D u)) [B, H, L]``.

    ``k * u`` sums a causal convolution with ``k0`` and an anti-causal one with ``k1``:
    ``y[n] = sum_{m<=n} u[m] k0[n-m] + sum_{m>n} u[m] k1[m-n-1]``.
    """

    def __init__(self, d_model: int, d_state: int = 64, l_max: int = 16000, dt_min: float = 1e-3,
                 dt_max: float = 1e-1):
        super().__init__()
        self.h = d_model
        self.D = nn.Parameter(torch.randn(1, d_model))
        self.kernel = nn.Module()                            # upstream's HippoSSKernel wrapper: keys kernel.kernel.*
        self.kernel.kernel = SSKernelNPLR(d_model, channels=2, N=d_state, l_max=l_max, dt_min=dt_min, dt_max=dt_max)
        self.output_linear = nn.Sequential(TransposedLinear(d_model, 2 * d_model), nn.GLU(dim=-2))
        self.cauchy_backend: Optional[str] = None
        self.cache_kernels = True        # reuse kernel FFTs in eval mode; False recomputes them on every call
        self._cache: dict = {}

    # ----- kernel FFT, cached in eval mode -----
    def _kernel_fft(self, L: int) -> torch.Tensor:
        """``rfft`` of the bidirectional kernel, zero-padded to ``2L``: ``[H, L+1]`` complex64."""
        k = self.kernel.kernel(L, backend=self.cauchy_backend)          # (2, H, L)
        k = F.pad(k[0], (0, L)) + F.pad(k[1].flip(-1), (L, 0))         # (H, 2L)
        return torch.fft.rfft(k, n=2 * L)

    def _versions(self) -> tuple:
        kern = self.kernel.kernel
        return tuple((getattr(kern, n)._version, getattr(kern, n).data_ptr()) for n in SSKernelNPLR.PARAMS)

    def cached_kernel_fft(self, L: int, device: torch.device) -> torch.Tensor:
        key = (L, device, torch.is_inference_mode_enabled())
        hit = self._cache.get(key)
        versions = self._versions()
        if hit is None or hit[0] != versions:
            with torch.no_grad():
                hit = (versions, self._kernel_fft(L))
            self._cache[key] = hit
        return hit[1]

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True):
        self.clear_cache()
        return super().train(mode)

    def _can_cache(self) -> bool:
        return self.cache_kernels and not self.training and not (torch.is_grad_enabled()
                                          and any(p.requires_grad for p in self.kernel.parameters()))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        L = u.shape[-1]
        k_f = self.cached_kernel_fft(L, u.device) if self._can_cache() else self._kernel_fft(L)
        u32 = u.float()                                       # FFTs in float32, also under bf16 autocast
        y = torch.fft.irfft(torch.fft.rfft(u32, n=2 * L) * k_f, n=2 * L)[..., :L]
        y = y + u32 * self.D.transpose(0, 1)                 # D: (1, H) -> (H, 1)
        return self.output_linear(F.gelu(y).to(u.dtype))
