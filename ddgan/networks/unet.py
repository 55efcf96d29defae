"""One U-Net backbone for DDGAN's generator and for the DDPM and EDM baselines.

DDGAN: G(x_t, z, t) -> x_0 prediction. The latent z goes through a mapping MLP
and modulates every residual block by adaptive group norm; the output is
squashed to [-1, 1] by tanh. The baselines use the same network with nz = 0
(plain GroupNorm, no z) and tanh_output = False.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .layers import AdaptiveGroupNorm, Downsample, ResBlock, TimeEmbedding, Upsample


class PixelNorm(nn.Module):
    def forward(self, z):
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def mapping_network(nz, z_emb_dim, n_mlp):
    """z -> style vector: PixelNorm, then 1 + n_mlp linear layers with SiLU (as DDGAN)."""
    layers = [PixelNorm(), nn.Linear(nz, z_emb_dim), nn.SiLU()]
    for _ in range(n_mlp):
        layers += [nn.Linear(z_emb_dim, z_emb_dim), nn.SiLU()]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(self, image_size, in_channels, out_channels=None, base_channels=64,
                 channel_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                 dropout=0.0, nz=0, z_emb_dim=256, n_mlp=4, tanh_output=False):
        super().__init__()
        if image_size % 2 ** (len(channel_mult) - 1):
            raise ValueError(
                f"image_size {image_size} cannot be halved {len(channel_mult) - 1} times "
                f"(channel_mult={list(channel_mult)}); use fewer levels")
        out_channels = out_channels or in_channels
        self.nz = nz
        self.tanh_output = tanh_output
        emb_dim = 4 * base_channels
        self.time_embedding = TimeEmbedding(base_channels, emb_dim, nn.SiLU())
        style_dim = z_emb_dim if nz else 0
        self.mapping = mapping_network(nz, z_emb_dim, n_mlp) if nz else None

        def block(cin, cout, resolution):
            return ResBlock(cin, cout, emb_dim, style_dim, dropout,
                            attention=resolution in attn_resolutions)

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        ch, resolution = base_channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.down.append(block(ch, base_channels * mult, resolution))
                ch = base_channels * mult
                skip_channels.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(Downsample(ch))
                skip_channels.append(ch)
                resolution //= 2

        self.middle = nn.ModuleList([
            ResBlock(ch, ch, emb_dim, style_dim, dropout, attention=True),
            ResBlock(ch, ch, emb_dim, style_dim, dropout),
        ])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(block(ch + skip_channels.pop(), base_channels * mult, resolution))
                ch = base_channels * mult
            if level > 0:
                self.up.append(Upsample(ch))
                resolution *= 2

        self.norm_out = AdaptiveGroupNorm(ch, style_dim)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, x, z, t):
        emb = self.time_embedding(t)
        style = self.mapping(z) if self.mapping is not None else None
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb, style) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, emb, style)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb, style)
            else:
                h = layer(h)
        h = self.conv_out(F.silu(self.norm_out(h, style)))
        return torch.tanh(h) if self.tanh_output else h
