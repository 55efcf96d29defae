"""The method registry: the config's `method` key names one of these classes.

A method is one module here and one entry below. It owns its config sections, its
networks, its training step, its samplers and what its results are labelled with
(base.Method lists the questions the rest of the code asks it).
"""
from .ddgan import DDGAN
from .ddpm import DDPM
from .edm import EDM
from .flow import Flow

METHODS = {cls.name: cls for cls in (DDGAN, DDPM, EDM, Flow)}


def get_method(name, what="method"):
    """The registered class called `name`, or a ValueError listing the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def method_class(cfg):
    """The class of cfg's method, after checking cfg for it (so bad input fails before data loads)."""
    cls = get_method(cfg["method"])
    cls.check_config(cfg)
    return cls


def unused_sections(cls):
    """The config sections of the other registered methods."""
    own = set(cls.sections)
    return tuple(section for other in METHODS.values() for section in other.sections
                 if section not in own)
