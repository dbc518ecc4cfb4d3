"""DiffSinger HiFi-GAN (NSF) vocoder: generator maths against a functional transcription of upstream's
``modules/hifigan/hifigan.py`` / ``SourceModuleHnNSF``, release zips through torch.hub, the full-size count.

Release files are built here in the upstream layout (a zip holding ``<exp>/config.yaml`` and
``<exp>/model_ckpt_steps_<N>.ckpt`` whose ``state_dict`` holds ``model_gen`` and ``model_disc`` dicts) with tiny
hyperparameters, so everything runs in seconds on a CPU.
"""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from svs.diffsinger.hifigan import HifiGanGenerator, ResBlock1, ResBlock2, sine_source
from svs.diffsinger.vocoder import DiffSingerHifiGAN, vocoder_config
from zoo.checkpoint import CheckpointError

REPO = str(Path(__file__).resolve().parents[1])
RELEASE_ZIP = "0109_hifigan_bigpopcs_hop128.zip"
FULL_SIZE_PARAMETERS = 13_683_980

TINY_NSF = {
    "resblock": "1", "upsample_rates": [4, 2, 2], "upsample_kernel_sizes": [8, 4, 4],
    "upsample_initial_channel": 16, "resblock_kernel_sizes": [3, 5],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 2, 4]], "use_pitch_embed": True, "use_nsf": True,
    "audio_sample_rate": 4000, "hop_size": 16, "audio_num_mel_bins": 80,
    # the rest of an upstream config.yaml, ignored by the vocoder
    "task_cls": "tasks.vocoder.hifigan.HifiGanTask", "lambda_mel": 45.0, "fft_size": 64, "max_updates": 3000,
}
TINY_RB2 = {**TINY_NSF, "resblock": "2", "resblock_dilation_sizes": [[1, 3], [2, 4]], "use_pitch_embed": False,
            "use_nsf": False, "upsample_rates": [2, 3], "upsample_kernel_sizes": [4, 7], "hop_size": 6,
            "upsample_initial_channel": 8}

pytestmark = pytest.mark.usefixtures("one_thread")


# ----- an independent functional transcription of upstream's maths ---------------------------------------------

def wn(state: dict, prefix: str) -> torch.Tensor:
    """Legacy ``weight_norm(dim=0)``: ``g * v / ||v||`` with the norm over all but dimension 0."""
    v, g = state[prefix + "weight_v"], state[prefix + "weight_g"]
    return g * v / torch.sqrt((v * v).sum(dim=tuple(range(1, v.ndim)), keepdim=True))


def conv(x, state, prefix, kernel, dilation=1):
    return F.conv1d(x, wn(state, prefix), state[prefix + "bias"], padding=(kernel * dilation - dilation) // 2,
                    dilation=dilation)


def ref_resblock(x, state, prefix, kind, kernel, dilations):
    if kind == "1":
        for j, d in enumerate(dilations):
            xt = conv(F.leaky_relu(x, 0.1), state, f"{prefix}convs1.{j}.", kernel, d)
            xt = conv(F.leaky_relu(xt, 0.1), state, f"{prefix}convs2.{j}.", kernel, 1)
            x = x + xt
    else:
        for j, d in enumerate(dilations):
            x = x + conv(F.leaky_relu(x, 0.1), state, f"{prefix}convs.{j}.", kernel, d)
    return x


def ref_sines(f0_up: torch.Tensor, sr: float, gen: torch.Generator | None, noise: bool = True):
    """Upstream SineGen: harmonics h*f0, phase = cumulative sum of (h f0 / sr mod 1) (+ random initial phase of
    the overtones, drawn first), amplitude 0.1, zero where f0 <= 0, noise std 0.003 voiced / 0.1/3 unvoiced."""
    B, L, _ = f0_up.shape
    h = torch.arange(1, 10, dtype=torch.float64)
    rad = (f0_up.double() * h / sr) % 1
    if gen is not None:
        ini = torch.rand(B, 9, generator=gen).double()
        ini[:, 0] = 0
        rad[:, 0, :] += ini
    phase = torch.cumsum(rad, dim=1) % 1
    uv = (f0_up > 0).double()
    s = 0.1 * torch.sin(2 * math.pi * phase) * uv
    if noise:
        amp = uv * 0.003 + (1 - uv) * 0.1 / 3
        s = s + amp * torch.randn(s.shape, generator=gen).double()
    return s.float()


def ref_generator(state, h, mel, f0=None, gen=None):
    """Upstream HifiGanGenerator.forward on channel-first ``mel [B,80,T]``."""
    rates, kernels = h["upsample_rates"], h["upsample_kernel_sizes"]
    nk = len(h["resblock_kernel_sizes"])
    har = None
    if f0 is not None:
        f0_up = torch.repeat_interleave(f0, math.prod(rates), dim=1)[..., None]
        sines = ref_sines(f0_up, h["audio_sample_rate"], gen)
        har = torch.tanh(sines @ state["m_source.l_linear.weight"].T + state["m_source.l_linear.bias"])
        har = har.transpose(1, 2)
    x = conv(mel, state, "conv_pre.", 7)
    for i, (u, k) in enumerate(zip(rates, kernels)):
        x = F.leaky_relu(x, 0.1)
        x = F.conv_transpose1d(x, wn(state, f"ups.{i}."), state[f"ups.{i}.bias"], stride=u, padding=(k - u) // 2)
        if har is not None:
            s = math.prod(rates[i + 1:])
            if i + 1 < len(rates):
                x = x + F.conv1d(har, state[f"noise_convs.{i}.weight"], state[f"noise_convs.{i}.bias"],
                                 stride=s, padding=s // 2)
            else:
                x = x + F.conv1d(har, state[f"noise_convs.{i}.weight"], state[f"noise_convs.{i}.bias"])
        total = 0
        for j, (rk, d) in enumerate(zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"])):
            total = total + ref_resblock(x, state, f"resblocks.{i * nk + j}.", h["resblock"], rk, d)
        x = total / nk
    x = F.leaky_relu(x, 0.01)
    return torch.tanh(conv(x, state, "conv_post.", 7))


def perturbed_state(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in module.state_dict().items()}


def assert_close(a, b):
    a, b = a.detach(), b.detach()
    scale = max(float(b.abs().max()), 1e-3)
    assert a.shape == b.shape
    err = float((a - b).abs().max())
    assert err <= 1e-5 * scale, err


# ----- maths -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,dil", [("1", [1, 3, 5]), ("2", [2, 4])])
def test_resblock_matches_upstream(kind, dil):
    torch.manual_seed(0)
    block = (ResBlock1 if kind == "1" else ResBlock2)(6, 5, dil)
    state = perturbed_state(block, 1)
    block.load_state_dict(state)
    x = torch.randn(2, 6, 23)
    assert_close(block(x), ref_resblock(x, state, "", kind, 5, dil))


@pytest.mark.parametrize("config", [TINY_NSF, TINY_RB2], ids=["resblock1-nsf", "resblock2"])
def test_generator_without_f0_matches_upstream(config):
    torch.manual_seed(0)
    model = HifiGanGenerator(config)
    state = perturbed_state(model, 2)
    model.load_state_dict(state)
    mel = torch.randn(2, 80, 9)
    out = model(mel)
    assert out.shape == (2, 1, 9 * config["hop_size"])
    assert_close(out, ref_generator(state, config, mel))
    assert float(out.detach().abs().max()) < 0.99    # not saturated: the comparison is meaningful


def test_generator_with_f0_matches_upstream():
    torch.manual_seed(0)
    model = HifiGanGenerator(TINY_NSF)
    state = perturbed_state(model, 3)
    model.load_state_dict(state)
    mel = torch.randn(2, 80, 7)
    f0 = torch.tensor([[0.0, 110.0, 220.0, 220.0, 0.0, 330.5, 440.0], [150.0] * 7])
    out = model(mel, f0, generator=torch.Generator().manual_seed(5))
    ref = ref_generator(state, TINY_NSF, mel, f0, gen=torch.Generator().manual_seed(5))
    assert_close(out, ref)
    assert not torch.allclose(out, model(mel))                 # the source does change the output


@pytest.mark.parametrize("f0,atol", [(375.0, 1e-6), (441.0, 1e-5)])
def test_nsf_sine_of_a_constant_f0(f0, atol):
    # 375 Hz at 24 kHz: h * f0 / sr = h / 64, exact in float32, so the float32 phase sum is exact; 441 Hz: the
    # per-sample increment is rounded to float32 (as upstream computes it) and the sum drifts by ~1e-6.
    sr, n = 24000, 2000
    f0_up = torch.full((1, n, 1), f0)
    sines, uv = sine_source(f0_up, sr, random_phase=False, add_noise=False)
    t = torch.arange(1, n + 1, dtype=torch.float64)             # upstream's phase includes the current sample
    for h in range(9):
        step = float(torch.tensor((h + 1) * f0 / sr, dtype=torch.float32))
        expected = 0.1 * torch.sin(2 * math.pi * ((t * step) % 1))
        assert torch.allclose(sines[0, :, h].double(), expected, rtol=0, atol=atol), h
    assert torch.equal(uv, torch.ones_like(uv))
    unvoiced, uv0 = sine_source(torch.zeros(1, 50, 1), sr, random_phase=False, add_noise=False)
    assert torch.equal(unvoiced, torch.zeros_like(unvoiced)) and torch.equal(uv0, torch.zeros_like(uv0))
    noisy, _ = sine_source(f0_up, sr, random_phase=False, generator=torch.Generator().manual_seed(0))
    assert 0.002 < float((noisy - sines).std()) < 0.004       # noise std 0.003 where voiced


@pytest.mark.parametrize("frames", [1, 5, 32])
def test_vocoder_output_length_is_frames_times_hop(frames):
    model = DiffSingerHifiGAN(TINY_NSF).eval()
    with torch.no_grad():
        wav = model(torch.randn(3, frames, 80), torch.full((3, frames), 200.0))
        assert wav.shape == (3, frames * 16)
        assert model(torch.randn(frames, 80)).shape == (frames * 16,)


def test_f0_for_a_vocoder_without_nsf_is_refused():
    model = DiffSingerHifiGAN(TINY_RB2)
    with pytest.raises(ValueError, match="NSF"):
        model(torch.randn(1, 4, 80), torch.full((1, 4), 100.0))


def expected_parameter_count(h: dict) -> int:
    """Upstream's generator, layer by layer (weight-normed layers: weight_v, bias and one weight_g per output row
    of dim 0)."""
    c0, rates, kernels = h["upsample_initial_channel"], h["upsample_rates"], h["upsample_kernel_sizes"]
    n = 80 * c0 * 7 + c0 + c0                                                 # conv_pre
    for i, (u, k) in enumerate(zip(rates, kernels)):
        cin, cout = c0 // 2 ** i, c0 // 2 ** (i + 1)
        n += cin * cout * k + cout + cin                                       # ups.i (g over input channels)
        for rk in h["resblock_kernel_sizes"]:
            n += 6 * (cout * cout * rk + cout + cout)                          # ResBlock1: 6 convs
        s = math.prod(rates[i + 1:]) * 2 if i + 1 < len(rates) else 1
        n += cout * s + cout                                                   # noise_convs.i
    ch = c0 // 2 ** len(rates)
    n += ch * 7 + 1 + 1                                                        # conv_post
    return n + 9 + 1                                                           # m_source.l_linear


def test_full_size_default_parameter_count():
    model = DiffSingerHifiGAN(vocoder_config())
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameter_count(vocoder_config()) == FULL_SIZE_PARAMETERS
    assert (model.sample_rate, model.hop_size, model.num_mels, model.use_nsf) == (24000, 128, 80, True)


# ----- release zips through torch.hub ----------------------------------------------------------------------------

def upstream_vocoder_ckpt(gen_state: dict, step: int) -> dict:
    lin = nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=2e-4, betas=(0.8, 0.99))
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    disc = {"msd.discriminators.0.convs.0.weight_v": torch.randn(4, 1, 15),
            "mpd.discriminators.0.conv_post.bias": torch.zeros(1)}
    return {"epoch": 3, "global_step": step, "checkpoint_callback_best": np.float64(0.5),
            "optimizer_states": [opt.state_dict(), opt.state_dict()], "lr_schedulers": [],
            "state_dict": {"model_gen": gen_state, "model_disc": disc}}


def write_release(folder: Path, config: dict, ckpts: dict[int, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RELEASE_ZIP
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("0109_hifigan_bigpopcs_hop128/config.yaml", yaml.safe_dump(config))
        for step, obj in ckpts.items():
            buf = io.BytesIO()
            torch.save(obj, buf)
            z.writestr(f"0109_hifigan_bigpopcs_hop128/model_ckpt_steps_{step}.ckpt", buf.getvalue())
    return path


def hub_load(**kwargs):
    return torch.hub.load(REPO, "diffsinger_hifigan", source="local", progress=False, device="cpu", **kwargs)


@pytest.fixture
def tiny_release(tmp_path):
    torch.manual_seed(0)
    old, new = (perturbed_state(HifiGanGenerator(TINY_NSF), s) for s in (10, 11))
    path = write_release(tmp_path / "mirror", TINY_NSF, {1000: upstream_vocoder_ckpt(old, 1000),
                                                          280000: upstream_vocoder_ckpt(new, 280000)})
    return path, new


def test_release_zip_from_the_mirror_loads_strictly(tiny_release, monkeypatch):
    path, state = tiny_release
    monkeypatch.setenv("ZOO_MIRROR", str(path.parent))
    model = hub_load()
    assert isinstance(model, DiffSingerHifiGAN) and not model.training
    own = model.generator.state_dict()
    assert own.keys() == state.keys()
    assert all(torch.equal(own[k], state[k]) for k in state)                  # the highest step
    assert (model.sample_rate, model.hop_size) == (4000, 16)
    mel, f0 = torch.randn(1, 6, 80), torch.full((1, 6), 300.0)
    with torch.no_grad():
        wav = model(mel, f0, generator=torch.Generator().manual_seed(1))
    assert wav.shape == (1, 96)
    assert_close(wav[:, None], ref_generator(state, TINY_NSF, mel.transpose(1, 2), f0,
                                             gen=torch.Generator().manual_seed(1)))


def test_missing_key_names_the_key(tmp_path):
    torch.manual_seed(0)
    state = perturbed_state(HifiGanGenerator(TINY_NSF), 12)
    del state["ups.1.weight_g"]
    path = write_release(tmp_path, TINY_NSF, {5: upstream_vocoder_ckpt(state, 5)})
    with pytest.raises(CheckpointError, match=r"ups\.1\.weight_g"):
        hub_load(checkpoint=str(path))


def test_not_a_vocoder_checkpoint_is_refused(tmp_path):
    path = write_release(tmp_path, TINY_NSF, {5: {"state_dict": {"model.x": torch.zeros(1)}}})
    with pytest.raises(CheckpointError, match="model_gen"):
        hub_load(checkpoint=str(path))


def test_pretrained_false_builds_the_release_configuration():
    model = hub_load(pretrained=False)
    assert (model.sample_rate, model.hop_size, model.use_nsf) == (24000, 128, True)
    assert sum(p.numel() for p in model.parameters()) == FULL_SIZE_PARAMETERS
