"""FIR resampling by a factor of 2 in plain PyTorch (a depthwise convolution, no custom ops).

The filter is the outer product of a 1-D kernel with an even number of taps (NCSN++ and
DDGAN's discriminator use [1, 3, 3, 1]), normalised so that the interior of a constant
image keeps its value; pixels outside the image are zero. Padding and alignment are those
of StyleGAN2's upfirdn2d, as NCSN++ calls it (tests/test_fir.py checks both directions).
"""
import torch
import torch.nn.functional as F
from torch import nn


def fir_kernel_2d(kernel):
    """The normalised 2-D filter [k, k] of a 1-D kernel (a list of numbers)."""
    taps = [float(tap) for tap in kernel]
    if len(taps) % 2 or taps != taps[::-1]:
        # Symmetric, as convolution (upfirdn2d) and correlation (conv2d) then agree.
        raise ValueError(f"a FIR kernel is a symmetric 1-D list of an even number of taps, "
                         f"got {kernel!r}")
    k = torch.tensor(taps)
    k = torch.outer(k, k)
    return k / k.sum()


def _depthwise(kernel, x):
    """The 2-D filter repeated once per channel of x: [C, 1, k, k] in x's dtype."""
    return kernel.to(x.dtype)[None, None].expand(x.shape[1], 1, *kernel.shape)


def fir_filter(x, kernel):
    """x [B, C, H, W] -> [B, C, H + 1, W + 1] for 4 taps: filtered by `kernel`, zero-padded by
    half the taps on each side, so that an unpadded strided 3x3 conv after it halves the
    size (StyleGAN2's conv-downsample, which NCSN++'s input pyramid uses)."""
    return F.conv2d(x, _depthwise(kernel, x), padding=kernel.shape[0] // 2, groups=x.shape[1])


def fir_downsample(x, kernel):
    """x [B, C, H, W] -> [B, C, H/2, W/2]: filter by `kernel` (2-D, normalised), keep every 2nd."""
    pad = (kernel.shape[0] - 2) // 2  # 1 for 4 taps
    x = F.pad(x, (pad, pad, pad, pad))
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":
        # The CPU's strided depthwise kernels have no fast bf16 path (their backward is slower
        # than float32's): filter at stride 1 and keep every 2nd pixel, the same numbers.
        return F.conv2d(x, _depthwise(kernel, x), groups=x.shape[1])[:, :, ::2, ::2]
    return F.conv2d(x, _depthwise(kernel, x), stride=2, groups=x.shape[1])


def fir_upsample(x, kernel):
    """x [B, C, H, W] -> [B, C, 2H, 2W]: insert zeros, filter by 4 * `kernel` (gain 1 per pixel)."""
    # conv_transpose2d inserts the zeros; this padding gives upfirdn2d's alignment.
    return F.conv_transpose2d(x, 4 * _depthwise(kernel, x), stride=2,
                              padding=(kernel.shape[0] - 2) // 2, groups=x.shape[1])


class FIRResample(nn.Module):
    """2x FIR up- or downsampling with a fixed filter (a buffer, not a parameter)."""

    def __init__(self, direction, kernel=(1, 3, 3, 1)):
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self.direction = direction
        self.register_buffer("kernel", fir_kernel_2d(kernel), persistent=False)

    def forward(self, x):
        return (fir_upsample if self.direction == "up" else fir_downsample)(x, self.kernel)
