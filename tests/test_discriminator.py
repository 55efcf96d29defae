"""The discriminator's layout options: the DDGAN authors' CIFAR-10 layout, the size rule."""
import pytest
import torch
import torch.nn.functional as F

from ddgan.config import load_config
from ddgan.methods.ddgan import build_discriminator
from ddgan.networks import Discriminator
from ddgan.networks.discriminator import minibatch_std

from .conftest import REPO, reset_accelerate

# Parameters of the authors' Discriminator_small(nc=6, ngf=64, t_emb_dim=256) as their
# train_ddgan.py builds it for CIFAR-10, counted by building their module on a CPU (their
# CUDA ops stubbed with plain PyTorch) in a script outside this repository. Copying its
# weights into ours gave the same outputs (max abs difference 1.7e-13 in float64).
AUTHORS_CIFAR10_D_PARAMETERS = 12_741_633
AUTHORS = dict(stem_kernel=1, downsample_first=False, downsample="fir", head_activation=False,
               near_zero_init=True)


def paper_discriminator():
    return build_discriminator(load_config(REPO / "configs" / "cifar10" / "ddgan.yaml"), (3, 32, 32))


def count(module):
    return sum(p.numel() for p in module.parameters())


def perturb(model):
    """Move every weight off its (near-)zero init so each path carries signal."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_paper_config_has_the_authors_parameter_count():
    with torch.device("meta"):
        assert count(paper_discriminator()) == AUTHORS_CIFAR10_D_PARAMETERS


def test_class_defaults_keep_the_earlier_layout():
    """The earlier CIFAR-10 D (64 ch, mult 2-4-8-8, 3x3 stem, pooling after conv2): 12.38M."""
    with torch.device("meta"):
        D = Discriminator(32, 3, channel_mult=(2, 4, 8, 8), minibatch_std_group=4)
    assert count(D) == 12_383_553


def conv_input_sizes(D, x_prev, x_t, t):
    """The side of the input of each block's conv1 and conv2 and of conv_out, in one forward."""
    sizes = {}
    convs = {f"{i}.{name}": getattr(block, name) for i, block in enumerate(D.blocks)
             for name in ("conv1", "conv2")}
    convs["out"] = D.conv_out
    hooks = [conv.register_forward_pre_hook(lambda m, args, k=k: sizes.__setitem__(k, args[0].shape[-1]))
             for k, conv in convs.items()]
    D(x_prev, x_t, t)
    for hook in hooks:
        hook.remove()
    return sizes


def test_paper_layout_works_at_32_16_8_4():
    D = paper_discriminator()
    x = torch.randn(4, 3, 32, 32)
    sizes = conv_input_sizes(D, x, x, torch.tensor([1, 2, 3, 4]))
    assert [sizes[f"{i}.conv1"] for i in range(4)] == [32, 32, 16, 8]
    assert [sizes[f"{i}.conv2"] for i in range(4)] == [32, 16, 8, 4]  # blurred before conv2
    assert sizes["out"] == 4
    assert D.conv_in.kernel_size == (1, 1) and D.conv_in.out_channels == 128
    assert D.time_embedding.base_dim == 256 and D.conv_out.in_channels == 512 + 1


def test_earlier_layout_works_one_octave_coarser():
    D = Discriminator(32, 3, base_channels=8, channel_mult=(2, 4, 8, 8))
    x = torch.randn(2, 3, 32, 32)
    sizes = conv_input_sizes(D, x, x, torch.tensor([1, 2]))
    assert [sizes[f"{i}.conv2"] for i in range(4)] == [32, 16, 8, 4]  # pooled after conv2
    assert sizes["out"] == 2


def test_fashion_mnist_default_halves_cleanly():
    D = build_discriminator(load_config(REPO / "configs" / "fmnist" / "ddgan.yaml"), (1, 28, 28))
    x = torch.randn(2, 1, 28, 28)
    sizes = conv_input_sizes(D, x, x, torch.tensor([1, 2]))
    assert [sizes[f"{i}.conv2"] for i in range(3)] == [28, 14, 7] and sizes["out"] == 7


def test_near_zero_init_of_conv2_and_conv_out():
    D = paper_discriminator()
    for conv in [block.conv2 for block in D.blocks] + [D.conv_out]:
        assert 0 < conv.weight.abs().max() < 1e-5 and not conv.bias.any()
    assert all(block.conv1.weight.abs().max() > 1e-3 for block in D.blocks)
    default = Discriminator(32, 3, base_channels=8)
    assert default.blocks[0].conv2.weight.abs().max() > 1e-3 and default.conv_out.bias.any()


def test_sizes_that_do_not_halve_cleanly_are_refused():
    with pytest.raises(ValueError, match=r"image_size 28 cannot be halved 3 times.*channel_mult"):
        Discriminator(28, 1, channel_mult=(1, 2, 4))
    Discriminator(28, 1, base_channels=8, channel_mult=(1, 2, 4), downsample_first=False)
    cfg = load_config(REPO / "configs" / "fmnist" / "ddgan.yaml", ["discriminator.downsample_first=true"])
    with pytest.raises(ValueError, match="image_size 28"):
        build_discriminator(cfg, (1, 28, 28))


@pytest.mark.parametrize("key,value", [("stem_kernel", 5), ("downsample", "blur"),
                                       ("downsample_first", 1), ("head_activation", "no"),
                                       ("near_zero_init", None)])
def test_bad_option_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"discriminator.{key} must be one of"):
        Discriminator(32, 3, base_channels=8, **{key: value})


@pytest.mark.parametrize("head_activation", [False, True])
def test_minibatch_std_on_pre_or_post_activation_features(head_activation):
    D = perturb(Discriminator(32, 3, base_channels=8, channel_mult=(1, 2, 4, 4), minibatch_std_group=4,
                              **dict(AUTHORS, head_activation=head_activation)))
    seen = {}
    D.blocks[-1].register_forward_hook(lambda m, args, out: seen.__setitem__("features", out))
    D.conv_out.register_forward_pre_hook(lambda m, args: seen.__setitem__("head_input", args[0]))
    x = torch.randn(8, 3, 32, 32)
    D(x, torch.randn_like(x), torch.arange(8) % 4 + 1)
    features = seen["features"]
    assert (features < 0).any()
    expected = features if not head_activation else F.leaky_relu(features, 0.2)
    assert torch.allclose(seen["head_input"], minibatch_std(expected, 4))


def test_the_logged_diagnostics_tell_a_trained_discriminator_from_chance(fake_fmnist, tmp_path):
    """D's accuracy per t (real x_{t-1} scored above G's): high at t = 1 after D alone trains
    against a fixed G; measuring leaves training's draws alone, and train() logs the numbers to
    TensorBoard."""
    from accelerate import Accelerator
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ddgan.data import ImageBatches, load_images
    from ddgan.methods import method_class
    from ddgan.methods.ddgan import discriminator_step
    from ddgan.train import train

    small = ["backbone.base_channels=8", "discriminator.base_channels=8", f"data.root={fake_fmnist}",
             "train.batch_size=16", "optim.lr_discriminator=2e-3", f"train.out_dir={tmp_path / 'run'}"]
    cfg = load_config(REPO / "configs/tiny.yaml", small)
    torch.manual_seed(0)
    method = method_class(cfg)(cfg, (1, 28, 28), Accelerator(cpu=True))
    batches = ImageBatches(load_images(cfg.data.name, cfg.data.root), 16, seed=0)
    x0 = batches.fixed(64)
    state = torch.get_rng_state()
    fresh = method.diagnostics(x0)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(fresh) == {f"d_{what}/t{t}" for what in ("real", "fake", "accuracy") for t in (1, 2)}
    assert all(0 <= fresh[f"d_accuracy/t{t}"] <= 1 for t in (1, 2))
    for d_step in range(60):  # D alone: G stays as it was
        discriminator_step(method.generator, method.discriminator, method.opt_d, method.process,
                           method.divergence, next(batches), method.nz, d_step)
    trained = method.diagnostics(x0)
    assert trained["d_accuracy/t1"] > 0.9 and trained["d_real/t1"] > trained["d_fake/t1"]

    reset_accelerate()  # the training picks its own mixed precision
    run = train(load_config(REPO / "configs/tiny.yaml", small + ["train.max_steps=4", "train.log_every=2"]))
    events = EventAccumulator(str(run / "tb")).Reload()
    assert [e.step for e in events.Scalars("diagnostics/d_accuracy/t2")] == [2, 4]
