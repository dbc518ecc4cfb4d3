"""The command-line tools end to end on a tiny model: train -> inference, train -> release -> inference."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf
import torch

from diffwave import sc09_config
from zoo.training import train

from test_diffwave_model import TINY

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "ZOO_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def tiny_run(tmp_path) -> Path:
    """Train a tiny DiffWave for 2 steps on generated clips; returns its config file."""
    data = tmp_path / "wavs"
    data.mkdir()
    for i in range(2):
        sf.write(data / f"{i}.wav", torch.randn(300).numpy() * 0.1, 16000, subtype="FLOAT")
    config = {**sc09_config(), "wavenet_config": TINY.to_dict(),
              "diffusion_config": {"T": 20, "beta_0": 1e-4, "beta_T": 0.2},
              "trainset_config": {"data_path": str(data), "segment_length": 256, "sampling_rate": 16000},
              "train_config": {"output_directory": str(tmp_path / "ckpt"), "tensorboard_directory": "",
                               "ckpt_iter": -1, "iters_per_ckpt": 2, "iters_per_logging": 1, "n_iters": 2,
                               "learning_rate": 1e-3, "batch_size_per_gpu": 2, "num_workers": 0},
              "gen_config": {"output_directory": str(tmp_path / "speeches")}}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(config))
    train(config, progress=False)
    return path


def test_inference_writes_wavs_from_the_newest_training_checkpoint(tmp_path):
    config = tiny_run(tmp_path)
    out = run(str(REPO / "inference.py"), "-c", str(config), "-n", "3", "--ckpt-iter", "max",
              "--sampler", "dpm-solver++", "--steps", "4", "--seed", "7", "--device", "cpu", "--batch-size", "2",
              "--no-progress", cwd=tmp_path)
    files = sorted((tmp_path / "speeches").glob("*.wav"))
    assert len(files) == 3, out
    audio, sr = sf.read(files[0], dtype="float32")
    info = sf.info(files[0])
    assert sr == 16000 and audio.shape == (256,) and info.subtype == "FLOAT"
    assert "2.pt" in out


def test_release_then_inference_from_the_release_file(tmp_path):
    config = tiny_run(tmp_path)
    out = run("-m", "zoo.release", str(tmp_path / "ckpt" / "2.pt"), "--name", "diffwave_tiny",
              "--out", str(tmp_path / "dist"), "--url-base", "https://example.invalid/v1", cwd=REPO)
    (weights,) = (tmp_path / "dist").glob("diffwave_tiny-*.safetensors")
    assert f'file_name="{weights.name}"' in out and 'sha256="' in out and 'format="zoo"' in out
    run(str(REPO / "inference.py"), "-c", str(config), "-n", "1", "--checkpoint", str(weights),
        "--sampler", "ddim", "--steps", "3", "--out", str(tmp_path / "from_release"), "--no-progress", cwd=tmp_path)
    assert len(list((tmp_path / "from_release").glob("*.wav"))) == 1


def test_inference_help_lists_the_options(tmp_path):
    out = run(str(REPO / "inference.py"), "--help", cwd=tmp_path)
    for option in ("--checkpoint", "--sampler", "--steps", "--seed", "--out", "--batch-size", "--device", "--model"):
        assert option in out
