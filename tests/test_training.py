"""Audio I/O, the clip dataset, the generic trainer (exact resume, corrupt checkpoints, DDP) and its CLI."""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.audio import AudioError, load_audio, save_wav
from zoo.data import AudioClipDataset
from zoo.training import find_checkpoints, lr_factor, train

REPO = Path(__file__).resolve().parents[1]
SEG, SR = 256, 16000


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(tmp_path: Path, data_path, **train_overrides) -> dict:
    train_config = {
        "output_directory": str(tmp_path / "ckpt"), "tensorboard_directory": str(tmp_path / "tb"),
        "ckpt_iter": "max", "iters_per_ckpt": 1000, "iters_per_logging": 2, "n_iters": 6,
        "learning_rate": 1e-3, "batch_size_per_gpu": 2, "num_workers": 0, "seed": 0,
    }
    train_config.update(train_overrides)
    return {
        "model": "diffwave",
        "diffusion_config": {"T": 20, "beta_0": 1e-4, "beta_T": 0.2},
        "wavenet_config": {"in_channels": 1, "out_channels": 1, "num_res_layers": 2, "dilation_cycle": 2,
                           "res_channels": 8, "skip_channels": 8, "diffusion_step_embed_dim_in": 16,
                           "diffusion_step_embed_dim_mid": 32, "diffusion_step_embed_dim_out": 32},
        "train_config": train_config,
        "trainset_config": {"data_path": str(data_path), "segment_length": SEG, "sampling_rate": SR},
        "dist_config": {"dist_backend": "nccl", "dist_url": "env://"},
    }


def write_wav(path: Path, n: int, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / sr
    sf.write(str(path), (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="FLOAT")
    return path


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    """A folder of 5 clips: exact, short, long, 8 kHz, nested; plus a background-noise file to be skipped."""
    root = tmp_path / "data"
    write_wav(root / "a_exact.wav", SEG, freq=300)
    write_wav(root / "b_short.wav", 100, freq=500)
    write_wav(root / "c_long.wav", 1000, freq=700)
    write_wav(root / "d_8k.wav", 100, sr=8000, freq=200)  # 200 samples at 16 kHz
    write_wav(root / "sub" / "e_nested.wav", 300, freq=900)
    write_wav(root / "_background_noise_" / "noise.wav", 5000)
    return root


def state_equal(a: dict, b: dict) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def load_ckpt(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ----- audio -----
def test_load_audio_mono_resample_and_errors(tmp_path):
    path = write_wav(tmp_path / "x.wav", 128, sr=8000)
    wave, sr = load_audio(path)
    assert wave.shape == (128,) and wave.dtype == torch.float32 and sr == 8000
    wave, sr = load_audio(path, sample_rate=16000)
    assert wave.shape == (256,) and sr == 16000
    stereo = tmp_path / "st.wav"
    sf.write(str(stereo), np.stack([np.ones(50), -np.ones(50)], 1).astype(np.float32), SR, subtype="FLOAT")
    assert load_audio(stereo, mono=False)[0].shape == (2, 50)
    assert torch.allclose(load_audio(stereo)[0], torch.zeros(50))

    with pytest.raises(AudioError, match="not found.*missing.wav"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(tmp_path / "bad.wav")
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="empty.wav.*empty"):
        load_audio(tmp_path / "empty.wav")


def test_save_wav_float32_atomic_roundtrip(tmp_path):
    wave = torch.linspace(-1.5, 1.5, 400)  # not clamped, like upstream
    path = tmp_path / "new" / "dir" / "out.wav"
    save_wav(path, wave, SR)
    info = sf.info(str(path))
    assert info.subtype == "FLOAT" and info.samplerate == SR and info.channels == 1
    assert torch.equal(load_audio(path)[0], wave)
    assert os.listdir(path.parent) == ["out.wav"]  # no temporary file left behind
    save_wav(path, torch.zeros(2, 10), 8000, subtype="PCM_16")
    assert sf.info(str(path)).channels == 2 and sf.info(str(path)).subtype == "PCM_16"


# ----- dataset -----
def test_dataset_folder_lengths_pad_crop_resample(clips):
    ds = AudioClipDataset(clips, SEG, SR, random_crop=False)
    names = [Path(f).name for f in ds.files]
    assert names == ["a_exact.wav", "b_short.wav", "c_long.wav", "d_8k.wav", "e_nested.wav"]
    items = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (1, SEG) and x.dtype == torch.float32 for x in items)
    short = items[1][0]
    assert torch.count_nonzero(short[100:]) == 0 and torch.count_nonzero(short[:100]) > 90
    long_wave = load_audio(ds.files[2])[0]
    assert torch.equal(items[2][0], long_wave[:SEG])  # no random crop: keep the start
    assert torch.count_nonzero(items[3][0][200:]) == 0 and torch.count_nonzero(items[3][0][:200]) > 190

    rc = AudioClipDataset(clips, SEG, SR, random_crop=True)
    torch.manual_seed(1)
    a = rc[2]
    torch.manual_seed(1)
    assert torch.equal(a, rc[2])  # crops follow torch's RNG
    crops = {int(torch.nonzero(torch.isclose(long_wave, rc[2][0, 0])).min()) for _ in range(20)}
    assert len(crops) > 1


def test_dataset_csv_and_txt_lists(clips, tmp_path):
    lists = tmp_path / "splits"
    lists.mkdir()
    (lists / "train.csv").write_text("path,label\n../data/a_exact.wav,0\n"
                                     f"{clips / 'sub' / 'e_nested.wav'},9\n")
    ds = AudioClipDataset(lists / "train.csv", SEG, SR)
    assert [Path(f).name for f in ds.files] == ["a_exact.wav", "e_nested.wav"]
    assert ds[0].shape == ds[1].shape == (1, SEG)
    (lists / "train.txt").write_text("# clips\n../data/b_short.wav\n\n../data/d_8k.wav\n")
    ds = AudioClipDataset(lists / "train.txt", SEG, SR)
    assert len(ds) == 2 and ds[1].shape == (1, SEG)
    (lists / "bad.csv").write_text("file,label\nx.wav,0\n")
    with pytest.raises(ValueError, match="path"):
        AudioClipDataset(lists / "bad.csv", SEG, SR)


def test_dataset_errors_name_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files.*empty"):
        AudioClipDataset(tmp_path / "empty", SEG, SR)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        AudioClipDataset(tmp_path / "nowhere", SEG, SR)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "broken.wav").write_bytes(b"\x00" * 100)
    ds = AudioClipDataset(tmp_path / "corrupt", SEG, SR)
    with pytest.raises(AudioError, match="broken.wav"):
        ds[0]


# ----- trainer -----
def test_loss_falls_on_one_clip_dataset(tmp_path):
    write_wav(tmp_path / "data" / "one.wav", SEG)
    (tmp_path / "one.txt").write_text("data/one.wav\n" * 4)  # one clip, listed 4 times: a batch of 4
    cfg = tiny_config(tmp_path, tmp_path / "one.txt", n_iters=80, learning_rate=3e-3, batch_size_per_gpu=4,
                      iters_per_logging=20, ckpt_iter=-1)
    losses = train(cfg, progress=False)["losses"]
    assert len(losses) == 80
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_resume_is_bit_identical(clips, tmp_path):
    decay = {"at": 4, "factor": 0.5}  # crosses the resume point
    straight = train(tiny_config(tmp_path / "a", clips, n_iters=6, lr_decay=decay), progress=False)
    assert straight["step"] == 6 and len(straight["losses"]) == 6

    cfg = tiny_config(tmp_path / "b", clips, n_iters=3, lr_decay=decay)
    first = train(cfg, progress=False)
    assert first["step"] == 3 and find_checkpoints(cfg["train_config"]["output_directory"]) == [3]
    cfg["train_config"]["n_iters"] = 6
    second = train(cfg, progress=False)
    assert second["step"] == 6 and len(second["losses"]) == 3
    assert first["losses"] + second["losses"] == straight["losses"]

    a, b = load_ckpt(straight["checkpoint"]), load_ckpt(second["checkpoint"])
    assert a["step"] == b["step"] == 6
    assert state_equal(a["model_state_dict"], b["model_state_dict"])
    assert state_equal(a["optimizer_state_dict"], b["optimizer_state_dict"])
    assert a["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.5)
    assert not any(k.startswith("module.") for k in a["model_state_dict"])


def test_resume_skips_truncated_checkpoint(clips, tmp_path):
    cfg = tiny_config(tmp_path, clips, n_iters=4, iters_per_ckpt=2)
    train(cfg, progress=False)
    out = Path(cfg["train_config"]["output_directory"])
    assert find_checkpoints(str(out)) == [4, 2]
    good = load_ckpt(out / "4.pt")
    data = (out / "4.pt").read_bytes()
    (out / "4.pt").write_bytes(data[: len(data) // 2])  # as if killed mid-write by a non-atomic writer
    (out / ".6.pt.999.tmp").write_bytes(b"leftover")  # a temp file from a run killed mid-save
    with pytest.warns(UserWarning, match="4.pt"):
        result = train(cfg, progress=False)
    assert len(result["losses"]) == 2  # resumed from step 2
    redone = load_ckpt(out / "4.pt")
    assert state_equal(good["model_state_dict"], redone["model_state_dict"])
    assert state_equal(good["optimizer_state_dict"], redone["optimizer_state_dict"])


def test_explicit_ckpt_iter_and_fresh_start(clips, tmp_path):
    cfg = tiny_config(tmp_path, clips, n_iters=4, iters_per_ckpt=2)
    train(cfg, progress=False)
    cfg["train_config"].update(ckpt_iter=2, n_iters=3)
    assert len(train(cfg, progress=False)["losses"]) == 1
    cfg["train_config"].update(ckpt_iter=-1, n_iters=1)
    assert len(train(cfg, progress=False)["losses"]) == 1
    cfg["train_config"].update(ckpt_iter=7)
    with pytest.raises(FileNotFoundError, match="7.pt"):
        train(cfg, progress=False)


def test_optimizer_param_groups_and_lr_decay(clips, tmp_path):
    from zoo.models import build_model

    def builder(config):
        model = build_model(config)
        model.optimizer_param_groups = lambda lr: [
            {"params": list(model.backbone.final_conv.parameters()), "lr": lr / 10},
            {"params": [p for n, p in model.named_parameters() if not n.startswith("backbone.final_conv")]},
        ]
        return model

    cfg = tiny_config(tmp_path, clips, n_iters=3, lr_decay=[{"at": 1, "factor": 0.5}, {"at": 2, "factor": 0.5}])
    result = train(cfg, model_builder=builder, progress=False)
    groups = load_ckpt(result["checkpoint"])["optimizer_state_dict"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-4 / 4, 1e-3 / 4])
    assert lr_factor(0, None) == 1.0 and lr_factor(10, {"at": 10, "factor": 0.2}) == 0.2


def test_tensorboard_scalars_and_missing_tensorboard(clips, tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, clips, n_iters=2)
    train(cfg, progress=False)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    cfg = tiny_config(tmp_path / "x", clips, n_iters=2)
    with pytest.warns(UserWarning, match="TensorBoard"):
        assert train(cfg, progress=False)["step"] == 2


def test_dataloader_workers_do_not_change_results(clips, tmp_path):
    a = train(tiny_config(tmp_path / "a", clips, n_iters=3, num_workers=0), progress=False)
    b = train(tiny_config(tmp_path / "b", clips, n_iters=3, num_workers=2), progress=False)
    assert a["losses"] == b["losses"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_process_gloo(clips, tmp_path):
    cfg = tiny_config(tmp_path, clips, n_iters=3, iters_per_ckpt=2, batch_size_per_gpu=1)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "distributed_train.py", "-c", str(cfg_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = Path(cfg["train_config"]["output_directory"])
    assert find_checkpoints(str(out)) == [3, 2]
    ckpt = load_ckpt(out / "3.pt")
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model_state_dict"])
    assert ckpt["model_state_dict"].keys() == train.__globals__["build_model"](cfg).state_dict().keys()


def test_cli_help_and_overrides():
    proc = subprocess.run([sys.executable, "distributed_train.py", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "torchrun" in proc.stdout and "--set" in proc.stdout

    sys.path.insert(0, str(REPO))
    from distributed_train import apply_override

    cfg = {"train_config": {"n_iters": 5}}
    apply_override(cfg, "train_config.n_iters=10")
    apply_override(cfg, "train_config.lr_decay={\"at\": 3, \"factor\": 0.2}")
    apply_override(cfg, "trainset_config.data_path=data/x")
    assert cfg == {"train_config": {"n_iters": 10, "lr_decay": {"at": 3, "factor": 0.2}},
                   "trainset_config": {"data_path": "data/x"}}
    with pytest.raises(ValueError):
        apply_override(copy.deepcopy(cfg), "no_equals_sign")
