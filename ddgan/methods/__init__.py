"""Training methods, by the config's `method` key. Each supplies its networks (build_network),
train_step, sample_with, preview_steps, network_calls and its state dict."""
from .ddgan import DDGAN
from .ddpm import DDPM
from .edm import EDM

METHODS = {"ddgan": DDGAN, "ddpm": DDPM, "edm": EDM}


def method_class(cfg):
    """The class of cfg's method, after checking cfg for it (so bad input fails before data loads)."""
    if cfg["method"] not in METHODS:
        raise ValueError(f"unknown method {cfg['method']!r}; valid: {', '.join(METHODS)}")
    cls = METHODS[cfg["method"]]
    cls.check_config(cfg)
    return cls
