"""Divergences against REFERENCE §3: exact values, variational optima, penalties."""
import math
import re

import pytest
import torch

import divergences
from divergences import DIVERGENCES, FDivergence, get_divergence, gradient_penalty, r1_penalty

from .conftest import REPO

# The table of REFERENCE §3, written literally: g_f(v) and f*(t) as plain math.
TABLE = {
    "js": (lambda v: -math.log(1 + math.exp(-v)), lambda t: -math.log(1 - math.exp(t))),
    "hellinger": (lambda v: 1 - math.exp(-v), lambda t: t / (1 - t)),
    "rkl": (lambda v: -math.exp(-v), lambda t: -1 - math.log(-t)),
    "tv": (lambda v: 0.5 * math.tanh(v), lambda t: t),
}

P = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
Q = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)


def closed_form(name, p, q):
    """D_f(P || Q) in the form sup_V F equals (REFERENCE §3, last column)."""
    m = (p + q) / 2
    return {
        "js": (p * (p / m).log()).sum() + (q * (q / m).log()).sum() - math.log(4),  # 2 JSD - log 4
        "hellinger": ((p.sqrt() - q.sqrt()) ** 2).sum(),
        "rkl": (q * (q / p).log()).sum(),
        "tv": 0.5 * (p - q).abs().sum(),
    }[name].item()


def test_registry_names_are_exact():
    assert list(DIVERGENCES) == ["js", "hellinger", "rkl", "tv", "wgan-gp"]
    for name, cls in DIVERGENCES.items():
        assert cls.name == name
        assert isinstance(get_divergence(name), cls)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        get_divergence("kl2")
    for name in DIVERGENCES:
        assert name in str(err.value)


def test_unknown_option_is_an_error():
    with pytest.raises(ValueError, match="gp_weight"):
        get_divergence("js", gp_weight=10)
    with pytest.raises(ValueError, match="generator_loss"):
        get_divergence("tv", generator_loss="minimax")
    with pytest.raises(ValueError, match="n_critic"):
        get_divergence("wgan-gp", n_critic=0)


@pytest.mark.parametrize("name", list(TABLE))
def test_exact_loss_values(name):
    g_f, f_star = TABLE[name]
    real = [0.3, -1.2, 2.0]
    fake = [-0.7, 0.4, -2.5, 0.1]
    div = get_divergence(name)
    expected_d = -(sum(g_f(v) for v in real) / 3 - sum(f_star(g_f(v)) for v in fake) / 4)
    got = div.d_loss(torch.tensor(real, dtype=torch.float64), torch.tensor(fake, dtype=torch.float64))
    assert got.item() == pytest.approx(expected_d, rel=1e-12)

    fake_t = torch.tensor(fake, dtype=torch.float64)
    saddle = -sum(f_star(g_f(v)) for v in fake) / 4
    nonsaturating = -sum(g_f(v) for v in fake) / 4
    default = nonsaturating if name == "js" else saddle
    assert div.g_loss(fake_t).item() == pytest.approx(default, rel=1e-12)
    assert get_divergence(name, generator_loss="saddle").g_loss(fake_t).item() == pytest.approx(saddle)
    assert get_divergence(name, generator_loss="nonsaturating").g_loss(fake_t).item() == \
        pytest.approx(nonsaturating)


def test_js_generator_loss_is_softplus_of_minus_v():
    v = torch.randn(100, dtype=torch.float64)
    assert torch.allclose(get_divergence("js").g_loss(v), torch.nn.functional.softplus(-v).mean())


def test_wgan_losses():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0, 5.0])
    div = get_divergence("wgan-gp")
    assert div.d_loss(real, fake).item() == pytest.approx(1.0 - 2.0)
    assert div.g_loss(fake).item() == pytest.approx(-1.0)
    assert (div.gp_weight, div.n_critic) == (10.0, 5)


def minimise_over_free_outputs(div, p, q, steps=3000):
    """min over one free output per category of d_loss, with batch means weighted as p and q.

    p and q have denominators of 10, so a batch of 10 indices realises each exactly.
    """
    real_index = torch.repeat_interleave(torch.arange(4), (p * 10).round().long())
    fake_index = torch.repeat_interleave(torch.arange(4), (q * 10).round().long())
    v = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.05)
    for _ in range(steps):
        loss = div.d_loss(v[real_index], v[fake_index])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return div.d_loss(v[real_index], v[fake_index]).item()


@pytest.mark.parametrize("name", list(TABLE))
def test_minimum_of_d_loss_is_minus_the_divergence(name):
    found = minimise_over_free_outputs(get_divergence(name), P, Q)
    assert found == pytest.approx(-closed_form(name, P, Q), abs=1e-3)


def test_js_minimum_is_log4_minus_2jsd():
    found = minimise_over_free_outputs(get_divergence("js"), P, Q)
    m = (P + Q) / 2
    jsd = 0.5 * (P * (P / m).log()).sum() + 0.5 * (Q * (Q / m).log()).sum()
    assert found == pytest.approx(math.log(4) - 2 * jsd.item(), abs=1e-3)


def critic_linear(w):
    return lambda x, x_t, t: (x * w).flatten(1).sum(1) + 0.5 * x_t.flatten(1).sum(1) * t


def test_gradient_penalty_of_a_critic_with_known_gradient():
    w = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # ||grad|| = sqrt(5) for every input
    real, fake = torch.randn(16, 2, 2), torch.randn(16, 2, 2)
    x_t, t = torch.randn(16, 2, 2), torch.ones(16)
    gp = gradient_penalty(critic_linear(w), real, fake, x_t, t)
    assert gp.item() == pytest.approx((math.sqrt(5) - 1) ** 2, rel=1e-6)


def test_gradient_penalty_trains_a_critic_whose_gradient_is_tiny():
    """A near-zero-initialised critic has ||grad V|| ~ 1e-7: the penalty (s ||w|| - 1)^2 must
    still pull it towards norm 1, with d/ds = 2 (s ||w|| - 1) ||w||, not be clamped flat."""
    w = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    scale = torch.tensor(1e-7, requires_grad=True)
    critic = lambda x, x_t, t: scale * (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(8, 2, 2), torch.randn(8, 2, 2)
    gp = gradient_penalty(critic, real, fake, real, None)
    (grad,) = torch.autograd.grad(gp, scale)
    assert grad.item() == pytest.approx(2 * (1e-7 * math.sqrt(5) - 1) * math.sqrt(5), rel=1e-5)


def test_gradient_penalty_evaluates_on_interpolates():
    """With V = ||x||^2 / 2 the gradient is x_hat itself; real = 3 e1, fake = -e1 per sample."""
    real = torch.tensor([[3.0, 0.0]]).repeat(20000, 1)
    fake = torch.tensor([[-1.0, 0.0]]).repeat(20000, 1)
    critic = lambda x, x_t, t: 0.5 * x.pow(2).sum(1)  # noqa: E731
    gp = gradient_penalty(critic, real, fake, real, None)
    # x_hat = s e1, s = 4u - 1 ~ U(-1, 3): E[(|s| - 1)^2] = (1/3 + 3) / 4 = 5/6.
    assert gp.item() == pytest.approx(5 / 6, abs=0.02)
    assert gp.requires_grad  # create_graph=True: the penalty trains the critic


def test_r1_penalty_closed_form():
    x = torch.randn(32, 3, requires_grad=True)
    out = 1.5 * x.pow(2).sum(1)  # grad = 3 x
    assert r1_penalty(out, x).item() == pytest.approx((9 * x.pow(2).sum(1)).mean().item(), rel=1e-6)


def test_a_sixth_divergence_as_the_readme_shows():
    """The README's recipe for adding KL(P || Q) works as printed."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- kl-example -->\s*```python\n(.*?)```", readme, re.S).group(1)
    namespace = {}
    exec(block.replace("from .base import", "from divergences.base import"), namespace)
    kl_class = next(v for v in namespace.values()
                    if isinstance(v, type) and issubclass(v, FDivergence) and v is not FDivergence)
    found = minimise_over_free_outputs(kl_class(), P, Q)
    assert found == pytest.approx(-(P * (P / Q).log()).sum().item(), abs=1e-3)
    assert "DIVERGENCES" in readme and divergences.DIVERGENCES is DIVERGENCES


def test_a_regulariser_defined_here_joins_the_discriminator_step():
    """R2 (a zero-centred penalty on fake x_{t-1}), written as one Regularizer subclass, enters
    D's total loss with its weight, every `every` steps, beside the divergence's own."""
    from ddgan.diffusion import ForwardProcess
    from ddgan.methods.ddgan import discriminator_step
    from ddgan.networks import MLPDiscriminator, MLPGenerator
    from divergences import R1, Regularizer
    from divergences.regularizers import _squared_grad_norm

    class R2(Regularizer):
        name, every = "r2", 2

        def weight_at(self, d_step):
            return 0.5 if d_step % self.every == 0 else 0.0

        def __call__(self, critic, real, fake, condition, real_out):
            fake = fake.detach().requires_grad_(True)
            return _squared_grad_norm(critic(fake, *condition), fake).mean()

    torch.manual_seed(0)
    generator, discriminator = MLPGenerator(nz=2, hidden=16), MLPDiscriminator(hidden=16)
    optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.0)  # the losses, not the update
    divergence = get_divergence("wgan-gp")
    divergence.regularizers += [R2(), R1(0.2, every=3)]
    x0 = torch.randn(64, 2)
    for d_step, expected in [(0, {"gp", "r2", "r1"}), (1, {"gp"}), (2, {"gp", "r2"}), (3, {"gp", "r1"})]:
        torch.manual_seed(d_step)
        stats = discriminator_step(generator, discriminator, optimizer, ForwardProcess(2), divergence,
                                   x0, 2, d_step)
        assert expected == {name for name in ("gp", "r1", "r2") if name in stats}
        weights = {"gp": 10.0, "r2": 0.5, "r1": 0.2 / 2 * 3}  # R1 lazy every 3, StyleGAN2's rule
        added = sum(weights[name] * stats[name] for name in expected)
        assert stats["d_total"] - stats["d_loss"] == pytest.approx(float(added), rel=1e-5)
