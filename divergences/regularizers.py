"""Gradient regularisers of the discriminator, for every divergence.

A Regularizer is a penalty the discriminator step adds to D's loss, weight_at(d_step)
times its value; a divergence lists its own in `regularizers` (wgan-gp: the gradient
penalty), and the method adds R1 on reals and R2 on fakes from its config. A new penalty
is one subclass here.

The squared norms and their means are taken in float32; under bf16 autocast the
input gradients themselves come through the network's bf16 kernels.
"""
import torch

LAZY_R1_RULES = ("stylegan2", "ddgan")


def _squared_grad_norm(outputs, inputs):
    (grad,) = torch.autograd.grad(outputs.float().sum(), inputs, create_graph=True)
    return grad.float().flatten(1).pow(2).sum(1)


def r1_penalty(real_out, real_input):
    """E_P ||grad_x V(x)||^2 on real inputs (Mescheder et al. 2018).

    real_input must have requires_grad set before the forward pass that made
    real_out. The caller multiplies by gamma / 2 (and by k when lazy every k).
    """
    return _squared_grad_norm(real_out, real_input).mean()


def gradient_penalty(critic, real, fake, *condition):
    """E[(||grad V(x_hat, *condition)|| - 1)^2], x_hat on the segment from fake to real.

    One uniform mixing weight per sample; the condition (x_t, t) is shared by the
    real and fake inputs, so only x_{t-1} is interpolated.
    """
    mix = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)
    x_hat = (mix * real.detach() + (1 - mix) * fake.detach()).requires_grad_(True)
    # The floor only keeps sqrt's gradient finite at an exactly zero gradient: one near real
    # norms (1e-12 was, for a near-zero-initialised critic) would switch the penalty off.
    grad_norm = _squared_grad_norm(critic(x_hat, *condition), x_hat).clamp_min(1e-30).sqrt()
    return (grad_norm - 1).pow(2).mean()


def lazy_r1_weight(r1_gamma, r1_every, d_step, rule="stylegan2"):
    """R1's weight at discriminator step d_step (0-based), applied every r1_every-th step and
    0 in between (docs/THEORY.md §4). 'stylegan2' multiplies gamma / 2 by r1_every there, so the
    average per step stays gamma / 2; 'ddgan' (the authors' --lazy_reg) does not, so it is
    gamma / (2 r1_every)."""
    if rule not in LAZY_R1_RULES:
        raise ValueError(f"the lazy R1 rule must be one of {', '.join(LAZY_R1_RULES)}, got {rule!r}")
    if d_step % r1_every:
        return 0.0
    return r1_gamma / 2 * (r1_every if rule == "stylegan2" else 1)


class Regularizer:
    """A penalty on the discriminator. name: its key in the step's statistics (and the logs).
    on_real (on_fake): it differentiates D's output on the real (fake) pair with respect to
    x_{t-1}, so the step makes that pass with input gradients. per_sample: it needs each output
    to depend on its own input only (no minibatch statistics in D)."""
    name = None
    on_real = False
    on_fake = False
    per_sample = False
    every = 1  # it weighs on every `every`-th step (a lazy penalty's interval)

    def weight_at(self, d_step):
        """Its weight at discriminator step d_step (0-based); 0 skips it there."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def __call__(self, critic, real, fake, condition, real_out, fake_out):
        """The penalty's value. critic(x_{t-1}, *condition) is D, differentiable twice; real and
        fake are x_{t-1} batches, real_out and fake_out D's outputs on them."""
        raise NotImplementedError


class R1(Regularizer):
    """(gamma / 2) E_P ||grad V||^2 on real x_{t-1}, lazy every `every` steps by `lazy_rule`."""
    name, on_real = "r1", True

    def __init__(self, gamma, every=1, lazy_rule="stylegan2"):
        self.gamma, self.every, self.lazy_rule = gamma, every, lazy_rule

    def weight_at(self, d_step):
        return lazy_r1_weight(self.gamma, self.every, d_step, self.lazy_rule)

    def __call__(self, critic, real, fake, condition, real_out, fake_out):
        return r1_penalty(real_out, real)


class R2(R1):
    """(gamma / 2) E_Q ||grad V||^2 on fake x_{t-1}: R1's twin on the generator's samples, on R1's
    lazy schedule."""
    name, on_real, on_fake = "r2", False, True

    def __call__(self, critic, real, fake, condition, real_out, fake_out):
        return _squared_grad_norm(fake_out, fake).mean()


def input_penalties(divergence, r1_gamma, r2_gamma=None, every=1, lazy_rule="stylegan2"):
    """R1 (and R2) for `divergence`, to go before its own regularisers. r2_gamma None: R1's
    gamma for a divergence that comes with R2 (with_r2, RpGAN's pairing), else none."""
    if r2_gamma is None:
        r2_gamma = r1_gamma if divergence.with_r2 else 0.0
    for name, gamma in (("r1_gamma", r1_gamma), ("r2_gamma", r2_gamma)):
        if gamma < 0:
            raise ValueError(f"{name} must be >= 0 (0 = off), got {gamma}")
    return ([R1(r1_gamma, every, lazy_rule)] if r1_gamma > 0 else []) + \
           ([R2(r2_gamma, every, lazy_rule)] if r2_gamma > 0 else [])


class GradientPenalty(Regularizer):
    """weight E[(||grad V(x_hat)|| - 1)^2] on interpolates of real and fake x_{t-1}, every step."""
    name, per_sample = "gp", True

    def __init__(self, weight):
        self.weight = weight

    def weight_at(self, d_step):
        return self.weight

    def __call__(self, critic, real, fake, condition, real_out, fake_out):
        return gradient_penalty(critic, real, fake, *condition)
