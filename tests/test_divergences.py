"""Divergences against docs/THEORY.md §3-4: exact values, variational optima, penalties."""
import math
import re

import pytest
import torch

import divergences
from divergences import DIVERGENCES, FDivergence, get_divergence, gradient_penalty, r1_penalty

from .conftest import REPO

# The table of docs/THEORY.md §3, written literally: g_f(v) and f*(t) as plain math.
TABLE = {
    "js": (lambda v: -math.log(1 + math.exp(-v)), lambda t: -math.log(1 - math.exp(t))),
    "hellinger": (lambda v: 1 - math.exp(-v), lambda t: t / (1 - t)),
    "rkl": (lambda v: -math.exp(-v), lambda t: -1 - math.log(-t)),
    "tv": (lambda v: 0.5 * math.tanh(v), lambda t: t),
}

P = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
Q = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)


def closed_form(name, p, q):
    """D_f(P || Q) in the form sup_V F equals (docs/THEORY.md §3, last column)."""
    m = (p + q) / 2
    return {
        "js": (p * (p / m).log()).sum() + (q * (q / m).log()).sum() - math.log(4),  # 2 JSD - log 4
        "hellinger": ((p.sqrt() - q.sqrt()) ** 2).sum(),
        "rkl": (q * (q / p).log()).sum(),
        "tv": 0.5 * (p - q).abs().sum(),
    }[name].item()


def test_registry_names_are_exact():
    assert list(DIVERGENCES) == ["js", "hellinger", "rkl", "tv", "wgan-gp", "rpgan"]
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
    return descend_d_loss(div, real_index, fake_index, torch.zeros(4, dtype=torch.float64), steps)[0]


def descend_d_loss(div, real_index, fake_index, v, steps):
    """Adam on one free critic output per category; the final d_loss and outputs."""
    v = v.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=0.05)
    for _ in range(steps):
        loss = div.d_loss(v[real_index], v[fake_index])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return div.d_loss(v[real_index], v[fake_index]).item(), v.detach()


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
    """A penalty written as one Regularizer subclass here (zero-centred on fake x_{t-1}, every
    2nd step) enters D's total loss with its weight, beside the divergence's own and R1."""
    from ddgan.diffusion import ForwardProcess
    from ddgan.methods.ddgan import discriminator_step
    from ddgan.networks import MLPDiscriminator, MLPGenerator
    from divergences import R1, Regularizer
    from divergences.regularizers import _squared_grad_norm

    class OnFakes(Regularizer):
        name, every = "on_fakes", 2

        def weight_at(self, d_step):
            return 0.5 if d_step % self.every == 0 else 0.0

        def __call__(self, critic, real, fake, condition, real_out, fake_out):
            fake = fake.detach().requires_grad_(True)
            return _squared_grad_norm(critic(fake, *condition), fake).mean()

    torch.manual_seed(0)
    generator, discriminator = MLPGenerator(nz=2, hidden=16), MLPDiscriminator(hidden=16)
    optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.0)  # the losses, not the update
    divergence = get_divergence("wgan-gp")
    divergence.regularizers += [OnFakes(), R1(0.2, every=3)]
    x0 = torch.randn(64, 2)
    names = ("gp", "on_fakes", "r1")
    for d_step, expected in [(0, set(names)), (1, {"gp"}), (2, {"gp", "on_fakes"}), (3, {"gp", "r1"})]:
        torch.manual_seed(d_step)
        stats = discriminator_step(generator, discriminator, optimizer, ForwardProcess(2), divergence,
                                   x0, 2, d_step)
        assert expected == {name for name in names if name in stats}
        weights = {"gp": 10.0, "on_fakes": 0.5, "r1": 0.2 / 2 * 3}  # R1 lazy every 3, StyleGAN2's rule
        added = sum(weights[name] * stats[name] for name in expected)
        assert stats["d_total"] - stats["d_loss"] == pytest.approx(float(added), rel=1e-5)


# RpGAN: the relativistic pairing loss, with R1 and R2.

def test_rpgan_scores_each_fake_against_its_own_real():
    real, fake = [0.3, -1.2, 2.0, 0.5], [-0.7, 0.4, -2.5, 0.1]
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    div = get_divergence("rpgan")
    r, f = torch.tensor(real, dtype=torch.float64), torch.tensor(fake, dtype=torch.float64)
    assert div.d_loss(r, f).item() == pytest.approx(sum(softplus(b - a) for a, b in zip(real, fake)) / 4,
                                                    rel=1e-12)
    assert div.g_loss(f, r).item() == pytest.approx(sum(softplus(a - b) for a, b in zip(real, fake)) / 4,
                                                    rel=1e-12)
    # The pairing is element by element: other partners give another loss, which an unpaired
    # loss (JS's, a mean over each side alone) would not notice.
    assert div.d_loss(r, f.roll(1)).item() != pytest.approx(div.d_loss(r, f).item(), rel=1e-3)
    assert get_divergence("js").d_loss(r, f.roll(1)).item() == pytest.approx(
        get_divergence("js").d_loss(r, f).item(), rel=1e-12)
    # Only differences count: a shift of D's outputs changes neither loss.
    assert div.d_loss(r + 3, f + 3).item() == pytest.approx(div.d_loss(r, f).item(), rel=1e-12)
    assert div.g_loss(f - 2, r - 2).item() == pytest.approx(div.g_loss(f, r).item(), rel=1e-12)
    assert div.paired and div.with_r2 and not get_divergence("js").paired


def pairs_of(p, q):
    """Every ordered pair (real category, fake category) of 10-element batches realising p and
    q: the product measure P x Q, which independent draws of the real and the fake make."""
    real = torch.repeat_interleave(torch.arange(len(p)), (p * 10).round().long())
    fake = torch.repeat_interleave(torch.arange(len(q)), (q * 10).round().long())
    return torch.cartesian_prod(real, fake).unbind(1)


def minimise_paired(div, p, q, steps=3000):
    real_index, fake_index = pairs_of(p, q)
    v = torch.randn(len(p), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return descend_d_loss(div, real_index, fake_index, v, steps)


def test_rpgan_at_p_equals_q_the_best_critic_is_constant_at_log_2():
    """softplus is convex and E[V(y) - V(x)] = 0 when x and y share a law, so every D scores at
    least log 2 (Jensen), reached by a constant one: from a random start D flattens out."""
    found, v = minimise_paired(get_divergence("rpgan"), P, P)
    assert found == pytest.approx(math.log(2), abs=1e-6)
    assert (v.max() - v.min()).item() < 1e-2
    # Unequal laws can be told apart: D then does better than chance.
    assert minimise_paired(get_divergence("rpgan"), P, Q)[0] < math.log(2) - 0.05


def test_rpgan_with_r1_and_r2_has_the_closed_form_optimum_in_1d():
    """P = delta_a, Q = delta_b, a linear critic V(x) = w x: D's loss with R1 and R2 at gamma is
    softplus(w (b - a)) + gamma w^2 (gamma / 2 from each), stationary where
    sigmoid(w (b - a)) (b - a) + 2 gamma w = 0. The loss and both penalties, composed as the
    discriminator step composes them, reach that w."""
    from scipy.optimize import brentq

    from divergences.regularizers import input_penalties

    a, b, gamma = 1.0, -0.5, 0.3
    div = get_divergence("rpgan")
    penalties = input_penalties(div, gamma)
    assert [type(reg).__name__ for reg in penalties] == ["R1", "R2"]
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    critic = lambda x, x_t, t: (w * x).sum(1)  # noqa: E731
    opt = torch.optim.LBFGS([w], lr=0.5, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        real = torch.full((4, 1), a, dtype=torch.float64, requires_grad=True)
        fake = torch.full((4, 1), b, dtype=torch.float64, requires_grad=True)
        real_out, fake_out = critic(real, None, None), critic(fake, None, None)
        loss = div.d_loss(real_out, fake_out)
        for reg in penalties:
            loss = loss + reg.weight_at(0) * reg(critic, real, fake, (None, None), real_out, fake_out)
        opt.zero_grad()
        loss.backward()
        return loss

    opt.step(closure)
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = brentq(lambda w: sigmoid(w * (b - a)) * (b - a) + 2 * gamma * w, -10, 10)
    assert w.item() == pytest.approx(expected, abs=1e-6)
    assert expected > 0  # D scores the real point higher, held back by the penalties


def test_r2_penalises_the_gradient_on_the_fakes_only():
    from divergences import R2

    real = torch.randn(32, 3, requires_grad=True)
    fake = torch.randn(32, 3, requires_grad=True)
    critic = lambda x, x_t, t: 1.5 * x.pow(2).sum(1)  # noqa: E731 grad = 3 x
    r2 = R2(gamma=0.4, every=2)
    value = r2(critic, real, fake, (None, None), critic(real, None, None), critic(fake, None, None))
    assert value.item() == pytest.approx((9 * fake.detach().pow(2).sum(1)).mean().item(), rel=1e-6)
    assert (r2.weight_at(0), r2.weight_at(1)) == (pytest.approx(0.4 / 2 * 2), 0.0)  # lazy, R1's rule
    assert r2.on_fake and not r2.on_real


@pytest.mark.parametrize("name, r1, r2, expected", [
    ("rpgan", 0.02, None, {"r1": 0.02, "r2": 0.02}),  # RpGAN: R2 at R1's gamma
    ("rpgan", 0.02, 0.0, {"r1": 0.02}),
    ("rpgan", 0.0, None, {}),
    ("js", 0.02, None, {"r1": 0.02}),
    ("js", 0.02, 0.5, {"r1": 0.02, "r2": 0.5}),  # any divergence may take R2
])
def test_the_config_gives_r1_and_r2(name, r1, r2, expected):
    from ddgan.config import load_config
    from ddgan.methods.ddgan import build_divergence

    settings = load_config(None, [f"divergence.name={name}", f"divergence.r1_gamma={r1}",
                                  f"divergence.r2_gamma={'null' if r2 is None else r2}",
                                  "divergence.r1_every=4"])
    found = build_divergence(settings).regularizers
    assert {reg.name: reg.gamma for reg in found} == expected
    assert all(reg.every == 4 for reg in found)


def test_the_paired_generator_step_scores_the_real_of_the_same_noisy_image():
    """G's step under RpGAN: D sees G's x_{t-1} and a real x_{t-1} drawn with the same x_t and t."""
    from ddgan.diffusion import ForwardProcess
    from ddgan.methods.ddgan import generated_prev, generator_step, random_steps
    from ddgan.networks import MLPGenerator
    from divergences import Divergence

    seen = {}

    class Recorded(Divergence):
        paired = True

        def g_loss(self, fake_out, real_out):
            seen.update(fake=fake_out.detach(), real=real_out)
            return (fake_out - real_out).mean()

    class Critic(torch.nn.Module):  # depends on x_t, so a mismatched pair would show
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, x_t, t):
            return self.scale * (x * x_t).sum(1) + t.float()

    torch.manual_seed(0)
    generator, process, x0 = MLPGenerator(nz=2, hidden=8), ForwardProcess(4), torch.randn(16, 2)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.0)
    torch.manual_seed(1)
    generator_step(generator, Critic(), optimizer, process, Recorded(), x0, 2)
    torch.manual_seed(1)  # the same draws, by hand
    t = random_steps(process, 16, "cpu")
    x_prev, x_t = process.q_sample_pair(x0, t)
    with torch.no_grad():
        fake_prev = generated_prev(generator, process, x_t, t, 2)
    critic = Critic()
    assert torch.allclose(seen["real"], critic(x_prev, x_t, t))
    assert torch.allclose(seen["fake"], critic(fake_prev, x_t, t), atol=1e-6)
    assert not seen["real"].requires_grad  # G's gradient comes through its fakes only
