"""SaShiMi/S4 against independent derivations: the kernel as the impulse response of the discretised state space,
the bidirectional convolution as a direct sum; kernel caching; the RF5 layout through the hub."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sashimi import SashimiConfig, SashimiDiffWave, build_sashimi, sc09_config
from sashimi.s4 import S4, SSKernelNPLR, hippo_legs_nplr

REPO = str(Path(__file__).resolve().parents[1])
TINY = SashimiConfig(d_model=4, n_layers=1, pool=[2, 2], expand=2, ff=2, d_state=8, l_max=64,
                     diffusion_step_embed_dim_in=8, diffusion_step_embed_dim_mid=16, diffusion_step_embed_dim_out=16)


def perturb(module, seed, scale=0.2):
    """Random perturbation of every parameter (keeps w in the left half-plane via log_w_real)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return module


def impulse_response(kern: SSKernelNPLR, L: int) -> torch.Tensor:
    """k[c, h, l] = C_c (I - dA^L)^-1 dA^l dB for the full (conjugate-completed) state, bilinear discretisation,
    in complex128 with dense matrices: the definition the generating-function kernel must reproduce."""
    c = lambda p: torch.view_as_complex(p.detach().double().contiguous())
    w = torch.complex(-torch.exp(kern.log_w_real.detach().double()), kern.w_imag.detach().double())
    B, P, C = c(kern.B)[0], c(kern.P)[0], c(kern.C)
    dt = torch.exp(kern.log_dt.detach().double())
    out = torch.zeros(C.shape[0], kern.H, L, dtype=torch.float64)
    for h in range(kern.H):
        full = lambda x: torch.cat([x, x.conj()], dim=-1)
        wf, Bf, Pf, Cf = full(w[h]), full(B[h]), full(P[h]), full(C[:, h])
        A = torch.diag(wf) - Pf[:, None] * Pf.conj()[None, :]          # diag(w) - P Q^T with Q = conj(P)
        I = torch.eye(A.shape[0], dtype=A.dtype)
        back = I - dt[h] / 2 * A
        dA = torch.linalg.solve(back, I + dt[h] / 2 * A)
        dB = dt[h] * torch.linalg.solve(back, Bf)
        Corig = torch.linalg.solve((I - torch.linalg.matrix_power(dA, L)).T, Cf.T).T   # C~ = C (I - dA^L)
        x = dB
        for l in range(L):
            y = Corig @ x
            assert y.imag.abs().max() < 1e-9 * (1 + y.real.abs().max())
            out[:, h, l] = y.real
            x = dA @ x
    return out


def test_hippo_legs_nplr_reconstructs_the_legs_matrix():
    N = 8
    w, P, B = hippo_legs_nplr(N)
    q = torch.arange(N, dtype=torch.float64)
    legs = torch.tensor([[-(math.sqrt((2 * i + 1) * (2 * j + 1)) if i > j else (i + 1 if i == j else 0.0))
                          for j in range(N)] for i in range(N)])
    full_w = torch.cat([w, w.conj()])
    assert torch.allclose(full_w.real, torch.full((N,), -0.5, dtype=torch.float64), atol=1e-8)
    # diag(w) - P P^* has the spectrum of A_legs (unitary similarity on the completed basis)
    Pf, Bf = torch.cat([P[0], P[0].conj()]), torch.cat([B, B.conj()])
    ev = torch.linalg.eigvals(torch.diag(full_w) - Pf[:, None] * Pf.conj()[None, :])
    ev_ref = torch.linalg.eigvals(legs.to(torch.complex128))
    assert torch.allclose(torch.sort(ev.real).values, torch.sort(ev_ref.real).values, atol=1e-6)
    assert torch.allclose((Bf.abs() ** 2).sum(), (2 * q + 1).sum().to(torch.float64))   # |B|^2 preserved


def test_kernel_equals_the_impulse_response_of_the_discretised_ssm():
    torch.manual_seed(0)
    kern = perturb(SSKernelNPLR(H=3, channels=2, N=8, l_max=64), seed=1, scale=0.1)
    with torch.no_grad():
        ours = kern(64, backend="torch").double()
        short = kern(16, backend="torch").double()
    ref = impulse_response(kern, 64)
    scale = ref.abs().max()
    assert (ours - ref).abs().max() <= 2e-5 * scale
    assert torch.equal(short, ours[..., :16])                   # shorter layers truncate the l_max grid


def direct_bidirectional(u, k, D):
    """y[n] = sum_{m<=n} u[m] k0[n-m] + sum_{m>n} u[m] k1[m-n-1] + D u, by loops."""
    B, H, L = u.shape
    y = torch.zeros_like(u, dtype=torch.float64)
    for n in range(L):
        for m in range(L):
            y[:, :, n] += u[:, :, m] * (k[0, :, n - m] if m <= n else k[1, :, m - n - 1])
    return y + u * D.T


def test_s4_layer_is_a_bidirectional_convolution_then_gelu_linear_glu():
    torch.manual_seed(0)
    layer = perturb(S4(3, d_state=8, l_max=64), seed=2, scale=0.05).eval()
    u = torch.randn(2, 3, 20, dtype=torch.float32)
    with torch.no_grad():
        ours = layer(u)
        k = layer.kernel.kernel(20, backend="torch").double()
    y = F.gelu(direct_bidirectional(u.double(), k, layer.D.detach().double()))
    lin = layer.output_linear[0]
    z = lin.weight.detach().double() @ y + lin.bias.detach().double()
    ref = z[:, :3] * torch.sigmoid(z[:, 3:])
    assert (ours.double() - ref).abs().max() <= 1e-5 * ref.abs().max()


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = build_sashimi({**sc09_config(), "sashimi_config": TINY.to_dict(),
                           "trainset_config": {"segment_length": 32, "sampling_rate": 16000}})
    perturb(model, seed + 1, scale=0.05)
    return model


def test_cached_and_uncached_forward_are_identical_and_cache_follows_weights():
    model = tiny_model().eval()
    x, t = torch.randn(2, 1, 32), torch.tensor([3, 150])
    layers = model.backbone.s4_layers()
    with torch.no_grad():
        cached = model.denoiser(x, t)
        assert all(len(layer._cache) == 1 for layer in layers)
        assert torch.equal(model.denoiser(x, t), cached)            # served from the cache
        model.backbone.set_kernel_cache(False)
        uncached = model.denoiser(x, t)
        assert all(len(layer._cache) == 0 for layer in layers)
        model.backbone.set_kernel_cache(True)
        assert torch.equal(uncached, cached)
        layers[0].kernel.kernel.log_dt.add_(0.3)                    # a weight update invalidates the cache
        changed = model.denoiser(x, t)
        model.backbone.set_kernel_cache(False)
        assert torch.equal(model.denoiser(x, t), changed) and not torch.allclose(changed, cached)
        model.backbone.set_kernel_cache(True)
    with torch.enable_grad():                                      # training-style calls never use the cache
        torch.testing.assert_close(model.denoiser(x, t).detach(), changed, rtol=1e-6, atol=1e-7)
    model.train()
    assert all(len(layer._cache) == 0 for layer in layers)


def test_optimizer_step_invalidates_the_cache_in_eval_mode():
    model = tiny_model(3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, t = torch.randn(1, 1, 32), torch.tensor([10])
    model.eval()
    with torch.no_grad():
        before = model.denoiser(x, t)
    model.train()
    model.training_loss(torch.randn(2, 1, 32) * 0.1).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        cached_after = model.denoiser(x, t)
        model.backbone.set_kernel_cache(False)
        fresh_after = model.denoiser(x, t)
    assert torch.equal(cached_after, fresh_after) and not torch.equal(before, cached_after)


def test_optimizer_groups_put_ssm_parameters_apart():
    model = tiny_model()
    groups = model.optimizer_param_groups(2e-3)
    assert groups[1]["lr"] == 1e-3 and groups[1]["weight_decay"] == 0.0
    n_ssm = len(model.backbone.s4_layers()) * 5
    assert len(groups[1]["params"]) == n_ssm
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_unet_shapes_and_generation_with_every_sampler():
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(0)
    for sampler, steps in (("ddim", 3), ("dpm-solver++", 3)):
        out = model.unconditional_generate(2, sampler=sampler, steps=steps, generator=g, progress=False)
        assert out.shape == (2, 32) and torch.isfinite(out).all()


def test_sc09_architecture_matches_the_release_layout():
    sd = SashimiDiffWave().state_dict()
    assert len(sd) == 656
    params = sum(p.numel() for p in SashimiDiffWave().parameters())
    assert params == 23_478_785
    assert sum(v.numel() for v in sd.values()) == 24_438_905
    assert sd["sashimi.d_layers.0.layer.kernel.kernel.C"].shape == (2, 128, 32, 2)
    assert sd["sashimi.c_layers.0.layer.kernel.kernel.B"].shape == (1, 512, 32, 2)
    assert sd["sashimi.d_layers.25.linear.weight_v"].shape == (512, 1024)
    assert sd["sashimi.u_layers.1.0.linear.weight_g"].shape == (512, 1)
    assert sd["sashimi.u_layers.1.12.layer.ff.2.bias"].shape == (128, 1)
    assert sd["sashimi.d_layers.0.layer.kernel.kernel.omega"].shape == (8001, 2)


def test_rf5_layout_loads_strictly_through_the_hub_on_cpu(tmp_path, monkeypatch):
    net = SashimiDiffWave()
    g = torch.Generator().manual_seed(5)
    state = {"sashimi." + k if not k.startswith("sashimi.") else k: torch.randn(v.shape, generator=g) * 0.02
             for k, v in net.state_dict().items()}
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}, "steps": 500000, "lr": 4e-5},
               tmp_path / "sashimi_sc09_500k_steps.pt")
    monkeypatch.setenv("ZOO_MIRROR", str(tmp_path))
    model = torch.hub.load(REPO, "sashimi_diffwave_500k_sc09", source="local", device="cpu", progress=False)
    own = model.backbone.state_dict()
    assert own.keys() == state.keys() and all(torch.equal(own[k], state[k]) for k in own)
    assert not model.training and (model.sample_rate, model.num_samples) == (16000, 16000)


def test_training_a_tiny_sashimi_uses_the_ssm_groups_and_lr_decay(tmp_path):
    import soundfile as sf

    from zoo.training import train

    data = tmp_path / "wavs"
    data.mkdir()
    sf.write(data / "a.wav", (torch.sin(torch.arange(32) * 0.3) * 0.5).numpy(), 16000)
    config = {**sc09_config(), "sashimi_config": TINY.to_dict(),
              "diffusion_config": {"T": 20, "beta_0": 1e-4, "beta_T": 0.2},
              "trainset_config": {"data_path": str(data), "segment_length": 32, "sampling_rate": 16000},
              "train_config": {"output_directory": str(tmp_path / "ckpt"), "tensorboard_directory": "",
                               "ckpt_iter": -1, "iters_per_ckpt": 4, "iters_per_logging": 2, "n_iters": 4,
                               "learning_rate": 2e-3, "batch_size_per_gpu": 1, "num_workers": 0,
                               "lr_decay": {"at": 2, "factor": 0.2}}}
    result = train(config, progress=False)
    ckpt = torch.load(result["checkpoint"], weights_only=True)
    groups = ckpt["optimizer_state_dict"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([2e-3 * 0.2, 1e-3 * 0.2])
    assert groups[1]["weight_decay"] == 0.0
    assert all(k.startswith("backbone.sashimi.") for k in ckpt["model_state_dict"])
