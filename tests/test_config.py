"""Configuration: files, overrides and the errors that protect a run."""
import re

import pytest

from ddgan.config import load_config
from ddgan.schema import DEFAULTS, ConfigError
from ddgan.settings import config_differences
from ddgan.settings import to_dict

from .conftest import REPO

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.data.name in ("fmnist", "cifar10", "imagefolder")
    assert 1 <= cfg.ddgan.denoising_steps <= 10


def test_one_config_per_method_in_each_folder():
    """A folder holds a config per method, named after it, and only the divergences with a
    recipe of their own (wgan-gp's critic steps and optimiser) have a file beside it."""
    from ddgan.methods import METHODS

    for folder in ("fmnist", "fmnist/cpu", "cifar10/cpu"):
        names = {p.stem for p in (REPO / "configs" / folder).glob("*.yaml")}
        assert names == {*METHODS, "ddgan_wgan_gp"}, folder
    assert {p.stem for p in (REPO / "configs/cifar10").glob("*.yaml")} == {"ddgan", "ddpm", "edm"}
    assert (REPO / "configs/tiny.yaml").is_file()


def study_cells(folder):
    """Each cell of the sweep over folder at T = 4, as the sweep lays them out: {name: settings}."""
    from ddgan.methods import METHODS
    from divergences import DIVERGENCES

    return {name: load_config(config, list(overrides))
            for method in METHODS.values()
            for name, config, overrides in method.sweep_cells(folder, [4], list(DIVERGENCES))}


def test_a_divergence_is_an_override_of_the_method_config():
    """Every DDGAN cell of the CPU study is ddgan.yaml with its divergence's name changed, and
    wgan-gp's is its own recipe's keys changed, nothing else."""
    from divergences import DEFAULT_DIVERGENCE, DIVERGENCES

    study = REPO / "configs/fmnist/cpu"
    cells, base = study_cells(study), load_config(study / "ddgan.yaml")
    own = {"wgan-gp": ["divergence.name", "divergence.options", "divergence.r1_gamma",
                       "divergence.r1_every", "optim.betas", "train.max_steps", "train.out_dir"]}
    for divergence in DIVERGENCES:
        expected = own.get(divergence, [] if divergence == DEFAULT_DIVERGENCE else ["divergence.name"])
        assert sorted(config_differences(base, cells[f"ddgan_{divergence}_T4"])) == sorted(expected), divergence


def test_the_cpu_study_has_every_divergence_and_baseline_on_one_backbone():
    """configs/fmnist/cpu/: every cell of the sweep, DDGAN's and the baselines', on the same
    U-Net (the baselines without z and tanh) and the same training images."""
    from ddgan.methods import method_class

    settings = study_cells(REPO / "configs/fmnist/cpu")
    z_keys = {"nz", "z_emb_dim", "n_mlp", "tanh_output"}
    backbones = {name: {k: v for k, v in vars(s.backbone).items() if k not in z_keys}
                 for name, s in settings.items()}
    assert all(b == backbones["ddgan_js_T4"] for b in backbones.values()), backbones
    images = {name: s.train.max_steps * s.train.batch_size * method_class(s).batches_per_step(s)
              for name, s in settings.items()}
    assert set(images.values()) == {96_000}, images
    assert all(s.data.name == "fmnist" for s in settings.values())


def test_dotted_overrides_are_parsed_as_yaml():
    cfg = load_config(REPO / "configs/fmnist/ddgan.yaml",
                      ["train.max_steps=200", "ddgan.denoising_steps=2", "divergence.name=tv",
                       "optim.betas=[0.0, 0.99]", "data.root=/x", "optim.lr=1e-3",
                       "divergence.options={generator_loss: saddle}"])
    assert cfg.train.max_steps == 200
    assert cfg.ddgan.denoising_steps == 2
    assert cfg.divergence.name == "tv"
    assert cfg.optim.betas == (0.0, 0.99)  # lists are tuples in the settings
    assert cfg.optim.lr == 1e-3
    assert cfg.divergence.options == {"generator_loss": "saddle"}


@pytest.mark.parametrize("override,named", [
    ("train.max_step=5", "train.max_step"),
    ("trian.max_steps=5", "trian"),
    ("backbone.widht=3", "backbone.widht"),
])
def test_unknown_key_is_an_error_naming_it(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(None, [override])


def test_unknown_key_in_a_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match="train.batchsize"):
        load_config(path)


@pytest.mark.parametrize("override", ["train.batch_size=abc", "train.batch_size=2.5",
                                      "optim.cosine_decay=3", "train=5", "no_equals_sign"])
def test_wrong_types_are_errors(override):
    with pytest.raises(ConfigError):
        load_config(None, [override])


def test_defaults_are_not_mutated():
    load_config(None, ["train.max_steps=1"])
    assert DEFAULTS["train"]["max_steps"] != 1


def test_config_differences():
    a = load_config(None)
    b = load_config(None, ["train.seed=3", "divergence.options={n_critic: 2}"])
    assert config_differences(a, b) == ["divergence.options", "train.seed"]


def test_a_renamed_key_is_refused_with_its_new_name(tmp_path):
    """Overrides, config files and runs saved before the 0.2 renames name what was renamed."""
    for override, message in [
            ("diffusion.num_steps=3", "'diffusion' was renamed 'ddgan' in ddgan 0.2 "
                                      "(diffusion.num_steps is ddgan.denoising_steps)"),
            ("generator.nz=0", "'generator' was renamed 'backbone'"),
            ("optim.lr_g=1e-3", "'optim.lr_g' was renamed 'optim.lr'"),
            ("optim.lr_d=1e-3", "'optim.lr_d' was renamed 'optim.lr_discriminator'"),
            ("ddpm.num_steps=50", "'ddpm.num_steps' was renamed 'ddpm.train_timesteps'"),
            ("edm.num_steps=9", "'edm.num_steps' was renamed 'edm.sampling_levels'")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(REPO / "configs/tiny.yaml", [override])
    old = tmp_path / "old.yaml"
    old.write_text("method: ddgan\ndiffusion:\n  num_steps: 2\n")
    with pytest.raises(ConfigError, match="'diffusion' was renamed 'ddgan'"):
        load_config(old)
    import torch

    from ddgan import checkpoint

    saved = to_dict(load_config(REPO / "configs/tiny.yaml"))
    saved["generator"] = saved.pop("backbone")  # a run saved by 0.1
    torch.save({"config": saved, "method": {}, "step": 1}, tmp_path / "last.pt")
    with pytest.raises(ConfigError, match="last.pt: config key 'generator' was renamed 'backbone'"):
        checkpoint.load(tmp_path / "last.pt")


def test_settings_are_typed_frozen_and_save_as_the_merged_config(tmp_path):
    """resolve() gives one frozen dataclass per section, typed from the defaults; to_dict gives
    back the checked dict a run saves; updated() re-checks what it changes."""
    import dataclasses

    from ddgan.config import dump_config, load_saved_config
    from ddgan.settings import updated

    settings = load_config(REPO / "configs/tiny.yaml", ["optim.lr=1e-3"])
    assert settings.optim.lr == 1e-3 and settings.backbone.channel_mult == (1, 2)
    types = {f.name: f.type for f in dataclasses.fields(settings.train)}
    assert types["batch_size"] is int and types["mixed_precision"] is str
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.optim.lr = 1.0
    dump_config(settings, tmp_path / "config.yaml")
    assert load_saved_config(tmp_path / "config.yaml") == settings
    assert to_dict(settings)["backbone"]["channel_mult"] == [1, 2]
    assert updated(settings, {"ddgan": {"denoising_steps": 3}}).ddgan.denoising_steps == 3
    with pytest.raises(ConfigError, match="'ddgan.denoising_steps' expects int"):
        updated(settings, {"ddgan": {"denoising_steps": "3"}})
    with pytest.raises(ConfigError, match="unknown config key 'ddgan.steps'"):
        updated(settings, {"ddgan": {"steps": 3}})


def test_a_config_names_its_base_and_changes_a_few_keys(tmp_path):
    """`base:` reads another file first (relative to this one's folder, itself free to have a
    base); sections merge key by key; a loop or a missing base is an error naming the file."""
    (tmp_path / "a.yaml").write_text("divergence:\n  name: js\n  r1_gamma: 0.5\ntrain:\n  batch_size: 8\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\ndivergence:\n  name: rpgan\n")
    (tmp_path / "c.yaml").write_text("base: sub/b.yaml\ntrain:\n  max_steps: 7\n")
    cfg = load_config(tmp_path / "c.yaml", ["train.batch_size=4"])
    assert (cfg.divergence.name, cfg.divergence.r1_gamma) == ("rpgan", 0.5)
    assert (cfg.train.batch_size, cfg.train.max_steps) == (4, 7)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="leads back"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "lost.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(ConfigError, match="gone.yaml does not exist"):
        load_config(tmp_path / "lost.yaml")
    # The shipped wgan-gp recipe is ddgan.yaml's, by base:, with its own keys changed.
    js, wgan = (load_config(REPO / f"configs/fmnist/{name}.yaml") for name in ("ddgan", "ddgan_wgan_gp"))
    assert sorted(config_differences(js, wgan)) == ["divergence.name", "divergence.options",
                                                    "divergence.r1_every", "divergence.r1_gamma",
                                                    "optim.betas", "train.out_dir"]
