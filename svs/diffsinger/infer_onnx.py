"""Run an exported DiffSinger decoder (:mod:`svs.diffsinger.export_onnx`) with ONNX Runtime.

    python -m svs.diffsinger.infer_onnx decoder.onnx --condition cond.npy [--speedup 10 | --steps 20] [--seed 0]
                                        --out mel.npy [--vocoder diffsinger_hifigan [--vocoder-checkpoint PATH]
                                        [--f0 f0.npy] --wav out.wav]

``cond.npy`` holds the FastSpeech2 ``decoder_inp`` as ``[n_frames, H]`` or ``[1, n_frames, H]``; the start noise
``[1, 1, M, n_frames]`` is drawn with ``torch.randn`` from ``torch.Generator().manual_seed(seed)``, the same draw
as ``DiffSingerDecoder.forward(..., generator=torch.Generator().manual_seed(seed))``, so the ONNX mel matches the
PyTorch model's for the same seed, sampler and speedup/steps. The mel ``[1, n_frames, M]`` (de-normalised log-mel)
is written to ``--out``. ``--vocoder`` names a hub entrypoint of this repository (e.g. ``diffsinger_hifigan``)
that turns the mel into a waveform, written as 16-bit PCM to ``--wav``.

Execution providers: CUDA first when ONNX Runtime offers it, then CPU.
"""
from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def session_options(threads: Optional[int] = None, sequential: bool = True, optimize: bool = True,
                    spin: bool = True):
    """The standard CPU settings: full graph optimisation, ``threads`` intra-op threads (default: ORT's choice, the
    physical cores), sequential execution; ``spin=False`` stops idle intra-op threads from spin-waiting (better when
    other processes share the cores)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        so.intra_op_num_threads = int(threads)
    if sequential:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


class OnnxDecoder:
    """An exported decoder in an ONNX Runtime session: ``decoder(condition [1|None, T, H], k, noise=None, seed=0)
    -> mel [1, T, M]`` (``k`` = speedup for PNDM, steps otherwise); ``metadata`` from the export."""

    def __init__(self, path: str | Path, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None,
                 options=None):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), options or session_options(threads),
                                            providers=list(providers or default_providers()))
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        names = [i.name for i in self.session.get_inputs()]
        self.step_input = "speedup" if "speedup" in names else "steps"
        if "condition" not in names or "noise" not in names:
            raise ValueError(f"{path}: not a DiffSinger decoder export (inputs {names})")
        self.num_mel_bins = int(self.metadata.get("num_mel_bins") or self.session.get_inputs()[names.index("noise")]
                                .shape[2])
        self.hidden_size = int(self.metadata.get("hidden_size") or self.session.get_inputs()[0].shape[2])
        self.sampler = self.metadata.get("sampler", "pndm" if self.step_input == "speedup" else "?")

    def noise(self, frames: int, seed: int = 0) -> np.ndarray:
        """The start noise the PyTorch decoder draws for ``generator=torch.Generator().manual_seed(seed)``."""
        import torch

        g = torch.Generator().manual_seed(int(seed))
        return torch.randn((1, 1, self.num_mel_bins, frames), generator=g, dtype=torch.float32).numpy()

    def __call__(self, condition: np.ndarray, k: int, noise: Optional[np.ndarray] = None, seed: int = 0) -> np.ndarray:
        condition = np.asarray(condition, dtype=np.float32)
        if condition.ndim == 2:
            condition = condition[None]
        if condition.ndim != 3 or condition.shape[0] != 1 or condition.shape[2] != self.hidden_size:
            raise ValueError(f"condition must be [n_frames, {self.hidden_size}] or [1, n_frames, {self.hidden_size}]"
                             f", got {condition.shape}")
        frames = condition.shape[1]
        noise = self.noise(frames, seed) if noise is None else np.asarray(noise, dtype=np.float32)
        if noise.shape != (1, 1, self.num_mel_bins, frames):
            raise ValueError(f"noise must be [1, 1, {self.num_mel_bins}, {frames}], got {noise.shape}")
        feed = {"condition": np.ascontiguousarray(condition), "noise": noise,
                self.step_input: np.array(int(k), dtype=np.int64)}
        return self.session.run(["mel"], feed)[0]


def load_entrypoint(name: str):
    """A hub entrypoint of this repository by name; a clear error when it does not exist."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import hubconf

    fn = getattr(hubconf, name, None)
    if fn is None or name.startswith("_") or not callable(fn):
        available = sorted(k for k, v in vars(hubconf).items() if callable(v) and not k.startswith("_")
                           and getattr(v, "__module__", None) == "hubconf")
        raise SystemExit(f"error: hubconf.py has no entrypoint {name!r} (available: {', '.join(available)})")
    return fn


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV of float audio in [-1, 1]."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svs.diffsinger.infer_onnx", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the exported decoder .onnx")
    parser.add_argument("--condition", required=True, help=".npy [n_frames, H] or [1, n_frames, H] float")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--speedup", type=int, default=None, help="PNDM exports: the PLMS interval (default 10)")
    group.add_argument("--steps", type=int, default=None, help="DDIM / DPM-Solver++ exports: denoiser calls "
                                                                 "(default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start noise (torch.Generator)")
    parser.add_argument("--out", required=True, help="the mel .npy to write, [1, n_frames, M]")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--cpu", action="store_true", help="CPUExecutionProvider only")
    parser.add_argument("--vocoder", default=None, help="hub entrypoint turning the mel into audio, e.g. "
                                                        "diffsinger_hifigan")
    parser.add_argument("--vocoder-checkpoint", default=None, help="checkpoint= of the vocoder entrypoint")
    parser.add_argument("--f0", default=None, help=".npy [n_frames] f0 in Hz for an NSF vocoder")
    parser.add_argument("--wav", default=None, help="the .wav to write (with --vocoder)")
    args = parser.parse_args(argv)
    if (args.vocoder is None) != (args.wav is None):
        parser.error("--vocoder and --wav go together")

    decoder = OnnxDecoder(args.model, providers=["CPUExecutionProvider"] if args.cpu else None, threads=args.threads)
    if decoder.step_input == "speedup":
        if args.steps is not None:
            parser.error(f"{args.model} is a PNDM export: give --speedup, not --steps")
        k = 10 if args.speedup is None else args.speedup
    else:
        if args.speedup is not None:
            parser.error(f"{args.model} is a {decoder.sampler} export: give --steps, not --speedup")
        k = 20 if args.steps is None else args.steps
        limit = int(decoder.metadata.get("max_steps", k))
        if not 1 <= k <= limit:
            parser.error(f"--steps must be in [1, {limit}] for this export (max_steps)")
    if k < 1:
        parser.error("--speedup must be >= 1")
    vocoder = None
    if args.vocoder:      # fail early, before decoding
        entry = load_entrypoint(args.vocoder)
    condition = np.load(args.condition)
    mel = decoder(condition, k, seed=args.seed)
    np.save(args.out, mel)
    print(f"wrote {args.out}: mel {list(mel.shape)} ({decoder.sampler}, {decoder.step_input}={k}, seed {args.seed}, "
          f"{decoder.session.get_providers()[0]})")
    if args.vocoder:
        import torch

        vocoder = entry(pretrained=True, progress=True, device="cpu", checkpoint=args.vocoder_checkpoint)
        f0 = None if args.f0 is None else torch.from_numpy(np.load(args.f0).astype(np.float32)).reshape(1, -1)
        with torch.no_grad():
            wav = vocoder(torch.from_numpy(mel), f0=f0) if f0 is not None else vocoder(torch.from_numpy(mel))
        rate = int(getattr(vocoder, "sample_rate", decoder.metadata.get("sample_rate", 24000)))
        write_wav(args.wav, wav.detach().cpu().numpy(), rate)
        print(f"wrote {args.wav}: {wav.shape[-1]} samples at {rate} Hz ({args.vocoder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
