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

from .fir import FIRResample
from .layers import TimeEmbedding, check_choice

NEAR_ZERO = 1e-5  # scale of a near-zero init: tiny weights still pass every layer a gradient


def leaky_relu(x):
    return F.leaky_relu(x, 0.2)


def near_zero_(conv):
    """Shrink a layer's default init to almost zero, so that it starts as a no-op."""
    with torch.no_grad():
        conv.weight.mul_(NEAR_ZERO)
        conv.bias.zero_()


def downsampler(downsample):
    """A block's 2x downsampling: none, a 2x2 average or a [1, 3, 3, 1] FIR blur."""
    if downsample is None:
        return nn.Identity()
    return nn.AvgPool2d(2) if downsample == "avgpool" else FIRResample("down")


class DownBlock(nn.Module):
    """Residual block; the time embedding is added after conv1.

    downsample: None keeps the resolution; "avgpool" halves it with a 2x2 average after
    conv2 (conv2 at the input resolution); "fir" halves it with a [1, 3, 3, 1] FIR blur
    before conv2 (conv2 at the output resolution), as the DDGAN authors do. The skip path
    is downsampled the same way before its 1x1 conv.
    """

    def __init__(self, in_ch, out_ch, emb_dim, downsample=None, near_zero_init=False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        if near_zero_init:
            near_zero_(self.conv2)  # each block starts close to its skip path
        self.downsample = downsampler(downsample)
        self.downsample_before_conv2 = downsample == "fir"

    def forward(self, x, emb):
        h = leaky_relu(self.conv1(leaky_relu(x)) + self.emb(emb)[:, :, None, None])
        if self.downsample_before_conv2:
            h = self.conv2(self.downsample(h))
        else:
            h = self.downsample(self.conv2(h))
        return (h + self.skip(self.downsample(x))) / math.sqrt(2)


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
    """A stem conv, one DownBlock per channel_mult entry, then a head: [leaky ReLU],
    [minibatch std], a 3x3 conv, leaky ReLU, a sum over pixels and a linear layer.

    The defaults are this project's earlier layout. The DDGAN authors' CIFAR-10 layout
    (docs/GUIDE.md) is stem_kernel=1, downsample_first=False, downsample="fir",
    head_activation=False, near_zero_init=True.

    stem_kernel: 3 or 1, the kernel of the stem conv to base_channels.
    downsample_first: whether the first block halves the resolution (every later one does).
    downsample: "avgpool" or "fir", how and where a block halves it (DownBlock).
    head_activation: a leaky ReLU on the last block's output, before minibatch std and conv_out.
    near_zero_init: conv2 of every block and conv_out start near zero.
    floor_odd_sizes: halve an odd size by dropping its last row and column instead of
        refusing it (only for runs saved with the earlier layout, which did so at 28x28).
    """

    def __init__(self, image_size, in_channels, base_channels=64, channel_mult=(1, 2, 4),
                 t_emb_dim=128, minibatch_std_group=0, stem_kernel=3, downsample_first=True,
                 downsample="avgpool", head_activation=True, near_zero_init=False,
                 floor_odd_sizes=False):
        super().__init__()
        for key, value, choices in [("stem_kernel", stem_kernel, (3, 1)),
                                    ("downsample_first", downsample_first, (True, False)),
                                    ("downsample", downsample, ("avgpool", "fir")),
                                    ("head_activation", head_activation, (True, False)),
                                    ("near_zero_init", near_zero_init, (True, False)),
                                    ("floor_odd_sizes", floor_odd_sizes, (True, False))]:
            check_choice(f"discriminator.{key}", value, choices)
        halvings = len(channel_mult) - (0 if downsample_first else 1)
        if image_size % 2 ** halvings and not floor_odd_sizes:  # an odd side would lose a row and a column
            raise ValueError(
                f"image_size {image_size} cannot be halved {halvings} times "
                f"(channel_mult={list(channel_mult)}, downsample_first={downsample_first}); "
                f"use fewer levels or downsample_first=False")
        self.minibatch_std_group = minibatch_std_group
        self.head_activation = head_activation
        self.time_embedding = TimeEmbedding(t_emb_dim, t_emb_dim, nn.LeakyReLU(0.2))
        self.conv_in = nn.Conv2d(2 * in_channels, base_channels, stem_kernel,
                                 padding=stem_kernel // 2)
        channels = [base_channels] + [base_channels * m for m in channel_mult]
        self.blocks = nn.ModuleList(
            DownBlock(cin, cout, t_emb_dim, downsample if i or downsample_first else None,
                      near_zero_init)
            for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])))
        extra = 1 if minibatch_std_group else 0
        self.conv_out = nn.Conv2d(channels[-1] + extra, channels[-1], 3, padding=1)
        if near_zero_init:
            near_zero_(self.conv_out)
        self.linear = nn.Linear(channels[-1], 1)

    def forward(self, x_prev, x_t, t):
        emb = leaky_relu(self.time_embedding(t))
        # in the weights' dtype: bf16 where they are (ddgan/precision.py)
        h = self.conv_in(torch.cat([x_prev, x_t], dim=1).to(self.conv_in.weight.dtype))
        for block in self.blocks:
            h = block(h, emb)
        if self.head_activation:
            h = leaky_relu(h)
        if self.minibatch_std_group:
            h = minibatch_std(h, self.minibatch_std_group)
        h = leaky_relu(self.conv_out(h)).sum(dim=[2, 3])
        return self.linear(h).squeeze(1)
