"""Conjugate-pair ("symmetric") Cauchy kernel used by the S4 layers of SaShiMi.

For v (..., N) and w (..., N) complex (broadcast against each other) and nodes z (L,) complex::

    r[..., l] = sum_n  v_n / (z_l - w_n)  +  conj(v_n) / (z_l - conj(w_n))

Three interchangeable backends compute it:

``'cuda'``
    the compiled extension ``cauchy_mult`` (``pip install --no-build-isolation ./extensions/cauchy``);
    CUDA tensors, complex64 only.
``'keops'``
    pykeops ``Genred`` on the real views, compiled on first use; runs on the tensors' own device
    (``backend='CPU'`` for CPU tensors, ``'GPU'`` for CUDA tensors).
``'torch'``
    pure PyTorch, always available, exact and memory-bounded: batch groups and nodes are processed in
    chunks so that no intermediate exceeds :data:`CHUNK_BYTES`, in the forward and in the backward pass
    (a custom :class:`torch.autograd.Function` recomputes the chunks instead of saving them).

With ``backend=None`` the backend is picked by :func:`select_backend`: the environment variable
``ZOO_CAUCHY_BACKEND`` if set; else, for CUDA tensors, ``'cuda'`` if importable, then ``'keops'`` if pykeops
works on the GPU, then ``'torch'``; for CPU tensors ``'torch'``, which measured faster than pykeops' CPU
backend here (``benchmarks/bench_cauchy.py``) and needs no compilation (pykeops stays available explicitly). The first use of each (backend, device) pair is logged once at
INFO level on the ``sashimi.cauchy`` logger.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional, Union

import torch

__all__ = ["cauchy", "available_backends", "select_backend", "BACKENDS", "CHUNK_BYTES", "CUDA_MAX_N", "ENV_VAR"]

logger = logging.getLogger("sashimi.cauchy")

#: All backends.
BACKENDS = ("cuda", "keops", "torch")
#: Automatic choice per device type, in order of preference.
PREFERENCE = {"cuda": ("cuda", "keops", "torch"), "cpu": ("torch",)}
#: Environment variable that forces a backend ("cuda", "keops" or "torch"; "" or "auto" = automatic).
ENV_VAR = "ZOO_CAUCHY_BACKEND"
#: Upper bound, in bytes, on any one (groups, N, nodes) intermediate of the torch backend.
CHUNK_BYTES = 32 * 2 ** 20
#: Largest N (modes per row) the compiled 'cuda' extension accepts.
CUDA_MAX_N = 1024

_INSTALL_HINT = {
    "cuda": ("the 'cuda' Cauchy backend needs the compiled extension `cauchy_mult`: install it with "
             "`pip install --no-build-isolation ./extensions/cauchy` (needs a CUDA toolkit matching "
             "torch.version.cuda; see extensions/cauchy/README.md); it runs on CUDA tensors of dtype "
             "complex64 only"),
    "keops": ("the 'keops' Cauchy backend needs pykeops (`pip install pykeops`) and a working compiler for "
              "the device: g++ for CPU tensors, a CUDA-enabled pykeops (CUDA toolkit with nvrtc) for CUDA "
              "tensors"),
}

_lock = threading.Lock()
_logged: set = set()
_keops_status: dict = {}      # device string -> (ok, reason)
_cuda_ext_status: Optional[tuple] = None


# ---------------------------------------------------------------------------------------------------
# Availability checks
# ---------------------------------------------------------------------------------------------------

def _as_device(device: Union[torch.device, str, None]) -> torch.device:
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _cuda_ext_available() -> tuple[bool, str]:
    """(importable, reason) for the compiled extension ``cauchy_mult``."""
    global _cuda_ext_status
    if _cuda_ext_status is None:
        try:
            import cauchy_mult  # noqa: F401
            _cuda_ext_status = (True, "")
        except Exception as exc:  # ImportError, or a broken/mismatched build (OSError, undefined symbol)
            _cuda_ext_status = (False, f"{type(exc).__name__}: {exc}")
    return _cuda_ext_status


def _keops_works(device: torch.device) -> tuple[bool, str]:
    """(works, reason): pykeops imports and the Cauchy formula compiles and runs on ``device``.

    The probe compiles the float32 formula (the one a complex64 call needs anyway; pykeops caches it) and
    runs it on a tiny input. The outcome is cached per device for the life of the process.
    """
    key = str(device)
    with _lock:
        if key in _keops_status:
            return _keops_status[key]
    try:
        if device.type == "cuda":
            import pykeops.config
            if not getattr(pykeops.config, "gpu_available", False):
                raise RuntimeError("pykeops was set up without CUDA (no CUDA libraries / nvrtc found)")
        elif device.type != "cpu":
            raise RuntimeError(f"pykeops does not support device type {device.type!r}")
        # fixed probe values (the global RNG is left alone)
        t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        v = torch.complex(torch.cos(t), torch.sin(2 * t)).to(device)
        w = torch.complex(-0.5 - 0.1 * t, 3 * torch.cos(t)).to(device)
        z = torch.complex(torch.zeros(5), torch.linspace(-4, 4, 5)).to(device)
        with torch.no_grad():
            got = _cauchy_keops(v, z, w)
            ref = _cauchy_naive(v, z, w)
        if not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
            raise RuntimeError("pykeops returned wrong values on a probe input")
        status = (True, "")
    except Exception as exc:
        status = (False, f"{type(exc).__name__}: {exc}")
        if not (isinstance(exc, ImportError) and "pykeops" in str(exc)):
            logger.warning("pykeops is installed but does not work on %s, so it is not used there: %s",
                           device, status[1])
    with _lock:
        _keops_status[key] = status
    return status


def _check_backend(name: str, device: torch.device, dtype: torch.dtype) -> tuple[bool, str]:
    """(usable, reason) for backend ``name`` on ``device`` with complex dtype ``dtype``."""
    if name == "torch":
        return True, ""
    if name == "cuda":
        if device.type != "cuda":
            return False, f"it needs CUDA tensors, got device {device}"
        if dtype != torch.complex64:
            return False, f"it supports complex64 only, got {dtype}"
        return _cuda_ext_available()
    if name == "keops":
        if dtype not in (torch.complex64, torch.complex128):
            return False, f"it supports complex64/complex128 only, got {dtype}"
        return _keops_works(device)
    raise ValueError(f"unknown Cauchy backend {name!r}; choose one of {', '.join(BACKENDS)}")


def available_backends(device: Union[torch.device, str] = "cpu") -> list[str]:
    """Backends usable on ``device`` for complex64 inputs, in order of preference ('torch' is always there).

    Probing 'keops' compiles its formula on the first call for a device (cached by pykeops afterwards).
    """
    device = _as_device(device)
    return [b for b in BACKENDS if _check_backend(b, device, torch.complex64)[0]]


def select_backend(device: Union[torch.device, str, None], dtype: torch.dtype = torch.complex64,
                   backend: Optional[str] = None) -> str:
    """Name of the backend to use for tensors on ``device`` of complex dtype ``dtype``.

    ``backend`` (or else the environment variable ``ZOO_CAUCHY_BACKEND``) forces a backend; an unknown
    name raises ``ValueError`` and an unusable one ``RuntimeError`` saying how to install it. Otherwise the
    first usable backend of :data:`PREFERENCE` for the device type is returned.
    """
    device = _as_device(device)
    dtype = _complex_dtype(dtype)
    source = "backend argument"
    if backend is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if env and env.lower() != "auto":
            backend, source = env, f"environment variable {ENV_VAR}"
    if backend is not None:
        name = backend.strip().lower()
        if name not in BACKENDS:
            raise ValueError(f"unknown Cauchy backend {backend!r} (from the {source}); "
                             f"choose one of {', '.join(BACKENDS)}")
        ok, reason = _check_backend(name, device, dtype)
        if not ok:
            raise RuntimeError(f"Cauchy backend {name!r} (from the {source}) is not usable on {device} "
                               f"with {dtype}: {reason}. Note: {_INSTALL_HINT[name]}.")
        return name
    for name in PREFERENCE.get(device.type, ("torch",)):
        if _check_backend(name, device, dtype)[0]:
            return name
    return "torch"


def _log_once(name: str, device: torch.device) -> None:
    key = (name, str(device))
    if key in _logged:
        return
    with _lock:
        if key in _logged:
            return
        _logged.add(key)
    logger.info("Cauchy kernel backend: %s (%s)", name, device)


# ---------------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------------

def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype.is_complex:
        return dtype
    if dtype in (torch.float64,):
        return torch.complex128
    if dtype in (torch.float16, torch.bfloat16, torch.float32):
        return torch.complex64
    raise TypeError(f"the Cauchy kernel needs complex or floating inputs, got {dtype}")


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """Symmetric Cauchy sum ``sum_n v_n/(z_l - w_n) + conj(v_n)/(z_l - conj(w_n))``.

    Args:
        v: (..., N) complex.
        z: (L,) complex nodes (squeezed to 1-D).
        w: (..., N) complex, broadcastable against ``v``.
        backend: 'cuda', 'keops' or 'torch'; ``None`` picks one (see :func:`select_backend`).

    Returns:
        (..., L) complex tensor of ``v``'s (complex) dtype; its batch shape is the broadcast batch shape
        of ``v`` and ``w``.
    """
    out_dtype = _complex_dtype(v.dtype)
    dtype = torch.complex64 if out_dtype == torch.complex32 else out_dtype
    v, w, z = v.to(dtype), w.to(dtype), z.to(dtype)
    z = z.squeeze()
    if z.dim() == 0:
        z = z.reshape(1)
    if z.dim() != 1:
        raise ValueError(f"z must be 1-D after squeezing, got shape {tuple(z.shape)}")
    if v.dim() == 0 or w.dim() == 0 or v.shape[-1] != w.shape[-1]:
        raise ValueError(f"v and w must share their last dimension N, got {tuple(v.shape)} and {tuple(w.shape)}")
    if not (v.device == w.device == z.device):
        raise ValueError(f"v, w and z must be on one device, got {v.device}, {w.device}, {z.device}")
    name = select_backend(v.device, dtype, backend)
    if name == "cuda" and v.shape[-1] > CUDA_MAX_N:
        raise ValueError(f"the 'cuda' Cauchy backend supports N <= {CUDA_MAX_N} modes, got N={v.shape[-1]}; "
                         f"use backend='torch' or 'keops' (or {ENV_VAR}=torch)")
    _log_once(name, _as_device(v.device))
    if name == "torch":
        out = _cauchy_torch(v, z, w)
    elif name == "keops":
        out = _cauchy_keops(v, z, w)
    else:
        out = _cauchy_cuda(v, z, w)
    return out if out.dtype == out_dtype else out.to(out_dtype)


def _cauchy_naive(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Direct formula, materialising (..., N, L): for small inputs and probes only."""
    z = z.reshape(-1)
    return (v.unsqueeze(-1) / (z - w.unsqueeze(-1)) + v.conj().unsqueeze(-1) / (z - w.conj().unsqueeze(-1))).sum(-2)


# ---------------------------------------------------------------------------------------------------
# 'torch' backend
# ---------------------------------------------------------------------------------------------------

def _split_shared(v: torch.Tensor, w: torch.Tensor):
    """Arrange v as (M, G, N) and w as (G, N), where w is constant along the M axis.

    The batch dimensions along which w is broadcast (size 1 in w, larger in v) form M: the reciprocals
    1/(z - w) are computed once per group and applied to all M rows by a batched matmul. Returns
    (v3, w2, perm_shape, perm) where perm orders the batch dims as (shared..., group...).
    """
    n = v.shape[-1]
    batch = torch.broadcast_shapes(v.shape[:-1], w.shape[:-1])
    nd = len(batch)
    w_shape = (1,) * (nd - (w.dim() - 1)) + tuple(w.shape[:-1])
    shared = [i for i in range(nd) if w_shape[i] == 1 and batch[i] > 1]
    group = [i for i in range(nd) if i not in shared]
    perm = shared + group
    m = 1
    for i in shared:
        m *= batch[i]
    g = 1
    for i in group:
        g *= batch[i]
    v3 = v.expand(*batch, n).permute(*perm, nd).reshape(m, g, n)
    w_full = w.reshape(*w_shape, n).expand(*[1 if i in shared else batch[i] for i in range(nd)], n)
    w2 = w_full.permute(*perm, nd).reshape(g, n)
    return v3, w2, batch, perm


def _chunks(g: int, n: int, m: int, length: int, itemsize: int) -> tuple[int, int]:
    """(groups per chunk, nodes per chunk) keeping (groups, 2N or M, nodes) tensors under CHUNK_BYTES."""
    width = max(2 * n, m, 1)
    lc = max(1, min(length, CHUNK_BYTES // (width * itemsize)))
    gc = max(1, min(g, CHUNK_BYTES // (width * lc * itemsize)))
    return gc, lc


class _Workspace:
    """One flat buffer reused for every chunk (fresh large allocations page-fault on every chunk)."""

    def __init__(self, numel: int, like: torch.Tensor):
        self.flat = like.new_empty(numel)

    def get(self, *shape: int) -> torch.Tensor:
        numel = 1
        for s in shape:
            numel *= s
        return self.flat[:numel].view(*shape)


def _chunk_ranges(g: int, length: int, gc: int, lc: int):
    for g0 in range(0, g, gc):
        for l0 in range(0, length, lc):
            yield g0, min(g, g0 + gc), l0, min(length, l0 + lc)


def _reciprocals(ws: _Workspace, w2c: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
    """K = 1/(z - [w, conj w]) of shape (groups, 2N, nodes) for w2c = [w, conj w] (groups, 2N).

    torch's complex reciprocal is scaled (no overflow for huge |z|; 1/inf = 0).
    """
    k = ws.get(w2c.shape[0], w2c.shape[1], zc.shape[0])
    torch.sub(zc, w2c.unsqueeze(-1), out=k)
    return k.reciprocal_()


class _CauchyTorchFn(torch.autograd.Function):
    """r (M, G, L) = v (M, G, N) @ 1/(z - w) + conj(v) @ 1/(z - conj w), chunked in G and L.

    w (G, N) is shared by the M rows of a group, so each reciprocal is computed once per group and the
    sums over N are batched matmuls. The backward pass recomputes the reciprocals chunk by chunk; only
    v, z and w are saved.
    """

    @staticmethod
    def forward(ctx, v, z, w):
        m, g, n = v.shape
        length = z.shape[0]
        out = v.new_empty(m, g, length)
        w2 = torch.cat([w, w.conj()], dim=-1)                       # (G, 2N)
        v2 = torch.cat([v, v.conj()], dim=-1).transpose(0, 1)       # (G, M, 2N)
        gc, lc = _chunks(g, n, m, length, v.element_size())
        ws_k = _Workspace(gc * 2 * n * lc, v)
        ws_o = _Workspace(gc * m * lc, v)
        for g0, g1, l0, l1 in _chunk_ranges(g, length, gc, lc):
            k = _reciprocals(ws_k, w2[g0:g1], z[l0:l1])             # (gc, 2N, lc)
            o = torch.matmul(v2[g0:g1], k, out=ws_o.get(g1 - g0, m, l1 - l0))
            out[:, g0:g1, l0:l1] = o.transpose(0, 1)
        ctx.save_for_backward(v, z, w)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        v, z, w = ctx.saved_tensors
        need_v, need_z, need_w = ctx.needs_input_grad[:3]
        m, g, n = v.shape
        length = z.shape[0]
        grad = grad.to(v.dtype)
        w2 = torch.cat([w, w.conj()], dim=-1)
        v2 = torch.cat([v, v.conj()], dim=-1).transpose(0, 1)       # (G, M, 2N)
        vt = v.transpose(0, 1)                                       # (G, M, N)
        gv = torch.zeros(g, m, n, dtype=v.dtype, device=v.device) if need_v else None
        gw = torch.zeros(g, n, dtype=v.dtype, device=v.device) if need_w else None
        gz = torch.zeros(length, dtype=v.dtype, device=v.device) if need_z else None
        gc, lc = _chunks(g, n, m, length, v.element_size())
        ws_k = _Workspace(gc * 2 * n * lc, v)
        ws_g = _Workspace(gc * m * lc, v)
        for g0, g1, l0, l1 in _chunk_ranges(g, length, gc, lc):
            gr = ws_g.get(g1 - g0, m, l1 - l0)
            gr.copy_(grad[:, g0:g1, l0:l1].transpose(0, 1))         # (gc, M, lc)
            k = _reciprocals(ws_k, w2[g0:g1], z[l0:l1])             # (gc, 2N, lc) = [K1; K2]
            if need_v:
                # dL/dv* = sum_l g conj(K1) + conj(g) K2;  t = g @ K^H, computed as (K @ g^H)^H
                t = torch.matmul(k, gr.mH).mH                        # (gc, M, 2N)
                gv[g0:g1] += t[..., :n] + t[..., n:].conj()
            if not (need_w or need_z):
                continue
            k.square_()                                              # [K1^2; K2^2] = d/dw, d/dconj(w)
            if need_w:
                # dL/dw* = sum_{m,l} g conj(v K1^2) + conj(g) conj(v) K2^2
                u = torch.matmul(k, gr.mH).mH                        # (gc, M, 2N)
                vg = vt[g0:g1]
                gw[g0:g1] += (vg.conj() * u[..., :n]).sum(1) + (vg * u[..., n:]).sum(1).conj()
            if need_z:
                # dL/dz* = -sum_{groups, m} g conj(v @ K1^2 + conj(v) @ K2^2)
                s = torch.matmul(v2[g0:g1], k)                       # (gc, M, lc)
                gz[l0:l1] -= (gr * s.conj()).sum((0, 1))
        return (gv.transpose(0, 1) if need_v else None), gz, gw


def _cauchy_torch(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    v3, w2, batch, perm = _split_shared(v, w)
    out = _CauchyTorchFn.apply(v3, z, w2)                            # (M, G, L)
    nd = len(batch)
    out = out.reshape(*[batch[i] for i in perm], z.shape[0])
    if perm != list(range(nd)):
        inv = [0] * nd
        for j, i in enumerate(perm):
            inv[i] = j
        out = out.permute(*inv, nd).contiguous()
    return out


# ---------------------------------------------------------------------------------------------------
# 'keops' backend
# ---------------------------------------------------------------------------------------------------

_KEOPS_FORMULA = "ComplexDivide(v, z - w) + ComplexDivide(Conj(v), z - Conj(w))"
_keops_routine = None


def _keops_genred():
    global _keops_routine
    if _keops_routine is None:
        from pykeops.torch import Genred
        _keops_routine = Genred(_KEOPS_FORMULA, ["v = Vj(2)", "z = Vi(2)", "w = Vj(2)"],
                                reduction_op="Sum", axis=1)
    return _keops_routine


def _cauchy_keops(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    batch = torch.broadcast_shapes(v.shape[:-1], w.shape[:-1])
    n = v.shape[-1]
    rows = 1
    for s in batch:
        rows *= s
    vr = torch.view_as_real(v.expand(*batch, n).reshape(rows, n).contiguous()).contiguous()  # (R, N, 2)
    wr = torch.view_as_real(w.expand(*batch, n).reshape(rows, n).contiguous()).contiguous()
    zr = torch.view_as_real(z.contiguous()).unsqueeze(0)                                      # (1, L, 2)
    device = v.device
    kw = {"backend": "GPU", "device_id": device.index or 0} if device.type == "cuda" else {"backend": "CPU"}
    out = _keops_genred()(vr, zr, wr, **kw)                           # (R, L, 2)
    return torch.view_as_complex(out.contiguous()).reshape(*batch, z.shape[0])


# ---------------------------------------------------------------------------------------------------
# 'cuda' backend
# ---------------------------------------------------------------------------------------------------

class _CauchyCudaFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, z, w):
        import cauchy_mult
        ctx.save_for_backward(v, z, w)
        return cauchy_mult.cauchy_mult_sym_fwd(v, z, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        import cauchy_mult
        v, z, w = ctx.saved_tensors
        need_v, need_z, need_w = ctx.needs_input_grad[:3]
        gv = gw = gz = None
        grad = grad.contiguous()
        if need_v or need_w:
            gv, gw = cauchy_mult.cauchy_mult_sym_bwd(v, z, w, grad)
        if need_z:  # nodes are buffers in S4; their rarely needed gradient reuses the chunked torch code
            gz = _cauchy_z_grad(v, z, w, grad)
        return (gv if need_v else None), gz, (gw if need_w else None)


def _cauchy_z_grad(v, z, w, grad):
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        out = _CauchyTorchFn.apply(v.detach().unsqueeze(0), zz, w.detach())
        (gz,) = torch.autograd.grad(out, zz, grad.unsqueeze(0))
    return gz


def _cauchy_cuda(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    batch = torch.broadcast_shapes(v.shape[:-1], w.shape[:-1])
    n = v.shape[-1]
    v2 = v.expand(*batch, n).reshape(-1, n).contiguous()
    w2 = w.expand(*batch, n).reshape(-1, n).contiguous()
    out = _CauchyCudaFn.apply(v2, z.contiguous(), w2)
    return out.reshape(*batch, z.shape[0])
