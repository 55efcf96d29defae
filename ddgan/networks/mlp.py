"""Small MLP generator and discriminator for the 2-D benchmark (same signatures as the images')."""
import torch
from torch import nn

from .layers import timestep_embedding


def mlp(in_dim, hidden, depth, out_dim, act):
    layers, dim = [], in_dim
    for _ in range(depth):
        layers += [nn.Linear(dim, hidden), act()]
        dim = hidden
    return nn.Sequential(*layers, nn.Linear(dim, out_dim))


class MLPGenerator(nn.Module):
    """G(x_t, z, t) -> x_0 prediction for points in R^dim."""

    def __init__(self, dim=2, nz=2, hidden=256, depth=3, t_dim=16):
        super().__init__()
        self.nz, self.t_dim = nz, t_dim
        self.net = mlp(dim + nz + t_dim, hidden, depth, dim, nn.SiLU)

    def forward(self, x_t, z, t):
        return self.net(torch.cat([x_t, z, timestep_embedding(t, self.t_dim)], dim=1))


class MLPDiscriminator(nn.Module):
    """D(x_{t-1}, x_t, t) -> one logit per sample."""

    def __init__(self, dim=2, hidden=256, depth=3, t_dim=16):
        super().__init__()
        self.t_dim = t_dim
        self.net = mlp(2 * dim + t_dim, hidden, depth, 1, lambda: nn.LeakyReLU(0.2))

    def forward(self, x_prev, x_t, t):
        emb = timestep_embedding(t, self.t_dim)
        return self.net(torch.cat([x_prev, x_t, emb], dim=1)).squeeze(1)
