"""One U-Net backbone for DDGAN's generator and for the DDPM and EDM baselines.

DDGAN: G(x_t, z, t) -> x_0 prediction. The latent z goes through a mapping MLP
and modulates every residual block by adaptive group norm; the output is
squashed to [-1, 1] by tanh. The baselines use the same network with nz = 0
(plain GroupNorm, no z) and tanh_output = False.

The defaults are a DDPM++-style U-Net. Options make it the NCSN++ generator of
DDGAN's authors: resample='resblock' (BigGAN resampling blocks with FIR filters),
progressive_input='residual' (an image pyramid added into each encoder level),
decoder_attention='once_per_level', output_norm='plain' and zero_init_output.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AdaptiveGroupNorm, Downsample, ResBlock, TimeEmbedding, Upsample, check_choice

CHOICES = {
    "resample": ("conv", "resblock"),
    "progressive_input": ("none", "residual"),
    "decoder_attention": ("every_block", "once_per_level"),
    "output_norm": ("adaptive", "plain"),
}


class PixelNorm(nn.Module):
    def forward(self, z):
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def mapping_network(nz, z_emb_dim, n_mlp):
    """z -> style vector: PixelNorm, then 1 + n_mlp linear layers with SiLU (as DDGAN)."""
    layers = [PixelNorm(), nn.Linear(nz, z_emb_dim), nn.SiLU()]
    for _ in range(n_mlp):
        layers += [nn.Linear(z_emb_dim, z_emb_dim), nn.SiLU()]
    return nn.Sequential(*layers)


def embedding_call(layer, h, emb, style):
    """Residual blocks (resampling ones included) take the embeddings; conv resamplers do not."""
    return layer(h, emb, style) if isinstance(layer, ResBlock) else layer(h)


class UNet(nn.Module):
    def __init__(self, image_size, in_channels, out_channels=None, base_channels=64,
                 channel_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                 dropout=0.0, nz=0, z_emb_dim=256, n_mlp=4, tanh_output=False,
                 resample="conv", fir_kernel=(1, 3, 3, 1), progressive_input="none",
                 decoder_attention="every_block", output_norm="adaptive", zero_init_output=False):
        super().__init__()
        for key, value in [("resample", resample), ("progressive_input", progressive_input),
                           ("decoder_attention", decoder_attention), ("output_norm", output_norm)]:
            check_choice(f"backbone.{key}", value, CHOICES[key])
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

        def block(cin, cout, resolution, attention=True):
            return ResBlock(cin, cout, emb_dim, style_dim, dropout,
                            attention=attention and resolution in attn_resolutions)

        def resampler(direction, ch):
            if resample == "resblock":
                return ResBlock(ch, ch, emb_dim, style_dim, dropout, resample=direction,
                                fir_kernel=fir_kernel)
            return Downsample(ch) if direction == "down" else Upsample(ch)

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        # NCSN++'s residual input path, keyed by the index in self.down of the downsampling
        # it follows: the image pyramid, FIR-downsampled by a strided conv to that width.
        self.input_pyramid = nn.ModuleDict()
        skip_channels = [base_channels]
        ch, resolution, pyramid_ch = base_channels, image_size, in_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.down.append(block(ch, base_channels * mult, resolution))
                ch = base_channels * mult
                skip_channels.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(resampler("down", ch))
                if progressive_input == "residual":
                    self.input_pyramid[str(len(self.down) - 1)] = Downsample(pyramid_ch, ch, fir_kernel)
                    pyramid_ch = ch
                skip_channels.append(ch)
                resolution //= 2

        self.middle = nn.ModuleList([
            ResBlock(ch, ch, emb_dim, style_dim, dropout, attention=True),
            ResBlock(ch, ch, emb_dim, style_dim, dropout),
        ])

        self.up = nn.ModuleList()
        takes_skip = []  # per layer of self.up: a block of the level (True) or a resampler
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                # NCSN++ attends once per decoder level, after its last block
                attention = decoder_attention == "every_block" or i == num_res_blocks
                self.up.append(block(ch + skip_channels.pop(), base_channels * mult, resolution,
                                     attention))
                takes_skip.append(True)
                ch = base_channels * mult
            if level > 0:
                self.up.append(resampler("up", ch))
                takes_skip.append(False)
                resolution *= 2
        self.up_takes_skip = tuple(takes_skip)

        self.norm_out = AdaptiveGroupNorm(ch, style_dim if output_norm == "adaptive" else 0)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)
        if zero_init_output:  # the network starts by predicting 0 (NCSN++'s init_scale = 0)
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, z, t):
        x = x.to(self.conv_in.weight.dtype)  # bf16 where the weights are (ddgan/precision.py)
        emb = self.time_embedding(t)
        style = self.mapping(z.to(x.dtype)) if self.mapping is not None else None
        h = self.conv_in(x)
        skips, pyramid = [h], x
        for i, layer in enumerate(self.down):
            h = embedding_call(layer, h, emb, style)
            if str(i) in self.input_pyramid:
                pyramid = self.input_pyramid[str(i)](pyramid)
                h = pyramid = (pyramid + h) / math.sqrt(2)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, emb, style)
        for layer, takes_skip in zip(self.up, self.up_takes_skip):
            h = embedding_call(layer, torch.cat([h, skips.pop()], dim=1) if takes_skip else h,
                               emb, style)
        h = self.conv_out(F.silu(self.norm_out(h, style)))
        return torch.tanh(h) if self.tanh_output else h
