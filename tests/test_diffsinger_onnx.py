"""ONNX export of the DiffSinger decoder with the sampling loop in the graph (``svs/diffsinger/export_onnx.py``) and
its ONNX Runtime runner (``svs/diffsinger/infer_onnx.py``), on a tiny random model."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from svs.diffsinger import DiffSingerDecoder  # noqa: E402
from svs.diffsinger.export_onnx import build_export_module, export, graph_facts  # noqa: E402
from svs.diffsinger.infer_onnx import OnnxDecoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
M, H, L, C = 6, 5, 3, 8
K = 24
EXPORT_FRAMES = 16

CONFIG = {
    "audio_num_mel_bins": M, "hidden_size": H, "residual_layers": L, "residual_channels": C,
    "dilation_cycle_length": 2, "diff_decoder_type": "wavenet", "timesteps": K, "K_step": K,
    "schedule_type": "linear", "max_beta": 0.06, "keep_bins": M, "gaussian_start": True, "pndm_speedup": None,
    "audio_sample_rate": 22050, "hop_size": 256,
    "spec_min": [-6.0] * M, "spec_max": [-0.8, -0.6, -0.3, 0.0, 0.2, -1.6],
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0) -> DiffSingerDecoder:
    model = DiffSingerDecoder(CONFIG)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():          # random everywhere (the output projection is zero-initialised)
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """{sampler: path} of the three exports."""
    folder = tmp_path_factory.mktemp("onnx")
    paths = {}
    for sampler in ("pndm", "ddim", "dpm-solver++"):
        paths[sampler] = folder / f"{sampler}.onnx"
        export(model, paths[sampler], sampler=sampler, frames=EXPORT_FRAMES)
    return paths


def session(path):
    return OnnxDecoder(path, providers=["CPUExecutionProvider"], threads=1)


def inputs(frames: int, seed: int):
    cond = torch.randn(1, frames, H, generator=torch.Generator().manual_seed(100 + seed))
    noise = torch.randn(1, 1, M, frames, generator=torch.Generator().manual_seed(seed))
    return cond, noise


def reference(model, cond, seed, sampler, k):
    kw = {"speedup": k} if sampler == "pndm" else {"steps": k}
    return model(cond, sampler=sampler, generator=torch.Generator().manual_seed(seed), **kw).numpy()


def assert_close(out, ref):
    scale = float(np.abs(ref).max())
    err = float(np.abs(out - ref).max())
    assert out.shape == ref.shape
    assert err <= 1e-4 * scale, f"max |onnx - torch| = {err:.3g} (scale {scale:.3g})"


# ----- parity -----

@pytest.mark.parametrize("frames", [7, 23])   # exported at 16 frames
def test_pndm_matches_pytorch_at_other_lengths_and_runtime_speedups(model, exported, frames):
    dec = session(exported["pndm"])
    outs = {}
    for speedup in (1, 3, 10, K + 5):           # 25, 9, 4 and 2 denoiser calls
        cond, noise = inputs(frames, seed=speedup)
        out = dec(cond.numpy(), speedup, noise=noise.numpy())
        assert_close(out, reference(model, cond, speedup, "pndm", speedup))
        outs[speedup] = dec(cond.numpy(), speedup, noise=inputs(frames, seed=0)[1].numpy())
    # the same noise with another speedup gives another mel: the iteration count follows the runtime input
    assert not np.allclose(outs[3], outs[10])


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++"])
def test_fixed_step_samplers_match_pytorch_for_every_runtime_steps(model, exported, sampler):
    dec = session(exported[sampler])
    assert int(dec.metadata["max_steps"]) == K
    for frames, steps in ((7, 1), (23, 2), (7, 5), (16, 11), (23, K)):
        cond, noise = inputs(frames, seed=steps)
        out = dec(cond.numpy(), steps, noise=noise.numpy())
        assert_close(out, reference(model, cond, steps, sampler, steps))
    cond, noise = inputs(9, seed=0)
    assert not np.allclose(dec(cond.numpy(), 4, noise=noise.numpy()), dec(cond.numpy(), 8, noise=noise.numpy()))


def test_scripted_program_equals_the_model_before_onnx(model):
    cond, noise = inputs(11, seed=3)
    prog = build_export_module(model, "pndm")
    with torch.no_grad():
        out = prog(cond, torch.tensor(4), noise)
    np.testing.assert_allclose(out.numpy(), reference(model, cond, 3, "pndm", 4), rtol=0, atol=1e-5)


# ----- graph -----

@pytest.mark.parametrize("sampler", ["pndm", "ddim", "dpm-solver++"])
def test_graph_has_one_loop_and_conditioner_projections_are_hoisted(exported, sampler):
    proto = onnx.load(str(exported[sampler]))
    facts = graph_facts(proto)
    assert facts["main"]["Loop"] == 1 and facts["all"]["Loop"] == 1
    assert len(facts["loop_bodies"]) == 1
    body = facts["loop_bodies"][0]
    # one denoiser per iteration: input + L dilated + L output projections + skip + output (no conditioner Conv)
    assert body["Conv"] == 2 * L + 3
    assert facts["main"]["Conv"] == L
    assert facts["conditioner_convs_main"] == L and facts["conditioner_convs_in_loops"] == 0
    assert facts["all"]["Conv"] == 3 * L + 3     # not unrolled: the denoiser appears once
    assert facts["all"].get("RandomNormalLike", 0) == 0 and facts["all"].get("RandomNormal", 0) == 0


def test_io_contract_and_metadata(exported):
    for sampler, path in exported.items():
        proto = onnx.load(str(path))
        step = "speedup" if sampler == "pndm" else "steps"

        def dims(vi):
            return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

        ins = {vi.name: (vi.type.tensor_type.elem_type, dims(vi)) for vi in proto.graph.input}
        assert ins == {"condition": (onnx.TensorProto.FLOAT, [1, "n_frames", H]),
                       step: (onnx.TensorProto.INT64, []),
                       "noise": (onnx.TensorProto.FLOAT, [1, 1, M, "n_frames"])}
        (out,) = proto.graph.output
        assert (out.name, out.type.tensor_type.elem_type, dims(out)) == ("mel", onnx.TensorProto.FLOAT,
                                                                          [1, "n_frames", M])
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["sampler"] == sampler and meta["K_step"] == str(K) and meta["num_mel_bins"] == str(M)


def test_stochastic_ddpm_is_refused(model, tmp_path):
    with pytest.raises(ValueError, match="deterministic"):
        export(model, tmp_path / "x.onnx", sampler="ddpm")


# ----- command lines -----

def write_checkpoint_folder(model, folder: Path) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    torch.save({"global_step": 10, "state_dict": {"model." + k: v for k, v in model.state_dict().items()}},
               folder / "model_ckpt_steps_10.ckpt")
    return folder


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "ZOO_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_cli_export_then_infer_end_to_end(model, tmp_path):
    ckpt = write_checkpoint_folder(model, tmp_path / "release")
    onnx_path = tmp_path / "decoder.onnx"
    out = run_cli("svs.diffsinger.export_onnx", "--out", str(onnx_path), "--checkpoint", str(ckpt),
                  "--sampler", "ddim", "--opset", "17")
    assert "condition" in out and "steps" in out and "mel" in out and "Loop nodes: 1" in out
    cond = torch.randn(13, H, generator=torch.Generator().manual_seed(5))
    np.save(tmp_path / "cond.npy", cond.numpy())
    out = run_cli("svs.diffsinger.infer_onnx", str(onnx_path), "--condition", str(tmp_path / "cond.npy"),
                  "--steps", "6", "--seed", "7", "--out", str(tmp_path / "mel.npy"), "--cpu", "--threads", "1")
    mel = np.load(tmp_path / "mel.npy")
    assert_close(mel, reference(model, cond[None], 7, "ddim", 6))


def test_infer_pndm_with_a_vocoder_entrypoint(model, exported, tmp_path, monkeypatch):
    import wave

    import hubconf
    from svs.diffsinger import infer_onnx

    class Vocoder(torch.nn.Module):
        sample_rate = 8000

        def forward(self, mel, f0=None):
            return torch.tanh(mel.mean(-1)).repeat_interleave(4, dim=-1)        # [B, T * 4]

    monkeypatch.setattr(hubconf, "tiny_test_vocoder", lambda **kw: Vocoder(), raising=False)
    cond = torch.randn(1, 9, H, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "cond.npy", cond.numpy())
    common = [str(exported["pndm"]), "--condition", str(tmp_path / "cond.npy"), "--speedup", "5",
              "--out", str(tmp_path / "mel.npy"), "--cpu", "--threads", "1"]
    assert infer_onnx.main([*common, "--vocoder", "tiny_test_vocoder", "--wav", str(tmp_path / "a.wav")]) == 0
    assert_close(np.load(tmp_path / "mel.npy"), reference(model, cond, 0, "pndm", 5))
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getframerate(), w.getnframes()) == (8000, 36)
    with pytest.raises(SystemExit, match="no entrypoint 'no_such_vocoder'"):
        infer_onnx.main([*common, "--vocoder", "no_such_vocoder", "--wav", str(tmp_path / "b.wav")])
