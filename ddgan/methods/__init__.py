"""Training methods, by the config's `method` key. Each supplies train_step, sample and state."""
from .ddgan import DDGAN

METHODS = {"ddgan": DDGAN}


def build_method(cfg, image_shape, accelerator):
    if cfg["method"] not in METHODS:
        raise ValueError(f"unknown method {cfg['method']!r}; valid: {', '.join(METHODS)}")
    return METHODS[cfg["method"]](cfg, image_shape, accelerator)
