"""Small MLP generator and discriminator for the 2-D benchmark (same signatures as the images')."""
import math

import torch
from torch import nn

from .layers import timestep_embedding


def mlp(in_dim, hidden, depth, out_dim, act):
    layers, dim = [], in_dim
    for _ in range(depth):
        layers += [nn.Linear(dim, hidden), act()]
        dim = hidden
    return nn.Sequential(*layers, nn.Linear(dim, out_dim))


class FourierFeatures(nn.Module):
    """x -> [x, sin(2 pi x B), cos(2 pi x B)] with a fixed Gaussian B (Tancik et al. 2020)."""

    def __init__(self, dim, num, scale):
        super().__init__()
        self.register_buffer("freqs", scale * torch.randn(dim, num))
        self.out_dim = dim + 2 * num

    def forward(self, x):
        # float32 phases in every precision: bf16's 8 bits would blur an angle of tens of radians
        x = x.float()
        with torch.autocast(x.device.type, enabled=False):
            angles = 2 * math.pi * x @ self.freqs
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1)


class MLPGenerator(nn.Module):
    """G(x_t, z, t) -> x_0 prediction for points in R^dim; with nz = 0 (z None) the
    baselines' denoiser, as the U-Net serves both.

    x_t enters through Fourier features as well: a plain MLP learns the
    step-like map from x_t to the nearest sharp mode too slowly (spectral bias).
    t may be real (EDM's noise label).
    """

    def __init__(self, dim=2, nz=2, hidden=256, depth=3, t_dim=16, fourier_features=64,
                 fourier_scale=1.0):
        super().__init__()
        self.nz, self.t_dim = nz, t_dim
        self.features = FourierFeatures(dim, fourier_features, fourier_scale)
        self.net = mlp(self.features.out_dim + nz + t_dim, hidden, depth, dim, nn.SiLU)

    def forward(self, x_t, z, t):
        latent = [z] if self.nz else []
        h = torch.cat([self.features(x_t), *latent, timestep_embedding(t, self.t_dim)], dim=1)
        return self.net(h.to(self.net[0].weight.dtype))  # bf16 where the weights are (ddgan/precision.py)


class MLPDiscriminator(nn.Module):
    """D(x_{t-1}, x_t, t) -> one logit per sample.

    x_{t-1} enters through Fourier features: a plain MLP on raw coordinates
    cannot tell sharp modes from blurred ones in a few thousand steps. x_t gets
    none (its noise would scramble the phases that carry x_{t-1}'s detail).
    """

    def __init__(self, dim=2, hidden=256, depth=3, t_dim=16, fourier_features=64,
                 fourier_scale=1.0):
        super().__init__()
        self.t_dim = t_dim
        self.features = FourierFeatures(dim, fourier_features, fourier_scale)
        self.net = mlp(self.features.out_dim + dim + t_dim, hidden, depth, 1,
                       lambda: nn.LeakyReLU(0.2))

    def forward(self, x_prev, x_t, t):
        h = torch.cat([self.features(x_prev), x_t, timestep_embedding(t, self.t_dim)], dim=1)
        return self.net(h.to(self.net[0].weight.dtype)).squeeze(1)
