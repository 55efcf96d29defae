"""The configuration's schema and its checks: the shared defaults, and the merging of a YAML
file and dotted overrides over them, every key and type checked.

Every key a run may use is in the defaults: the shared sections of DEFAULTS here and the
sections each registered method owns (its class's `sections`), which the method registry
composes (ddgan/methods, `defaults`). A key that is not is an error naming it, so a typo never
silently trains the wrong model. config.py loads a run's settings with them.
"""
from pathlib import Path

import yaml

DEFAULTS = {                     # "method" is the registry's (ddgan.methods.DEFAULT_METHOD)
    "data": {
        "name": "fmnist",        # fmnist | cifar10 | imagefolder
        "root": None,            # folder with the data; else $DDGAN_DATA; else download
        "image_size": None,      # imagefolder only: resize to this (null = as stored)
        "random_flip": None,     # null = on for cifar10 and imagefolder, off for fmnist
        "on_device": True,       # hold the whole dataset on the accelerator as one tensor
    },
    "backbone": {                # the U-Net: DDGAN's generator, a baseline's network
        "base_channels": 64,
        "channel_mult": [1, 2, 2],
        "num_res_blocks": 2,
        "attn_resolutions": [7],
        "dropout": 0.0,
        "nz": 100,               # latent z size
        "z_emb_dim": 256,
        "n_mlp": 4,              # mapping network: 1 + n_mlp linear layers
        "tanh_output": True,
        # NCSN++ (the DDGAN authors' generator) where these differ from the defaults:
        "resample": "conv",      # conv (strided / nearest + conv) | resblock (BigGAN blocks, FIR)
        "fir_kernel": [1, 3, 3, 1],  # FIR taps of resblock resampling and the input pyramid
        "progressive_input": "none",  # none | residual (image pyramid added into each level)
        "decoder_attention": "every_block",  # every_block | once_per_level
        "output_norm": "adaptive",  # adaptive (AdaGN with z) | plain (GroupNorm)
        "zero_init_output": False,  # output conv starts at zero
    },
    "optim": {
        "lr": 1.6e-4,            # the backbone's: DDGAN's generator, a baseline's network
        "lr_discriminator": 1.25e-4,  # DDGAN's discriminator
        "betas": [0.5, 0.9],
        "warmup_steps": 0,       # linear learning-rate warm-up of every network
        "grad_clip": 0.0,        # clip each network's gradient to this global norm (0 = off)
        "cosine_decay": False,   # cosine decay of both learning rates to lr_min over max_steps
        "lr_min": 1e-5,
        "ema_decay": 0.999,
        "ema_warmup": True,      # decay min(ema_decay, (1 + n) / (10 + n)) after n steps; false: constant
    },
    "train": {
        "batch_size": 64,        # per process
        "max_steps": 10000,      # generator steps
        "seed": 0,
        "out_dir": "runs/default",
        "mixed_precision": "auto",  # auto (by measurement where bf16 is native) | no | bf16 (the networks) | bf16-autocast: ddgan/precision.py
        "log_every": 50,
        "sample_every": 1000,
        "ckpt_every": 1000,      # rewrite checkpoints/last.pt
        "keep_every": 10000,     # also keep checkpoints/step_N.pt (0 = never)
        "num_grid": 64,          # images in the periodic sample grids
    },
    "speed": {                   # ddgan/speed.py; null = on with a CUDA GPU, off elsewhere
        "tf32": None,            # TF32 matmuls and convolutions
        "cudnn_benchmark": None,  # cuDNN picks the fastest convolution algorithms
        "channels_last": None,   # NHWC memory format for the networks
        "fused_adam": None,      # one fused kernel per optimiser step
        "compile": None,         # torch.compile G and D (R1 and GP passes stay eager)
        "compile_backend": "inductor",  # aot_eager: capture graphs without generating code
    },
    "eval": {                    # periodic evaluation, for the training curves (0 = off)
        "every_images": 0,       # evaluate each time this many more training images were seen
        "num_samples": 1000,     # small: a trend, not a reportable number (docs/EVALUATION.md)
        "extractor": None,       # featnet:PATH (offline, `ddgan featnet`) or inception
        "batch_size": 256,
        "steps": None,           # DDPM's K / EDM's N for these samples and the sample grids
                                 # (null: DDPM min(20, T), EDM min(10, edm.sampling_levels)); a DDGAN ignores it:
                                 # it always samples with its trained T
    },
}

# Keys whose value is free-form (checked by the code that consumes them).
FREE_FORM = {("divergence", "options")}


class ConfigError(ValueError):
    pass



def _rename_message(where, renamed):
    """What became of a key of an earlier version ('' if it never existed); renamed: {old: new}."""
    if where not in renamed:
        return ""
    inside = [f"{old} is {new}" for old, new in renamed.items() if old.startswith(where + ".")]
    return (f"'{where}' was renamed '{renamed[where]}' in ddgan 0.2"
            + (f" ({', '.join(inside)})" if inside else "")
            + "; a config or a run saved before then needs the new names")


def merge(base, update, path=(), renamed=None):
    """Update the config dict `base` in place from `update`, checking every key and type;
    renamed ({old dotted key: new}) explains a key of an earlier version."""
    for key, value in update.items():
        where = ".".join(path + (key,))
        if key not in base:
            message = _rename_message(where, renamed or {})
            if message:
                raise ConfigError(f"config key {message}")
            valid = ", ".join(sorted(base))
            raise ConfigError(f"unknown config key '{where}'; valid keys here: {valid}")
        if isinstance(base[key], dict) and path + (key,) not in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{where}' is a section; give it a mapping")
            merge(base[key], value, path + (key,), renamed)
        else:
            base[key] = _check_type(where, base[key], value)


def _check_type(where, default, value):
    if default is None or value is None or isinstance(default, dict):
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        value = _yaml11_float(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok and isinstance(default, str) and isinstance(value, bool):
        raise ConfigError(f"config key '{where}' expects a string, got {value!r}: YAML reads an "
                          f"unquoted no, yes, off or on as a boolean; quote it, e.g. "
                          f"{where}='\"no\"' on the command line or {where.split('.')[-1]}: \"no\" in a file")
    if not ok:
        raise ConfigError(f"config key '{where}' expects {type(default).__name__}, "
                          f"got {value!r}")
    return value


def _yaml11_float(value):
    """PyYAML reads '1e-3' as a string (YAML 1.1 wants '1.0e-3'); accept it as a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def parse_override(text):
    """'a.b.c=value' -> nested dict {'a': {'b': {'c': value}}}, value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML "
                          f"({_yaml_problem(err)}); quote it or fix its brackets") from None
    nested = value
    for key in reversed(dotted.strip().split(".")):
        nested = {key: nested}
    return nested



def _yaml_problem(err):
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + (getattr(err, "problem", None) or str(err).splitlines()[0])


def read_yaml_mapping(path):
    """A config file's mapping of sections ({} for an empty file), or a ConfigError naming it."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give a YAML file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({_yaml_problem(err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (method:, data:, train:, "
                          f"...), not a {type(data).__name__}")
    return data


def read_config_file(path, _seen=()):
    """A config file's mapping, over that of the file its optional `base:` key names (a path
    relative to this file's folder, itself free to have a base): a variant of a config is the
    few keys it changes. A section present in both is merged key by key."""
    path = Path(path)
    data = read_yaml_mapping(path)
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be the path of another config file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in _seen or base_path == path.resolve():
        raise ConfigError(f"{path}: base {base} leads back to a file already read; remove the loop")
    merged = read_config_file(base_path, (*_seen, path.resolve()))
    _overlay(merged, data)
    return merged


def _overlay(base, update, path=()):
    """Plain dicts: update's keys over base's, sections key by key (free-form ones whole)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and path + (key,) not in FREE_FORM:
            _overlay(base[key], value, path + (key,))
        else:
            base[key] = value
