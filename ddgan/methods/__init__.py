"""The method registry: the config's `method` key names one of these classes.

A method is one module here and one entry below. It owns its config sections, its
networks, its training step, its samplers and what its results are labelled with
(base.Method lists the questions the rest of the code asks it). The registry composes the
configuration's defaults from the shared ones (schema.DEFAULTS) and the methods' own.
"""
import copy

from ..schema import DEFAULTS
from ..settings import config_differences
from .ddgan import DDGAN
from .ddpm import DDPM
from .edm import EDM
from .flow import Flow

METHODS = {cls.name: cls for cls in (DDGAN, DDPM, EDM, Flow)}
DEFAULT_METHOD = DDGAN.name  # a config's, unless it sets `method`


def composed(table, attribute):
    """A copy of `table` updated with every registered method's own table of that kind (its
    class attribute `attribute`: sections, renamed, legacy_values)."""
    merged = dict(table)
    for method in METHODS.values():
        merged.update(getattr(method, attribute))
    return merged


def defaults():
    """A fresh copy of every default: the shared sections and the registered methods' own."""
    return copy.deepcopy({"method": DEFAULT_METHOD, **composed(DEFAULTS, "sections")})


def get_method(name, what="method"):
    """The registered class called `name`, or a ValueError listing the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def method_class(settings):
    """The class of the settings' method, after checking them for it (so bad input fails before
    data loads): a setting the method does not use is an error, as are its own bad settings."""
    cls = get_method(settings.method)
    unused = unused_settings(cls, settings)
    if unused:
        raise ValueError(f"method {cls.name} does not use {', '.join(unused)}: remove "
                         f"{'it' if len(unused) == 1 else 'them'} from the config and the overrides")
    cls.check_config(settings)
    return cls


def unused_sections(cls):
    """The config sections of the other registered methods."""
    own = set(cls.sections)
    return tuple(section for other in METHODS.values() for section in other.sections
                 if section not in own)


def uses(cls, dotted):
    """Whether runs of method cls read the config key `dotted` ('section.key')."""
    return dotted.split(".")[0] not in unused_sections(cls) and dotted not in cls.unused_keys


def unused_settings(cls, settings):
    """The keys `settings` set away from their defaults that method cls does not read, each with the
    method whose section it is."""
    owners = {section: other.name for other in METHODS.values() for section in other.sections}
    return [f"{key} ({owners[key.split('.')[0]]}'s)" if key.split(".")[0] in owners else key
            for key in config_differences(defaults(), settings) if not uses(cls, key)]


def overrides_for(cls, overrides):
    """Of 'section.key=value' overrides given to runs of several methods (a sweep's, a
    benchmark's --set), those that method cls reads."""
    return [text for text in overrides if uses(cls, text.split("=", 1)[0].strip())]

