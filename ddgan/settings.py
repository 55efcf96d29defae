"""Typed settings: a run's configuration as frozen dataclasses, resolved once at the edge.

config.py merges the defaults, a YAML file and dotted overrides into a checked dict
(schema.merge): the form a run saves and compares on resume. resolve() turns that dict into
a Settings object, one frozen dataclass per section, and every function past the command line
reads `settings.optim.lr`, never cfg["optim"]["lr"]. The fields are the checked dict's keys,
so the schema is written once (schema.DEFAULTS and each method's `sections`). Lists become
tuples; `divergence.options` stays a free-form dict.
"""
import dataclasses
import functools

from .schema import FREE_FORM, merge


def _annotation(value):
    """A field's type, read off its value (None: any value the consuming code checks)."""
    if value is None:
        return object
    if isinstance(value, list):
        return tuple
    return type(value)


@functools.cache
def _section_class(name, fields):
    return dataclasses.make_dataclass(name, fields, frozen=True)


def _class_name(section):
    return "".join(part.capitalize() for part in section.split("_")) + "Settings"


def _frozen(value):
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def resolve(cfg):
    """The Settings of a merged, checked config dict (config.load_config's: every key of the
    defaults present)."""
    sections = {}
    for section, values in cfg.items():
        if not isinstance(values, dict):
            continue
        fields = tuple((key, dict if (section, key) in FREE_FORM else _annotation(value))
                       for key, value in values.items())
        sections[section] = _section_class(_class_name(section), fields)(
            **{key: _frozen(values[key]) for key, _ in fields})
    root = _section_class("Settings", (("method", str),) + tuple(
        (section, type(value)) for section, value in sections.items()))
    return root(method=cfg["method"], **sections)


def to_dict(settings):
    """The config dict of `settings`, as a run saves it (lists, plain dicts)."""
    return _plain(settings)


def updated(settings, changes):
    """Settings with `changes` ({section: {key: value}}) merged in and checked as a config file's
    would be."""
    cfg = to_dict(settings)
    merge(cfg, changes)
    return resolve(cfg)


def config_differences(a, b, path=()):
    """Dotted keys whose values differ between two resolved configs (Settings or dicts)."""
    a, b = (to_dict(c) if not isinstance(c, dict) else c for c in (a, b))
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict) and path + (key,) not in FREE_FORM:
            diffs += config_differences(va, vb, path + (key,))
        elif va != vb:
            diffs.append(".".join(path + (key,)))
    return diffs
