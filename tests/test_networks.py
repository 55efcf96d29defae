"""Network shapes at both image sizes, and what G's output depends on."""
import pytest
import torch

from ddgan.config import load_config
from ddgan.methods.ddgan import build_discriminator, build_generator
from ddgan.networks import Discriminator, MLPDiscriminator, MLPGenerator, UNet
from ddgan.networks.discriminator import minibatch_std

from .conftest import REPO

SHAPES = [(1, 28), (3, 32)]


def small_unet(channels, size, **kw):
    return UNet(size, channels, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                attn_resolutions=(size // 2,), **kw)


@pytest.mark.parametrize("channels,size", SHAPES)
def test_generator_and_discriminator_shapes(channels, size):
    G = small_unet(channels, size, nz=8, z_emb_dim=32, n_mlp=2, tanh_output=True)
    D = Discriminator(size, channels, base_channels=16, channel_mult=(1, 2, 4))
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


def test_discriminator_is_per_sample_without_minibatch_std():
    """Without minibatch statistics, changing one sample leaves the others' outputs unchanged."""
    D = Discriminator(28, 1, base_channels=16, channel_mult=(1, 2))
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
    cfg = load_config(REPO / "configs" / "cifar10" / "ddgan_js.yaml")
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
