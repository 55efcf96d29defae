"""RpGAN: the relativistic pairing loss, which scores each fake against its own real.

    D: E[softplus(V(fake) - V(real))]      G: E[softplus(V(real) - V(fake))]

Here a real and a fake x_{t-1} are paired when they share x_t and t, so D judges which of the
two is the real continuation of the same noisy image, not whether either one looks real in
isolation. Each pair is scored once; the losses read only differences of V, so D has no
absolute level to push (a constant shift of V changes nothing), and at P = Q every D scores
log 2 at best, reached by a constant one (docs/THEORY.md). It is paired with R1 on the real
and R2 on the fake x_{t-1} (with_r2): without both, the pairing loss alone does not settle.
"""
import torch.nn.functional as F

from .base import Divergence


class RelativisticPairing(Divergence):
    name = "rpgan"
    paired = True
    with_r2 = True

    def d_loss(self, real_out, fake_out):
        return F.softplus(fake_out - real_out).mean()

    def g_loss(self, fake_out, real_out):
        return F.softplus(real_out - fake_out).mean()
