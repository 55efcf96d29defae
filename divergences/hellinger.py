"""Squared Hellinger distance: sup_V F = sum (sqrt p - sqrt q)^2."""
import torch

from .base import FDivergence


class SquaredHellinger(FDivergence):
    name = "hellinger"

    def activation(self, v):
        return 1 - torch.exp(-v)

    def conjugate_of_activation(self, v):
        return torch.expm1(v)  # t / (1 - t) at t = 1 - e^{-v}
