"""Time-conditioned discriminator D(x_{t-1}, x_t, t) -> one logit per sample.

No normalisation layers and, unless minibatch_std_group > 0, no statistics
across the batch: each output depends on its own sample only, which the
per-sample gradient penalties (R1, WGAN-GP) assume.
"""
import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from .layers import TimeEmbedding


def leaky_relu(x):
    return F.leaky_relu(x, 0.2)


class DownBlock(nn.Module):
    """Residual block that halves the resolution; the time embedding is added after conv1."""

    def __init__(self, in_ch, out_ch, emb_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x, emb):
        h = self.conv1(leaky_relu(x)) + self.emb(emb)[:, :, None, None]
        h = F.avg_pool2d(self.conv2(leaky_relu(h)), 2)
        return (h + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


def minibatch_std(x, group_size):
    """Append the mean standard deviation over groups of samples as one channel (StyleGAN)."""
    group = min(group_size, x.shape[0])
    if x.shape[0] % group:
        raise ValueError(f"batch size {x.shape[0]} is not divisible by minibatch_std_group {group}")
    y = rearrange(x.float(), "(g m) c h w -> g m c h w", g=group)
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # [m]
    std = repeat(std, "m -> (g m) 1 h w", g=group, h=x.shape[2], w=x.shape[3])
    return torch.cat([x, std.to(x.dtype)], dim=1)


class Discriminator(nn.Module):
    def __init__(self, image_size, in_channels, base_channels=64, channel_mult=(1, 2, 4),
                 t_emb_dim=128, minibatch_std_group=0):
        super().__init__()
        self.minibatch_std_group = minibatch_std_group
        self.time_embedding = TimeEmbedding(t_emb_dim, t_emb_dim, nn.LeakyReLU(0.2))
        self.conv_in = nn.Conv2d(2 * in_channels, base_channels, 3, padding=1)
        channels = [base_channels] + [base_channels * m for m in channel_mult]
        self.blocks = nn.ModuleList(
            DownBlock(cin, cout, t_emb_dim) for cin, cout in zip(channels[:-1], channels[1:]))
        extra = 1 if minibatch_std_group else 0
        self.conv_out = nn.Conv2d(channels[-1] + extra, channels[-1], 3, padding=1)
        self.linear = nn.Linear(channels[-1], 1)

    def forward(self, x_prev, x_t, t):
        emb = leaky_relu(self.time_embedding(t))
        h = self.conv_in(torch.cat([x_prev, x_t], dim=1))
        for block in self.blocks:
            h = block(h, emb)
        h = leaky_relu(h)
        if self.minibatch_std_group:
            h = minibatch_std(h, self.minibatch_std_group)
        h = leaky_relu(self.conv_out(h)).sum(dim=[2, 3])
        return self.linear(h).squeeze(1)
