"""The forward process against docs/THEORY.md §1 (closed forms and Monte Carlo)."""
import math

import pytest
import torch

from ddgan.diffusion import ForwardProcess


def vp_abar(s, beta_min=0.1, beta_max=20.0):
    return math.exp(-0.5 * s**2 * (beta_max - beta_min) - s * beta_min)


@pytest.mark.parametrize("T", [1, 2, 4, 10])
def test_schedule_matches_the_vp_sde(T):
    fp = ForwardProcess(T)
    eps = 1e-3
    times = [eps + (1 - eps) * k / T for k in range(T + 1)]
    betas = [1 - vp_abar(times[k]) / vp_abar(times[k - 1]) for k in range(1, T + 1)]
    assert fp.num_steps == T
    assert torch.allclose(fp.betas.double(), torch.tensor(betas, dtype=torch.float64), rtol=1e-6)
    abar = math.prod(1 - b for b in betas)
    assert fp.alphas_cumprod[-1].item() == pytest.approx(abar, rel=1e-5)
    # x_T is close to N(0, I) even at T = 1: abar_T = abar(1) / abar(eps) ~ 4e-5.
    assert fp.alphas_cumprod[-1] < 1e-4
    assert torch.all(fp.alphas_cumprod[1:] < fp.alphas_cumprod[:-1])


def test_schedule_known_value_T1():
    beta_1 = 1 - math.exp(-0.5 * 19.9 - 0.1) / math.exp(-0.5 * 1e-6 * 19.9 - 1e-4)
    assert ForwardProcess(1).betas.item() == pytest.approx(beta_1, rel=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True, None])
def test_num_steps_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="num_steps"):
        ForwardProcess(bad)


def test_t_out_of_range_is_an_error():
    fp = ForwardProcess(4)
    x = torch.zeros(2, 3)
    for t in ([0, 1], [4, 5]):
        with pytest.raises(ValueError, match="1..4"):
            fp.q_sample(x, torch.tensor(t))


def test_posterior_mean_and_variance_closed_form():
    T = 4
    fp = ForwardProcess(T)
    betas = fp.betas.double()
    abar = torch.cumprod(1 - betas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    x0, x_t = torch.randn(T, 5), torch.randn(T, 5)
    t = torch.arange(1, T + 1)
    mean, var = fp.posterior_mean_var(x0, x_t, t)
    for i in range(T):
        mu = (abar_prev[i].sqrt() * betas[i] / (1 - abar[i]) * x0[i]
              + (1 - betas[i]).sqrt() * (1 - abar_prev[i]) / (1 - abar[i]) * x_t[i])
        assert torch.allclose(mean[i], mu.float(), atol=1e-5)
        assert var[i].item() == pytest.approx(((1 - abar_prev[i]) / (1 - abar[i]) * betas[i]).item(),
                                              rel=1e-5)
    assert var[0].item() == 0.0  # btilde_1 = 0


def test_posterior_sample_at_t1_is_x0_exactly_noise_free():
    fp = ForwardProcess(3)
    x0, x_t = torch.randn(6, 4), torch.randn(6, 4)
    t = torch.ones(6, dtype=torch.long)
    assert torch.allclose(fp.posterior_sample(x0, x_t, t), x0, atol=1e-6)
    x_prev, _ = fp.q_sample_pair(x0, t)
    assert torch.equal(x_prev, x0)


@pytest.mark.parametrize("step", [1, 2, 3, 4])
def test_posterior_sample_has_the_marginal_of_q(step):
    """x_t ~ q(x_t|x0), x_{t-1} ~ q(x_{t-1}|x_t, x0)  =>  x_{t-1} ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1})."""
    torch.manual_seed(step)
    fp = ForwardProcess(4)
    n = 400_000
    x0 = torch.full((n, 1), 0.7)
    t = torch.full((n,), step)
    x_prev = fp.posterior_sample(x0, fp.q_sample(x0, t), t)
    abar_prev = fp.alphas_cumprod_prev[step - 1].item()
    assert x_prev.mean().item() == pytest.approx(math.sqrt(abar_prev) * 0.7, abs=5e-3)
    assert x_prev.var().item() == pytest.approx(1 - abar_prev, abs=5e-3)


@pytest.mark.parametrize("step", [2, 4])
def test_real_pair_has_the_right_joint(step):
    """q_sample_pair: x_{t-1} ~ q(x_{t-1}|x0) and x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t)."""
    fp = ForwardProcess(4)
    n = 400_000
    x0 = torch.full((n, 1), -0.5)
    x_prev, x_t = fp.q_sample_pair(x0, torch.full((n,), step))
    abar = fp.alphas_cumprod[step - 1].item()
    beta = fp.betas[step - 1].item()
    assert x_t.mean().item() == pytest.approx(math.sqrt(abar) * -0.5, abs=5e-3)
    assert x_t.var().item() == pytest.approx(1 - abar, abs=5e-3)
    residual = x_t - math.sqrt(1 - beta) * x_prev
    assert residual.var().item() == pytest.approx(beta, rel=2e-2)
    assert torch.corrcoef(torch.cat([residual, x_prev], 1).T)[0, 1].abs() < 5e-3
