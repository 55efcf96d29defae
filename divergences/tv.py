"""Total variation: sup_V F = 0.5 sum |p - q|."""
import torch

from .base import FDivergence


class TotalVariation(FDivergence):
    name = "tv"

    def activation(self, v):
        return 0.5 * torch.tanh(v)

    def conjugate_of_activation(self, v):
        return 0.5 * torch.tanh(v)  # f*(t) = t
