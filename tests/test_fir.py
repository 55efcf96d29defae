"""FIR resampling against its definition written as loops (upfirdn2d: upsample, pad, filter, downsample)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddgan.networks.fir import FIRResample, fir_downsample, fir_kernel_2d, fir_upsample


def upfirdn_loops(x, kernel, up, down, pad_lo, pad_hi):
    """One channel [H, W]: insert up-1 zeros after each pixel, pad, correlate with kernel, keep every down-th."""
    h, w = x.shape
    u = np.zeros((h * up, w * up))
    u[::up, ::up] = x
    u = np.pad(u, ((pad_lo, pad_hi), (pad_lo, pad_hi)))
    k = kernel.shape[0]
    out = np.array([[np.sum(u[i:i + k, j:j + k] * kernel) for j in range(u.shape[1] - k + 1)]
                    for i in range(u.shape[0] - k + 1)])
    return out[::down, ::down]


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 1]])
def test_resampling_matches_the_definition(taps):
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    kernel = fir_kernel_2d(taps).double()
    p = len(taps) - 2  # upfirdn2d's padding for a factor of 2
    down = fir_downsample(x, kernel)
    up = fir_upsample(x, kernel)
    assert down.shape == (2, 3, 4, 4) and up.shape == (2, 3, 16, 16)
    for b in range(2):
        for c in range(3):
            xc = x[b, c].numpy()
            np.testing.assert_allclose(down[b, c].numpy(), upfirdn_loops(xc, kernel.numpy(), 1, 2, (p + 1) // 2, p // 2), atol=1e-12)
            np.testing.assert_allclose(up[b, c].numpy(), upfirdn_loops(xc, 4 * kernel.numpy(), 2, 1, (p + 1) // 2 + 1, p // 2), atol=1e-12)


def test_box_filter_is_average_pooling_and_nearest_upsampling():
    x = torch.randn(2, 4, 6, 6)
    box = fir_kernel_2d([1, 1])
    torch.testing.assert_close(fir_downsample(x, box), F.avg_pool2d(x, 2))
    torch.testing.assert_close(fir_upsample(x, box), F.interpolate(x, scale_factor=2.0, mode="nearest"))


def test_constant_interior_is_kept_and_the_filter_is_not_a_parameter():
    x = torch.ones(1, 2, 8, 8)
    assert torch.allclose(FIRResample("down")(x)[..., 1:-1, 1:-1], torch.ones(1, 2, 2, 2))
    assert torch.allclose(FIRResample("up")(x)[..., 2:-2, 2:-2], torch.ones(1, 2, 12, 12))
    assert list(FIRResample("up").parameters()) == [] and FIRResample("down").state_dict() == {}
    for bad in ([1, 2, 1], [1, 3, 2, 1]):
        with pytest.raises(ValueError, match="symmetric 1-D list of an even number of taps"):
            fir_kernel_2d(bad)
