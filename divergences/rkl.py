"""Reverse KL: sup_V F = KL(Q || P), mode-seeking."""
import torch

from .base import FDivergence


class ReverseKL(FDivergence):
    name = "rkl"

    def activation(self, v):
        return -torch.exp(-v)

    def conjugate_of_activation(self, v):
        return v - 1  # -1 - log(-t) at t = -e^{-v}
