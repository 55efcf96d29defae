"""Samplers against data whose ideal denoiser is known in closed form (docs/THEORY.md §6)."""
import pytest
import torch

from ddgan.samplers import (ancestral_sampler, ddim_sampler, edm_sampler, edm_sigmas, linear_betas,
                            respaced_schedule, select_steps)

S = 0.5  # data ~ N(0, S^2)


def gaussian_eps(alphas_cumprod):
    """The exact noise prediction E[eps | x_t] for data N(0, S^2)."""
    def eps_model(x, t):
        abar = alphas_cumprod[t - 1].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        return (1 - abar).sqrt() / (abar * S**2 + 1 - abar) * x
    return eps_model


ABAR = torch.cumprod(1 - linear_betas(), 0)


def ddim_std(num_calls, spacing="uniform"):
    """DDIM with eta = 0 is linear in x_T for Gaussian data: x_T = 1 gives the output std."""
    x_T = torch.ones(1, 1, dtype=torch.float64)
    schedule = respaced_schedule(ABAR, select_steps(1000, num_calls, spacing))
    return ddim_sampler(gaussian_eps(ABAR), x_T, schedule, clip_x0=False).item()


def ancestral_std(num_calls, variance="posterior"):
    torch.manual_seed(0)
    x_T = torch.randn(200_000, 1, dtype=torch.float64)
    schedule = respaced_schedule(ABAR, select_steps(1000, num_calls))
    return ancestral_sampler(gaussian_eps(ABAR), x_T, schedule, variance=variance,
                             clip_x0=False).std().item()


def test_linear_schedule():
    betas = linear_betas()
    assert len(betas) == 1000 and betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)


def test_step_selection():
    assert select_steps(1000, 1000) == list(range(1, 1001))
    uniform = select_steps(1000, 10)
    assert uniform[0] == 1 and uniform[-1] == 1000 and uniform == sorted(uniform)
    quadratic = select_steps(1000, 10, "quadratic")
    assert quadratic[0] == 1 and quadratic[-1] == 801  # (sqrt(0.8 T))^2 + 1
    gaps = [b - a for a, b in zip(quadratic, quadratic[1:])]
    assert gaps == sorted(gaps)  # dense near the data
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="1..1000"):
            select_steps(1000, bad)
    with pytest.raises(ValueError, match="spacing must be one of uniform, leading, quadratic"):
        select_steps(1000, 10, "linear")


@pytest.mark.parametrize("spacing", ["uniform", "leading", "quadratic"])
def test_every_spacing_starts_at_the_noisiest_step_and_places_distinct_steps(spacing):
    assert select_steps(1000, 1, spacing) == [1000]  # one call: x_0 predicted from pure noise
    assert select_steps(1000, 1000, spacing) == list(range(1, 1001))
    for calls in (2, 4, 8, 16, 32, 50, 100, 999):
        steps = select_steps(1000, calls, spacing)
        assert len(steps) == calls and steps == sorted(set(steps)) and 1 <= steps[0] and steps[-1] <= 1000


def test_leading_and_quadratic_are_ddims_grids():
    # DDIM's code: range(0, T, T // K) (0-indexed), and int(linspace(0, sqrt(0.8 T), K)^2).
    assert select_steps(1000, 50, "leading") == [t + 1 for t in range(0, 1000, 20)]
    assert select_steps(1000, 10, "leading") == [t + 1 for t in range(0, 1000, 100)]
    assert select_steps(1000, 20, "quadratic") == [int(v) + 1 for v in (torch.linspace(0, 800**0.5, 20, dtype=torch.float64) ** 2)]
    # Where DDIM's grid repeats small steps (K >= 30), each repeat moves one above its predecessor.
    quadratic = select_steps(1000, 100, "quadratic")
    assert quadratic[:14] == list(range(1, 15)) and quadratic[-1] == 801


def test_one_call_predicts_x0_from_pure_noise():
    """K = 1 starts at T, so the output is E[x_0 | x_T] ~ sqrt(abar_T) S^2 x_T: near 0, not x_T."""
    expected = ABAR[-1].sqrt().item() * S**2 / (ABAR[-1].item() * S**2 + 1 - ABAR[-1].item())
    assert ddim_std(1) == pytest.approx(expected, rel=1e-6)
    assert ancestral_std(1) == pytest.approx(expected, rel=1e-2)


def test_ddim_converges_to_the_data_variance():
    assert ddim_std(1000) == pytest.approx(S, rel=0.01)
    # Recorded errors at few calls (so that a change in them shows).
    assert ddim_std(10) / S - 1 == pytest.approx(RECORDED["ddim_10"], abs=2e-3)
    assert ddim_std(50) / S - 1 == pytest.approx(RECORDED["ddim_50"], abs=2e-3)


def test_respaced_ancestral_converges_to_the_data_variance():
    assert ancestral_std(1000) == pytest.approx(S, rel=0.01)
    assert ancestral_std(1000, "beta") == pytest.approx(S, rel=0.01)
    assert ancestral_std(10) / S - 1 == pytest.approx(RECORDED["ancestral_10"], abs=5e-3)


def test_clipping_keeps_the_predicted_x0_in_the_data_range():
    """Data N(0, 2^2): the exact E[x_0 | x_t] leaves [-1, 1]. Clipped, every sample (the
    last step's x_0) lies inside it; unclipped, the samples keep the data's std."""
    wide = 2.0
    eps_model = lambda x, t: (1 - ABAR[t - 1]).sqrt().view(-1, 1) / (ABAR[t - 1].view(-1, 1) * wide**2 + 1 - ABAR[t - 1].view(-1, 1)) * x  # noqa: E731
    x_T = torch.randn(20_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sampler in (ancestral_sampler, ddim_sampler):
        schedule = respaced_schedule(ABAR, select_steps(1000, 50))
        clipped = sampler(eps_model, x_T, schedule, rng=torch.Generator().manual_seed(1))
        unclipped = sampler(eps_model, x_T, schedule, rng=torch.Generator().manual_seed(1), clip_x0=False)
        assert clipped.abs().max() <= 1 and (clipped.abs() > 0.99).float().mean() > 0.1
        assert unclipped.std().item() == pytest.approx(wide, rel=0.1) and unclipped.abs().max() > 3


def test_edm_sigmas():
    sigmas = edm_sigmas(18)
    assert len(sigmas) == 19 and sigmas[-1] == 0
    assert sigmas[0].item() == pytest.approx(80) and sigmas[-2].item() == pytest.approx(0.002)
    assert torch.all(sigmas[1:] < sigmas[:-1])
    rho = 7
    middle = (80 ** (1 / rho) + 0.5 * (0.002 ** (1 / rho) - 80 ** (1 / rho))) ** rho
    assert edm_sigmas(3)[1].item() == pytest.approx(middle)


def gaussian_denoiser(x, sigma):
    return S**2 / (S**2 + sigma.view(-1, 1) ** 2) * x


def test_edm_sampler_on_gaussian_data():
    """Linear in the latents: a latent of 1 comes out as the sample standard deviation."""
    ones = torch.ones(1, 1)
    assert edm_sampler(gaussian_denoiser, ones, edm_sigmas(100)).item() == pytest.approx(S, rel=0.01)
    # At 18 steps Heun's discretisation error is about +5% here: expected, not a bug.
    error_18 = edm_sampler(gaussian_denoiser, ones, edm_sigmas(18)).item() / S - 1
    assert error_18 == pytest.approx(RECORDED["edm_heun_18"], abs=2e-3)
    assert 0.03 < error_18 < 0.07


def test_edm_sampler_on_two_points():
    """Data 1/2 delta(-1) + 1/2 delta(+1): D(x; sigma) = tanh(x / sigma^2)."""
    torch.manual_seed(0)
    samples = edm_sampler(lambda x, sigma: torch.tanh(x / sigma.view(-1, 1) ** 2),
                          torch.randn(10_000, 1), edm_sigmas(18))
    assert ((samples.abs() - 1).abs() < 0.05).float().mean() >= 0.95
    assert 0.45 < (samples > 0).float().mean() < 0.55


def test_edm_network_calls():
    calls = []

    def counting(x, sigma):
        calls.append(1)
        return gaussian_denoiser(x, sigma)

    edm_sampler(counting, torch.ones(2, 1), edm_sigmas(18))
    assert len(calls) == 35  # 2N - 1
    calls.clear()
    edm_sampler(counting, torch.ones(2, 1), edm_sigmas(18), second_order=False)
    assert len(calls) == 18


def test_edm_stochastic_sampler_still_reaches_the_data():
    torch.manual_seed(0)
    samples = edm_sampler(gaussian_denoiser, torch.randn(50_000, 1), edm_sigmas(100), S_churn=40,
                          S_min=0.05, S_max=50, S_noise=1.0, rng=None)
    assert samples.std().item() == pytest.approx(S, rel=0.02)


# Relative errors of the sample standard deviation, measured with this file's functions.
RECORDED = {"ddim_10": -0.2768, "ddim_50": -0.0560, "ancestral_10": -0.3543,
            "edm_heun_18": 0.0552}
