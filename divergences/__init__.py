"""Adversarial objectives for DDGAN, by name.

    >>> from divergences import get_divergence
    >>> div = get_divergence("hellinger", generator_loss="nonsaturating")
    >>> loss_d = div.d_loss(real_out, fake_out); loss_g = div.g_loss(fake_out)

A new divergence is one file with a subclass of FDivergence (or Divergence)
and its class in DIVERGENCES below (a paired one, RpGAN, also gives V on the real pair to
g_loss: base.Divergence.paired).
"""
import inspect

from .base import Divergence, FDivergence
from .hellinger import SquaredHellinger
from .js import JensenShannon
from .regularizers import R1, R2, GradientPenalty, Regularizer, gradient_penalty, r1_penalty
from .rkl import ReverseKL
from .rpgan import RelativisticPairing
from .tv import TotalVariation
from .wgan_gp import WassersteinGP

DIVERGENCES = {cls.name: cls for cls in (JensenShannon, SquaredHellinger, ReverseKL, TotalVariation,
                                             WassersteinGP, RelativisticPairing)}
DEFAULT_DIVERGENCE = JensenShannon.name  # a config's and the 2-D benchmark's, unless told


def get_divergence(name, **options):
    """Build the divergence called `name` with its options (see each class's __init__)."""
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; valid names: {', '.join(DIVERGENCES)}")
    cls = DIVERGENCES[name]
    accepted = list(inspect.signature(cls.__init__).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"divergence {name!r} has no option(s) {', '.join(unknown)}; "
                         f"its options are: {', '.join(accepted)}")
    return cls(**options)


__all__ = ["DEFAULT_DIVERGENCE", "DIVERGENCES", "Divergence", "FDivergence", "GradientPenalty", "R1", "R2", "Regularizer",
           "get_divergence", "gradient_penalty", "r1_penalty"]
