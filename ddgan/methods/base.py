"""What a method tells the rest of the code: the interface every registered method has.

Every module outside ddgan/methods/ asks a method class these questions rather than
testing its name. A subclass sets the class attributes and supplies build_network,
train_step, sampler, preview_steps, state_dict, load_state_dict and toy_model (the 2-D
benchmark's model: ddgan.py, denoising.py); the defaults below suit a method sampled at
any step count. Every question takes the run's Settings (ddgan.settings), not a dict.
"""
import dataclasses
from pathlib import Path
from typing import Callable

import torch


@dataclasses.dataclass(frozen=True)
class Sampler:
    """One of a method's samplers at one step count, its schedule computed once:
    sample(network, x_T, rng) -> images, from x_T ~ N(0, I), in network_calls calls."""
    name: str
    steps: int
    network_calls: int
    sample: Callable

    def draw(self, network, num, image_shape, rng):
        """`num` samples of `image_shape`, from noise drawn first with `rng` (on its device)."""
        x_T = torch.randn(num, *image_shape, device=rng.device, generator=rng)
        return self.sample(network, x_T, rng)


class Method:
    name = None             # the config's `method` value
    sections = {}           # the config sections this method owns: {section: {key: default}}
    samplers = ()           # the names `--sampler` accepts, the default first
    eval_samplers = None    # those `ddgan eval` uses when --samplers is not given (None: the default)
    steps_symbol = "steps"  # what `--steps` counts, in figures and messages (T, K, N)
    steps_trained = False   # True: the step count is fixed at training (a sweep over it is a set of runs)
    unused_keys = ()        # shared config keys this method does not read ('optim.lr_discriminator'): setting one is an error
    renamed = {}            # {old dotted key or section: new} of its config (config.RENAMED)
    legacy_values = {}      # {(section, key): value} for saved configs that predate a key (config.saved_config)
    toy_recipe = {}         # the 2-D benchmark's hyperparameters where this method's differ (ddgan/toy.py)

    @classmethod
    def check_config(cls, settings):
        """Raise a ValueError naming the key for a setting this method cannot use."""

    @classmethod
    def default_sampler(cls):
        return cls.samplers[0]

    @classmethod
    def sampler_name(cls, name):
        """`name`, or the default sampler for None; a ValueError for one the method lacks."""
        if name not in (None, *cls.samplers):
            raise ValueError(f"{cls.name} samplers: {', '.join(cls.samplers)}; got {name!r}")
        return name or cls.default_sampler()

    @classmethod
    def sampler(cls, settings, steps=None, name=None, device="cpu"):
        """The Sampler called `name` (None: the default) at `steps` (None: default_steps), its
        schedule on `device`."""
        raise NotImplementedError

    @classmethod
    def default_steps(cls, settings):
        """The step count sampled when none is asked for."""
        raise NotImplementedError

    @classmethod
    def check_steps(cls, settings, counts):
        """Raise a ValueError saying which step counts this run can sample with."""
        if min(counts) < 1:
            raise ValueError(f"--steps ({cls.steps_symbol}) must be >= 1")

    @classmethod
    def labels(cls, settings):
        """What its result rows record besides the sampler: {'divergence': ...} or {}."""
        return {}

    @classmethod
    def batches_per_step(cls, settings):
        """Training batches one step consumes (a DDGAN's n_critic D steps each take a fresh one)."""
        return 1

    @classmethod
    def sweep_cells(cls, config_dir, steps, divergences):
        """The sweep's training runs of this method, [(cell name, config file, overrides)]: one
        run, CONFIG_DIR/<name>.yaml, sampled afterwards at every step count."""
        return [(cls.name, Path(config_dir) / f"{cls.name}.yaml", ())]

    @classmethod
    def settings_for_steps(cls, settings, steps):
        """The settings of a run that samples with `steps` (the benchmark times sampling at a
        step count without training for it): the same settings, unless steps are trained."""
        return settings

    def diagnostics(self, x0):
        """Scalars the training logs beside the losses ({name: float}), measured on x0, the same
        fixed batch of real images each time; none by default."""
        return {}

    def cycle(self):
        """Training steps after which the step's work repeats (the benchmark times one cycle)."""
        return 1
