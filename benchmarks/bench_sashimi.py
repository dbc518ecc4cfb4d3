"""SaShiMi-DiffWave denoiser timings: first call (computes the 30 S4 kernels) and cached calls, per Cauchy backend.

    python benchmarks/bench_sashimi.py [--reps 5] [--device cpu|cuda] [--backends torch keops cuda]
        [--generate N] [--json out.json]

Each backend runs in a fresh subprocess, so that its peak resident memory (``ru_maxrss``; on CUDA
``max_memory_allocated``) belongs to that backend alone. Batch 1 x 16000 samples, random weights, eval mode.
Targets (2-core CPU): cached call <= 1.5 s, first call <= 10 s, peak memory of a full forward < 3 GiB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _common import machine_info, median_time, peak_rss_mb, print_table  # noqa: E402


def run_case(backend: str, device: str, reps: int, generate: int) -> dict:
    """Measure one backend in this process; returns a dict of figures."""
    from sashimi import build_sashimi, sc09_config

    torch.manual_seed(0)
    model = build_sashimi(sc09_config()).eval().to(device)
    with torch.no_grad():     # the zero-initialised output layer would make every output 0
        model.backbone.sashimi.final_conv[2].conv.weight.normal_(0, 0.05)
    model.backbone.set_cauchy_backend(backend)
    x = torch.randn(1, 1, 16000, device=device)
    t = torch.tensor([100], device=device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_model = peak_rss_mb()
    with torch.inference_mode():
        t0 = time.perf_counter()
        y32 = model.denoiser(x, t)
        if cuda:
            torch.cuda.synchronize()
        first = time.perf_counter() - t0
        rss_first = peak_rss_mb()
        cached, _ = median_time(lambda: model.denoiser(x, t), reps=reps, warmup=1)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            cached_bf16, _ = median_time(lambda: model.denoiser(x, t), reps=reps, warmup=1)
            y16 = model.denoiser(x, t).float()
    out = {
        "backend": backend, "device": device, "first_call_s": first, "cached_call_s": cached,
        "cached_call_bf16_s": cached_bf16,
        "bf16_rel_err": float((y16 - y32).norm() / y32.norm()),
        "rss_after_build_mb": rss_model, "peak_rss_first_call_mb": rss_first, "peak_rss_mb": peak_rss_mb(),
    }
    if cuda:
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    if generate:
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        model.unconditional_generate(generate, sampler="dpm-solver++", steps=20, generator=g, progress=False)
        if cuda:
            torch.cuda.synchronize()
        out["generate_dpm20_s"] = time.perf_counter() - t0
        out["samples_per_s_dpm20"] = generate / out["generate_dpm20_s"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backends", nargs="*", help="default: every backend available on the device")
    p.add_argument("--generate", type=int, default=0, help="also time dpm-solver++-20 generation of N clips")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--_case", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        print(json.dumps(run_case(args._case, args.device, args.reps, args.generate)))
        return 0

    from sashimi.cauchy import available_backends

    backends = args.backends or available_backends(args.device)
    print("machine:", json.dumps(machine_info()))
    results = []
    for backend in backends:
        cmd = [sys.executable, os.path.abspath(__file__), "--_case", backend, "--device", args.device,
               "--reps", str(args.reps), "--generate", str(args.generate)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"[{backend}] failed:\n{proc.stderr[-2000:]}")
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = [[r["backend"], r["first_call_s"], r["cached_call_s"], r["cached_call_bf16_s"], r["bf16_rel_err"],
             r["peak_rss_first_call_mb"], r.get("cuda_peak_mb", "-"), r.get("generate_dpm20_s", "-")]
            for r in results]
    print_table(rows, ["backend", "first s", "cached s", "cached bf16 s", "bf16 rel err", "peak RSS MiB",
                       "CUDA peak MiB", "gen dpm20 s"])
    for r in results:
        ok = (r["cached_call_s"] <= 1.5, r["first_call_s"] <= 10, r["peak_rss_mb"] < 3 * 1024)
        print(f"[{r['backend']}] targets: cached <= 1.5 s {'met' if ok[0] else 'MISSED'}; first <= 10 s "
              f"{'met' if ok[1] else 'MISSED'}; peak < 3 GiB {'met' if ok[2] else 'MISSED'}")
    print("load average after:", machine_info()["loadavg"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
