"""Samplers against closed forms: Gaussian data, whose exact noise predictor is known."""
import math

import pytest
import torch

from zoo.diffusion.samplers import DDPMSampler, logsnr_timesteps, make_sampler, sample, spaced_timesteps
from zoo.diffusion.schedule import DiscreteSchedule

SCHEDULE = DiscreteSchedule.linear(200, 1e-4, 0.02)      # DiffWave SC09
MU, STD = 0.7, 0.3


def gaussian_eps(schedule, mu=MU, std=STD):
    """Exact E[eps | x_t] for x_0 ~ N(mu, std^2): sigma_t (x - a_t mu) / (a_t^2 std^2 + sigma_t^2)."""
    def eps_fn(x, t):
        a2 = float(schedule.alpha_bar64[t])
        return math.sqrt(1 - a2) * (x - math.sqrt(a2) * mu) / (a2 * std ** 2 + 1 - a2)
    return eps_fn


def exact_x_T(schedule, n, seed, mu=MU, std=STD):
    """A draw from the true marginal of x_{T-1} (DiffWave's alpha_bar_T = 0.13 is far from pure noise)."""
    a2 = float(schedule.alpha_bar64[-1])
    z = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return math.sqrt(a2) * mu + math.sqrt(a2 * std ** 2 + 1 - a2) * z


def test_schedule_matches_diffwave_reference_values():
    assert SCHEDULE.T == 200
    assert float(SCHEDULE.alpha_bar[-1]) == pytest.approx(0.13218, abs=1e-5)
    assert float(SCHEDULE.sigma[1]) == pytest.approx(0.008166, abs=1e-6)
    assert float(SCHEDULE.sigma[0]) == pytest.approx(math.sqrt(1e-4), rel=1e-6)   # beta_tilde_0 = beta_0
    # beta_tilde_t = beta_t (1 - ab_{t-1}) / (1 - ab_t), independently in float64
    b = torch.linspace(1e-4, 0.02, 200, dtype=torch.float64)
    ab = torch.cumprod(1 - b, 0)
    # (float32 recursion as upstream: 1 - alpha_bar loses digits near t = 0)
    torch.testing.assert_close(SCHEDULE.sigma[1:].double() ** 2, b[1:] * (1 - ab[:-1]) / (1 - ab[1:]),
                               rtol=5e-4, atol=0)


@pytest.mark.parametrize("name, steps, tol", [
    ("ddpm", None, 0.02), ("ddim", 50, 0.02), ("dpm-solver++", 20, 0.02), ("dpm-solver++", 10, 0.02),
    ("dpm-solver", 20, 0.02),
])
def test_sampler_reproduces_gaussian_data_mean_and_std(name, steps, tol):
    x = exact_x_T(SCHEDULE, 40000, seed=1)
    out = sample(gaussian_eps(SCHEDULE), x, make_sampler(name, SCHEDULE, steps),
                 generator=torch.Generator().manual_seed(2))
    assert out.mean().item() == pytest.approx(MU, abs=tol)
    assert out.std().item() == pytest.approx(STD, abs=tol)


def test_deterministic_solvers_match_the_exact_ode_map():
    """For Gaussian data the probability-flow ODE maps x_T to mu + std (x_T - m_T) / s_T exactly."""
    x = exact_x_T(SCHEDULE, 1000, seed=3)
    a2 = float(SCHEDULE.alpha_bar64[-1])
    # the ODE runs to t = 0 (alpha_bar_0 = 1 - beta_0), then the last step returns the x0 estimate there
    ab0 = float(SCHEDULE.alpha_bar64[0])
    s0 = math.sqrt(ab0 * STD ** 2 + 1 - ab0)
    x_t0 = math.sqrt(ab0) * MU + s0 * (x - math.sqrt(a2) * MU) / math.sqrt(a2 * STD ** 2 + 1 - a2)
    expected = (x_t0 - math.sqrt(1 - ab0) * gaussian_eps(SCHEDULE)(x_t0, 0)) / math.sqrt(ab0)
    errors = {}
    for name, steps, tol in (("dpm-solver++", 50, 1.5e-3), ("dpm-solver++", 20, 6e-3), ("dpm-solver++", 10, 2.5e-2),
                             ("dpm-solver", 20, 8e-3), ("ddim", 50, 5e-2)):
        out = sample(gaussian_eps(SCHEDULE), x, make_sampler(name, SCHEDULE, steps))
        errors[name, steps] = (out - expected).abs().max().item()
        assert errors[name, steps] < tol, (name, steps, errors[name, steps])
    # second order: 2.5x the steps cuts the error by more than 2.5x
    assert errors["dpm-solver++", 50] < errors["dpm-solver++", 20] / 4


def test_logsnr_spacing_beats_time_spacing_for_second_order():
    x = exact_x_T(SCHEDULE, 1000, seed=4)
    ref = sample(gaussian_eps(SCHEDULE), x, make_sampler("dpm-solver++", SCHEDULE, 150))
    err = {sp: (sample(gaussian_eps(SCHEDULE), x, make_sampler("dpm-solver++", SCHEDULE, 10, spacing=sp))
                - ref).abs().max().item() for sp in ("logsnr", "time")}
    assert err["logsnr"] < err["time"] / 3
    assert logsnr_timesteps(SCHEDULE, 10) == sorted(set(logsnr_timesteps(SCHEDULE, 10)), reverse=True)
    assert logsnr_timesteps(SCHEDULE, 200) == list(range(199, -1, -1))


def test_dpm_solver_first_order_step_equals_ddim_step():
    x = torch.randn(16, dtype=torch.float64)
    eps = torch.randn(16, dtype=torch.float64)
    ddim = make_sampler("ddim", SCHEDULE, 10)
    dpm = make_sampler("dpm-solver++", SCHEDULE, 10, order=1, spacing="time")
    for i in range(9):
        torch.testing.assert_close(dpm.step(eps, i, x), ddim.step(eps, i, x), rtol=1e-10, atol=1e-12)


def test_ddim_step_by_hand():
    s = make_sampler("ddim", SCHEDULE, 4)
    t, t_prev = s.timesteps[0], s.timesteps[1]
    ab, abp = float(SCHEDULE.alpha_bar64[t]), float(SCHEDULE.alpha_bar64[t_prev])
    x, eps = torch.tensor([0.5], dtype=torch.float64), torch.tensor([-1.25], dtype=torch.float64)
    x0 = (0.5 + math.sqrt(1 - ab) * 1.25) / math.sqrt(ab)
    assert s.step(eps, 0, x).item() == pytest.approx(math.sqrt(abp) * x0 - math.sqrt(1 - abp) * 1.25, rel=1e-12)
    assert s.step(eps, 3, x).item() == pytest.approx(
        (0.5 + math.sqrt(1 - float(SCHEDULE.alpha_bar64[0])) * 1.25) / math.sqrt(float(SCHEDULE.alpha_bar64[0])))


def test_ddpm_is_bit_identical_to_the_upstream_loop():
    """The RF5 loop: global RNG, torch.normal, float32 0-d tensor arithmetic."""
    eps_fn = lambda x, t: torch.tanh(x * 0.5 + t / 100.0)
    torch.manual_seed(123)
    x = torch.normal(0, 1, size=(2, 1, 50))
    for t in range(199, -1, -1):
        x = (x - (1 - SCHEDULE.alpha[t]) / torch.sqrt(1 - SCHEDULE.alpha_bar[t]) * eps_fn(x, t)) \
            / torch.sqrt(SCHEDULE.alpha[t])
        if t > 0:
            x = x + SCHEDULE.sigma[t] * torch.normal(0, 1, size=(2, 1, 50))
    torch.manual_seed(123)
    ours = sample(eps_fn, torch.randn(2, 1, 50), DDPMSampler(SCHEDULE))
    assert torch.equal(ours, x)


def test_partial_ddpm_chains_compose_to_the_full_chain():
    eps_fn = gaussian_eps(SCHEDULE)
    x = exact_x_T(SCHEDULE, 64, seed=5)
    full = sample(eps_fn, x, DDPMSampler(SCHEDULE), generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    w = sample(eps_fn, x, DDPMSampler(SCHEDULE, t_start=199, t_stop=50), generator=g)
    out = sample(eps_fn, w, DDPMSampler(SCHEDULE, t_start=49, t_stop=0), generator=g)
    assert torch.equal(out, full)


def test_spaced_timesteps_and_errors():
    assert spaced_timesteps(200, 5) == [199, 149, 100, 50, 0]
    assert spaced_timesteps(200, 200) == list(range(199, -1, -1))
    with pytest.raises(ValueError, match="steps must be in"):
        spaced_timesteps(200, 0)
    with pytest.raises(ValueError, match="ddpm runs all 200 steps"):
        make_sampler("ddpm", SCHEDULE, 20)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", SCHEDULE)
