"""Building blocks shared by the U-Net, the discriminator and the toy MLPs."""
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .fir import FIRResample, fir_filter, fir_kernel_2d


def check_choice(key, value, choices):
    """A ValueError naming `key` unless `value` is one of `choices` (True is not 1 here)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        raise ValueError(f"{key} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def timestep_embedding(t, dim, max_period=10000.0):
    """Sinusoidal embedding [B, dim] of a time or noise label t [B] (integer or real)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding followed by a two-layer MLP."""

    def __init__(self, base_dim, out_dim, act):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, out_dim), act, nn.Linear(out_dim, out_dim))

    def forward(self, t):
        # the angles in float32 (t reaches 1,000 for DDPM), the MLP in its weights' dtype
        return self.mlp(timestep_embedding(t, self.base_dim).to(self.mlp[0].weight.dtype))


def num_groups(channels):
    return min(32, max(1, channels // 4))


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm whose scale and shift come from a style vector (DDGAN's AdaGN).

    With style_dim = 0 it is an ordinary GroupNorm with learnt affine parameters,
    which is what the DDPM and EDM baselines use.
    """

    def __init__(self, channels, style_dim):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, affine=style_dim == 0)
        self.style = nn.Linear(style_dim, 2 * channels) if style_dim else None
        if self.style is not None:  # centred on scale 1, shift 0 (as DDGAN)
            self.style.bias.data = torch.cat([torch.ones(channels), torch.zeros(channels)])

    def forward(self, x, style=None):
        x = self.norm(x)
        if self.style is None:
            return x
        scale, shift = rearrange(self.style(style), "b (two c) -> two b c 1 1", two=2)
        return scale * x + shift


class ResBlock(nn.Module):
    """Pre-activation residual block; the time embedding is added after the first conv.

    resample 'up' or 'down' makes it a BigGAN/NCSN++ resampling block: after the first
    norm, both the main path and the skip go through 2x FIR resampling by `fir_kernel`,
    and the skip then always has its 1x1 conv.
    """

    def __init__(self, in_ch, out_ch, emb_dim, style_dim=0, dropout=0.0, attention=False,
                 resample=None, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.norm1 = AdaptiveGroupNorm(in_ch, style_dim)
        self.resample = FIRResample(resample, fir_kernel) if resample else nn.Identity()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = AdaptiveGroupNorm(out_ch, style_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as its skip path
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch or resample else nn.Identity()
        self.attention = SelfAttention(out_ch) if attention else None

    def forward(self, x, emb, style=None):
        h = F.silu(self.norm1(x, style))
        h, x = self.resample(h), self.resample(x)
        h = self.conv1(h)
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h, style))))
        h = (h + self.skip(x)) / math.sqrt(2)
        return h if self.attention is None else self.attention(h)


class SelfAttention(nn.Module):
    """Single-head self-attention over all pixels, with a residual connection."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        height = x.shape[2]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three c) h w -> three b 1 (h w) c", three=3)
        h = F.scaled_dot_product_attention(q, k, v)
        h = rearrange(h, "b 1 (h w) c -> b c h w", h=height)
        return (x + self.proj(h)) / math.sqrt(2)


class Downsample(nn.Module):
    """Strided 3x3 conv. With a FIR kernel the input is zero-padded and filtered by it first
    and the conv is unpadded: StyleGAN2's conv-downsample, as NCSN++'s input pyramid uses."""

    def __init__(self, in_ch, out_ch=None, fir_kernel=None):
        super().__init__()
        out_ch = out_ch or in_ch
        self.blur = nn.Identity() if fir_kernel is None else FIRFilter(fir_kernel)
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1 if fir_kernel is None else 0)

    def forward(self, x):
        return self.conv(self.blur(x))


class FIRFilter(nn.Module):
    """Stride-1 FIR filtering (fir.fir_filter) with a fixed kernel."""

    def __init__(self, kernel):
        super().__init__()
        self.register_buffer("kernel", fir_kernel_2d(kernel), persistent=False)

    def forward(self, x):
        return fir_filter(x, self.kernel)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
