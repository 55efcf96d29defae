"""What a method tells the rest of the code: the interface every registered method has.

Every module outside ddgan/methods/ asks a method class these questions rather than
testing its name. A subclass sets the class attributes and supplies build_network,
train_step, sample_with, network_calls, preview_steps, state_dict, load_state_dict and
toy_model (the 2-D benchmark's model: ddgan.py, denoising.py); the defaults below suit a
method sampled at any step count.
"""


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
    def check_config(cls, cfg):
        """Raise a ValueError naming the key for a setting this method cannot use."""

    @classmethod
    def default_sampler(cls):
        return cls.samplers[0]

    @classmethod
    def default_steps(cls, cfg):
        """The step count sampled when none is asked for."""
        raise NotImplementedError

    @classmethod
    def check_steps(cls, cfg, counts):
        """Raise a ValueError saying which step counts this run can sample with."""
        if min(counts) < 1:
            raise ValueError(f"--steps ({cls.steps_symbol}) must be >= 1")

    @classmethod
    def labels(cls, cfg):
        """What its result rows record besides the sampler: {'divergence': ...} or {}."""
        return {}

    @classmethod
    def config_for_steps(cls, cfg, steps):
        """The config of a run that samples with `steps` (the benchmark times sampling at a
        step count without training for it): the same config, unless steps are trained."""
        return cfg

    def diagnostics(self, x0):
        """Scalars the training logs beside the losses ({name: float}), measured on x0, the same
        fixed batch of real images each time; none by default."""
        return {}

    def cycle(self):
        """Training steps after which the step's work repeats (the benchmark times one cycle)."""
        return 1
