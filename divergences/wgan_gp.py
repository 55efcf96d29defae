"""Wasserstein-1 with a gradient penalty (Gulrajani et al. 2017).

The critic loss here is E_Q[V] - E_P[V]; the penalty
gp_weight * E[(||grad V(x_hat)|| - 1)^2] is its regulariser (regularizers.GradientPenalty),
which the discriminator step adds.
"""
from .base import Divergence
from .regularizers import GradientPenalty


class WassersteinGP(Divergence):
    name = "wgan-gp"

    def __init__(self, gp_weight=10.0, n_critic=5):
        super().__init__(n_critic)
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight!r}")
        self.gp_weight = float(gp_weight)
        if self.gp_weight > 0:
            self.regularizers.append(GradientPenalty(self.gp_weight))

    def d_loss(self, real_out, fake_out):
        return fake_out.mean() - real_out.mean()

    def g_loss(self, fake_out):
        return -fake_out.mean()
