"""Network shapes at both image sizes, and what G's output depends on."""
import pytest
import torch
import torch.nn.functional as F

from ddgan.config import load_config
from ddgan.methods.common import build_unet
from ddgan.methods.ddgan import build_discriminator, build_generator
from ddgan.networks import Discriminator, MLPDiscriminator, MLPGenerator, UNet
from ddgan.networks.discriminator import minibatch_std
from ddgan.networks.fir import fir_downsample, fir_kernel_2d, fir_upsample
from ddgan.networks.layers import Downsample, ResBlock, Upsample

from .conftest import REPO

SHAPES = [(1, 28), (3, 32)]


def small_unet(channels, size, **kw):
    return UNet(size, channels, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                attn_resolutions=(size // 2,), **kw)


@pytest.mark.parametrize("channels,size", SHAPES)
def test_generator_and_discriminator_shapes(channels, size):
    G = small_unet(channels, size, nz=8, z_emb_dim=32, n_mlp=2, tanh_output=True)
    # 28 does not halve three times: the first block keeps the resolution (28, 14, 7)
    D = Discriminator(size, channels, base_channels=16, channel_mult=(1, 2, 4), downsample_first=False)
    x = torch.randn(3, channels, size, size)
    t = torch.tensor([1, 2, 4])
    out = G(x, torch.randn(3, 8), t)
    assert out.shape == x.shape
    assert out.abs().max() <= 1  # tanh
    assert D(x, out, t).shape == (3,)


def perturb(model):
    """Move every weight off its zero initialisation so each input path carries signal."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("channels,size", SHAPES)
def test_generator_output_depends_on_z_and_t(channels, size):
    G = perturb(small_unet(channels, size, nz=8, z_emb_dim=32, n_mlp=2, tanh_output=True))
    x = torch.randn(2, channels, size, size)
    z = torch.randn(2, 8)
    t = torch.tensor([2, 2])
    base = G(x, z, t)
    assert (G(x, torch.randn(2, 8), t) - base).abs().mean() > 1e-3
    assert (G(x, z, torch.tensor([3, 3])) - base).abs().mean() > 1e-3


def test_baseline_configuration_has_no_latent_and_no_tanh():
    net = small_unet(3, 32, nz=0)
    assert net.mapping is None
    x = torch.randn(2, 3, 32, 32)
    assert net(x, None, torch.tensor([0.3, 1.7])).shape == x.shape  # real-valued noise labels


@pytest.mark.parametrize("layout", [{}, dict(stem_kernel=1, downsample_first=False, downsample="fir",
                                             head_activation=False, near_zero_init=True)])
def test_discriminator_is_per_sample_without_minibatch_std(layout):
    """Without minibatch statistics, changing one sample leaves the others' outputs unchanged."""
    D = perturb(Discriminator(28, 1, base_channels=16, channel_mult=(1, 2), **layout))
    x, x_t, t = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    a = D(x, x_t, t)
    x2 = x.clone()
    x2[0] += 1
    b = D(x2, x_t, t)
    assert torch.allclose(a[1:], b[1:]) and not torch.allclose(a[:1], b[:1])


def test_minibatch_std_couples_samples():
    x = torch.randn(8, 4, 3, 3)
    y = minibatch_std(x, 4)
    assert y.shape == (8, 5, 3, 3)
    x2 = x.clone()
    x2[0] *= 3
    assert not torch.allclose(minibatch_std(x2, 4)[4, -1], y[4, -1])  # same group
    assert torch.allclose(minibatch_std(x2, 4)[1, -1], y[1, -1])      # other group


def test_image_size_not_divisible_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot be halved"):
        UNet(28, 1, channel_mult=(1, 2, 2, 2))


def test_paper_cifar10_architecture_is_expressible():
    cfg = load_config(REPO / "configs" / "cifar10" / "ddgan.yaml")
    with torch.device("meta"):
        G = build_generator(cfg, (3, 32, 32))
        D = build_discriminator(cfg, (3, 32, 32))
    g_params = sum(p.numel() for p in G.parameters())
    d_params = sum(p.numel() for p in D.parameters())
    assert 40e6 < g_params < 50e6  # paper's NCSN++: 48.4M
    assert 11e6 < d_params < 14e6  # paper's D: 12.7M
    assert G.nz == 100 and G.mapping[1].out_features == 256
    assert sum(isinstance(m, torch.nn.Linear) for m in G.mapping) == 5  # 1 + n_mlp (4)


def test_toy_mlps():
    G, D = MLPGenerator(nz=3), MLPDiscriminator()
    x, t = torch.randn(5, 2), torch.randint(1, 5, (5,))
    assert G(x, torch.randn(5, 3), t).shape == (5, 2)
    assert D(x, x, t).shape == (5,)


# NCSN++, the generator of DDGAN's authors, as options of the shared U-Net.

NCSNPP = dict(resample="resblock", progressive_input="residual",
              decoder_attention="once_per_level", output_norm="plain", zero_init_output=True)
# NVlabs/denoising-diffusion-gan's NCSNpp (score_sde/models/ncsnpp_generator_adagn.py) built on
# the CPU with their README's CIFAR-10 arguments and train_ddgan.py's defaults for the rest
# (biggan blocks, FIR [1, 3, 3, 1], progressive_input residual, attention at 16), its CUDA
# upfirdn2d swapped for their plain-PyTorch upfirdn2d_native; sum of parameter numels.
AUTHORS_CIFAR10_GENERATOR_PARAMS = 48_432_515


def test_paper_cifar10_generator_has_the_authors_parameter_count():
    cfg = load_config(REPO / "configs" / "cifar10" / "ddgan.yaml")
    with torch.device("meta"):
        G = build_unet(cfg, (3, 32, 32))
    count = sum(p.numel() for p in G.parameters())
    assert abs(count - AUTHORS_CIFAR10_GENERATOR_PARAMS) <= 1e-3 * AUTHORS_CIFAR10_GENERATOR_PARAMS


@pytest.mark.parametrize("options", [{"resample": "resblock"}, {"progressive_input": "residual"},
                                     {"decoder_attention": "once_per_level"},
                                     {"output_norm": "plain"}, {"zero_init_output": True}, NCSNPP],
                         ids=["resample", "progressive_input", "decoder_attention",
                              "output_norm", "zero_init_output", "ncsnpp"])
@pytest.mark.parametrize("nz", [0, 8])
@pytest.mark.parametrize("channels,size", SHAPES)
def test_ncsnpp_options_run_with_and_without_z(options, nz, channels, size):
    G = perturb(small_unet(channels, size, nz=nz, z_emb_dim=16, n_mlp=1, **options))
    x, t = torch.randn(2, channels, size, size), torch.tensor([1, 3])
    z = torch.randn(2, nz) if nz else None
    out = G(x, z, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert (G(x, z, torch.tensor([2, 2])) - out).abs().mean() > 1e-3
    if nz:
        assert (G(x, torch.randn(2, nz), t) - out).abs().mean() > 1e-3


def test_resample_resblocks_replace_the_conv_resamplers():
    conv, res = small_unet(3, 32), small_unet(3, 32, resample="resblock")
    assert sum(isinstance(m, (Downsample, Upsample)) for m in conv.modules()) == 4
    assert not any(isinstance(m, (Downsample, Upsample)) for m in res.modules())
    assert [type(m) for m in res.down] == [ResBlock] * len(conv.down)


def test_resampling_resblock_resamples_the_main_path_and_the_skip_by_fir():
    """At initialisation (second conv zero) the block is its skip: 1x1 conv of the FIR-resampled input."""
    x, emb = torch.randn(2, 8, 8, 8), torch.randn(2, 32)
    kernel = fir_kernel_2d([1, 3, 3, 1])
    for direction, fir in [("down", fir_downsample), ("up", fir_upsample)]:
        block = ResBlock(8, 8, 32, resample=direction)
        torch.testing.assert_close(block(x, emb), block.skip(fir(x, kernel)) / 2 ** 0.5)
        with torch.no_grad():
            block.conv2.weight.normal_()
        assert block(x, emb).shape[2] == (4 if direction == "down" else 16)


def test_fir_downsample_conv_is_conv_then_fir_filter_and_stride():
    """The blur commutes with the conv: padding 2 for the conv, then the filter with stride 2
    and no padding, is the same map (so the padding puts the filter where StyleGAN2 does)."""
    down = Downsample(3, 5, fir_kernel=[1, 3, 3, 1])
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    down.double()
    y = F.conv2d(x, down.conv.weight, down.conv.bias, padding=2)
    kernel = fir_kernel_2d([1, 3, 3, 1]).double()[None, None].expand(5, 1, 4, 4)
    torch.testing.assert_close(down(x), F.conv2d(y, kernel, stride=2, groups=5))


def test_progressive_input_adds_an_image_pyramid_after_each_downsampling():
    G = small_unet(1, 28, progressive_input="residual")
    assert sorted(G.input_pyramid) == ["1", "3"]  # after down.1 and down.3 (one block per level)
    assert G.input_pyramid["1"].conv.in_channels == 1  # the image itself
    assert G.input_pyramid["1"].conv.out_channels == 16  # level 0's width
    assert G.input_pyramid["3"].conv.in_channels == 16  # the pyramid so far
    assert G.input_pyramid["3"].conv.out_channels == 32  # level 1's width
    assert len(small_unet(1, 28).input_pyramid) == 0


def test_decoder_attention_once_per_level():
    def decoder_attention(G):
        return sum(m.attention is not None for m in G.up if isinstance(m, ResBlock))
    assert decoder_attention(small_unet(3, 32)) == 2  # num_res_blocks + 1 blocks at 16x16
    assert decoder_attention(small_unet(3, 32, decoder_attention="once_per_level")) == 1


@pytest.mark.parametrize("nz", [0, 8])
def test_output_conv_starts_at_zero_where_asked(nz):
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    z = torch.randn(2, nz) if nz else None
    G = small_unet(3, 32, nz=nz, z_emb_dim=16, n_mlp=1, zero_init_output=True, tanh_output=True)
    assert G(x, z, t).abs().max() < 1e-6
    assert small_unet(3, 32, nz=nz, z_emb_dim=16, n_mlp=1)(x, z, t).abs().max() > 1e-3


def test_plain_output_norm_has_no_style():
    assert small_unet(3, 32, nz=8, z_emb_dim=16).norm_out.style is not None
    assert small_unet(3, 32, nz=8, z_emb_dim=16, output_norm="plain").norm_out.style is None


@pytest.mark.parametrize("key,value", [("resample", "fir"), ("progressive_input", "input_skip"),
                                       ("decoder_attention", "end"), ("output_norm", "adagn")])
def test_bad_option_value_is_refused_naming_key_and_choices(key, value):
    with pytest.raises(ValueError, match=rf"{key} must be one of .*'"):
        small_unet(3, 32, **{key: value})
    cfg = load_config(REPO / "configs" / "cifar10" / "ddgan.yaml", [f"backbone.{key}={value}"])
    with pytest.raises(ValueError, match=key):
        build_unet(cfg, (3, 32, 32))
