"""Build the ``cauchy_mult`` CUDA extension (symmetric Cauchy kernel for S4 / SaShiMi).

    pip install --no-build-isolation ./extensions/cauchy

``--no-build-isolation`` is needed so that the build sees the installed torch (the extension is compiled
against it). Requirements: a CUDA build of torch, and a CUDA toolkit (nvcc + headers) whose major version
matches ``torch.version.cuda``. ``TORCH_CUDA_ARCH_LIST`` (e.g. "8.0;9.0") picks the GPU architectures; without
it the architectures of the visible GPUs are used. Unlike the upstream setup, this one FAILS when it cannot
build the extension instead of installing an empty package.
"""
from __future__ import annotations

import os
import shutil
import sys

from setuptools import setup


def fail(msg: str) -> None:
    sys.stderr.write(f"\nerror: cannot build cauchy_mult: {msg}\nSee extensions/cauchy/README.md.\n\n")
    raise SystemExit(1)


def _has_toolkit(root: str) -> bool:
    return (os.path.isfile(os.path.join(root, "bin", "nvcc"))
            and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h")))


def find_cuda_home() -> str | None:
    """CUDA_HOME/CUDA_PATH if set, else the toolkit around `nvcc` on PATH (following wrapper scripts'
    symlinks), else /usr/local/cuda. Exported as CUDA_HOME before torch.utils.cpp_extension reads it."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root:
            if not _has_toolkit(root):
                fail(f"{var}={root} does not contain bin/nvcc and include/cuda_runtime.h")
            return root
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        candidates.append(os.path.dirname(os.path.dirname(nvcc)))
    candidates.append("/usr/local/cuda")
    for root in candidates:
        if _has_toolkit(root):
            return root
    return None


try:
    import torch
except ImportError:
    fail("torch is not importable in the build environment. Install torch first, then build with "
         "`pip install --no-build-isolation ./extensions/cauchy` (build isolation hides the installed torch).")

if torch.version.cuda is None:
    fail(f"the installed torch {torch.__version__} is a CPU-only build; a CUDA build of torch is required.")

cuda_home = find_cuda_home()
if cuda_home is None:
    fail("no CUDA toolkit found (nvcc and cuda_runtime.h). Install the CUDA toolkit matching "
         f"torch.version.cuda={torch.version.cuda} and put its bin/ on PATH or set CUDA_HOME.")
os.environ["CUDA_HOME"] = cuda_home

from torch.utils.cpp_extension import BuildExtension, CUDAExtension  # noqa: E402  (reads CUDA_HOME)

if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
    fail("no GPU is visible, so the target architectures cannot be detected: set TORCH_CUDA_ARCH_LIST, "
         "e.g. TORCH_CUDA_ARCH_LIST=\"8.0;8.6;9.0\" (A100 = 8.0, RTX 30xx = 8.6, RTX 40xx = 8.9, H100 = 9.0).")

setup(
    name="cauchy_mult",
    version="0.1.0",
    description="Symmetric Cauchy kernel for S4 (SaShiMi), CUDA, complex64",
    ext_modules=[
        CUDAExtension(
            name="cauchy_mult",
            sources=["cauchy.cpp", "cauchy_cuda.cu"],  # relative to this directory (pip runs setup.py here)
            extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-lineinfo"]},
        )
    ],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.9",
    zip_safe=False,
)
