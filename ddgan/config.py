"""A run's settings, loaded: the defaults (every registered method's included), a YAML file
over them, dotted overrides on top, checked (ddgan/schema.py) and resolved to Settings
(ddgan/settings.py); and a saved run's config, read back.

This is the top of the configuration: it asks the method registry for the methods' tables,
and nothing below imports it.
"""
import copy

import yaml

from .files import atomic_write
from .methods import composed, defaults, get_method, overrides_for
from .schema import merge, parse_override, read_config_file, read_yaml_mapping
from .settings import resolve, to_dict

# Shared keys renamed in version 0.2, old name -> new; a method lists its own in `renamed`.
RENAMED = {"generator": "backbone", "optim.lr_g": "optim.lr", "optim.lr_d": "optim.lr_discriminator"}

# Shared keys added after runs were saved without them, with the value that reproduces how
# those runs trained (where the new default would change it): a saved config missing one gets
# this. A method lists its own sections' in its class's legacy_values.
LEGACY_VALUES = {
    ("optim", "ema_warmup"): False,  # the EMA was constant
}


def load_config(path=None, overrides=()):
    """The Settings of the defaults, updated by the YAML file at `path` (after the file its
    `base:` key names), then by 'key=value' overrides: the command line's edge (settings.resolve)."""
    cfg, renamed = defaults(), composed(RENAMED, "renamed")
    if path is not None:
        merge(cfg, read_config_file(path), renamed=renamed)
    for text in overrides:
        merge(cfg, parse_override(text), renamed=renamed)
    return resolve(cfg)


def load_shared_config(path, overrides):
    """The config at `path` with those of `overrides` that its method reads: overrides shared by
    the runs of several methods (a sweep's, a benchmark's --set) go to the runs that use them."""
    return load_config(path, overrides_for(get_method(load_config(path).method), overrides))


def saved_config(saved):
    """The Settings of a run's saved config (a dict from its config.yaml or checkpoint), resolved
    as the defaults would resolve it, except that keys it predates take their LEGACY_VALUES."""
    saved = copy.deepcopy(saved)
    for (section, key), value in composed(LEGACY_VALUES, "legacy_values").items():
        if section in saved and key not in saved[section]:
            saved[section][key] = value
    cfg = defaults()
    merge(cfg, saved, renamed=composed(RENAMED, "renamed"))
    return resolve(cfg)


def load_saved_config(path):
    return saved_config(read_yaml_mapping(path))


def dump_config(settings, path):
    text = yaml.safe_dump(to_dict(settings), sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode()))
