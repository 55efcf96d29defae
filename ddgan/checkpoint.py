"""Checkpoints: one file each, written atomically (ddgan.files), and read back with a clear
error when a file is not an intact checkpoint."""
import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from .config import saved_config
from .schema import ConfigError
from .files import atomic_copy, atomic_write

KEPT = re.compile(r"step_(\d+)\.pt")


class CheckpointError(ValueError):
    """A file that should be a checkpoint cannot be read as one."""


def kept_name(step):
    return f"step_{step:07d}.pt"


def save_run_checkpoint(state, last, keep=None):
    """Write `state` as `last` and, if `keep` is given, as that kept snapshot too. The snapshot
    is written first and last.pt copied from it, so a process killed in between leaves the
    snapshot and the previous last.pt, from which a resumed run writes the same snapshot
    again; no kept step can go missing."""
    atomic_write(keep or last, lambda f: torch.save(state, f))
    if keep is not None:
        atomic_copy(keep, last)


def load(path, map_location="cpu"):
    """The saved state, its config resolved (keys added since it was saved: config.saved_config)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
        # Truncated: RuntimeError (no zip directory) or OSError; junk: UnpicklingError; empty: EOFError.
        raise CheckpointError(f"{path} is not an intact checkpoint: it is truncated or damaged "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not (isinstance(state, dict) and {"config", "method", "step"} <= set(state)):
        raise CheckpointError(f"{path} is a torch file but not a ddgan training checkpoint "
                              f"(RUN/checkpoints/last.pt or step_N.pt)")
    try:
        state["config"] = saved_config(state["config"])
    except ConfigError as err:  # e.g. saved before a key was renamed
        raise ConfigError(f"{path}: {err}") from None
    return state


def kept_checkpoints(folder):
    """The kept snapshots step_N.pt in `folder`, newest first."""
    found = [(int(m.group(1)), path) for path in Path(folder).glob("step_*.pt")
             if (m := KEPT.fullmatch(path.name))]
    return [path for _, path in sorted(found, reverse=True)]


def newest_intact(folder):
    """(path, state) of the newest kept snapshot in `folder` that loads, or (None, None)."""
    for path in kept_checkpoints(folder):
        try:
            return path, load(path)
        except CheckpointError:
            continue
    return None, None


def rng_state():
    """Every random number generator a training step draws from, on this process."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
