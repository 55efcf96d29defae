"""The original GAN objective: sup_V F = 2 JSD(P, Q) - log 4."""
import torch.nn.functional as F

from .base import FDivergence


class JensenShannon(FDivergence):
    name = "js"
    default_generator_loss = "nonsaturating"  # softplus(-V), as DDGAN trains

    def activation(self, v):
        return -F.softplus(-v)  # -log(1 + e^{-v})

    def conjugate_of_activation(self, v):
        return F.softplus(v)  # -log(1 - sigmoid(v))
