"""The baselines' common part: one network trained by regression, with its optimiser and EMA.

A subclass supplies its objective (the loss), wrap (its preconditioning around the shared
backbone), sampler, default_steps and preview_steps; the optimiser, EMA
and schedule are the RunState's, the training loop, logging and checkpoints train.py's,
all shared with DDGAN. The same objective and sampler
train and sample the 2-D benchmark's MLP (ToyDenoiser).
"""
import torch

from ..networks import MLPGenerator
from ..precision import in_precision, master
from ..settings import updated
from .base import Method
from .common import build_unet, cosine_schedules, grad_norm, optimizer_step
from .state import RunState, check_schedule


class DenoisingMethod(Method):
    unused_keys = ("optim.lr_discriminator",)  # one network, trained at optim.lr
    # The 2-D benchmark: denoisers regress, so they take Adam's usual betas and a shorter
    # budget, in which they converge (docs/GUIDE.md, the 2-D benchmark).
    toy_recipe = {"iters": 4000, "lr_g": 5e-4, "betas": (0.9, 0.999)}
    toy_overrides = {}  # {section: {key: value}}: this method's settings for the 2-D data

    def __init__(self, settings, image_shape, accelerator):
        self.check_config(settings)
        self.accelerator, self.image_shape = accelerator, tuple(image_shape)
        self.max_grad_norm = settings.optim.grad_clip
        self.loss = self.objective(settings)
        self.state = state = RunState(settings, accelerator)
        self.speed = state.speed
        self.network, self.optimizer = state.add("network", self.build_network(settings, image_shape),
                                                 settings.optim.lr, "optimizer", ema=True)
        self.ema = state.ema
        self.fast_network = state.fast(self.network)

    @classmethod
    def check_config(cls, settings):
        if settings.backbone.nz or settings.backbone.tanh_output:
            raise ValueError(f"{cls.name} uses the backbone without a latent or tanh: set "
                             f"backbone.nz=0 and backbone.tanh_output=false")
        check_schedule(settings.optim)

    @classmethod
    def objective(cls, settings):
        """The loss, a function (network, x0) -> scalar tensor."""
        raise NotImplementedError

    @staticmethod
    def wrap(backbone, settings):
        """The trained network around a backbone (the U-Net, or the 2-D MLP)."""
        return backbone

    @classmethod
    def build_network(cls, settings, image_shape):
        return cls.wrap(build_unet(settings, image_shape), settings)

    @classmethod
    def toy_model(cls, hp, steps, divergence=None, sampler=None, settings=None):
        return ToyDenoiser(cls, hp, steps, sampler, settings)

    def train_step(self, batches, step, with_grad_norms=False):
        loss = self.loss(self.fast_network, next(batches))
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        stats = {"loss": loss.detach()}
        if with_grad_norms:
            stats["grad_norm"] = grad_norm(self.network)
        optimizer_step(self.optimizer, self.max_grad_norm)
        self.state.end_step()
        return stats

    def state_dict(self):
        return self.state.state_dict()

    def load_state_dict(self, state):
        self.state.load_state_dict(state)


class ToyDenoiser:
    """The 2-D benchmark's denoiser (ddgan/toy.py): the generator's MLP without z inside the
    method's wrap, trained by its objective and sampled by its sampler, with the method's
    settings for the 2-D data (`settings`, the defaults for the method, and its toy_overrides)."""
    divergence = None

    def __init__(self, method, hp, steps, sampler, settings):
        settings = updated(settings, method.toy_overrides)
        network = method.wrap(MLPGenerator(nz=0, hidden=hp["hidden"], depth=hp["depth"],
                                           fourier_features=hp["fourier_features"],
                                           fourier_scale=hp["g_fourier_scale"]), settings)
        self.network = in_precision(network, hp["mixed_precision"])
        self.loss = method.objective(settings)
        self.sampling = method.sampler(settings, steps, sampler)  # fails now on a bad sampler or count
        self.sampler, self.nfe = self.sampling.name, self.sampling.network_calls
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=hp["lr_g"], betas=hp["betas"])
        self.num_updates = hp["iters"]
        self.schedulers = cosine_schedules([self.optimizer], hp, self.num_updates)

    def train_step(self, draw_batch):
        loss = self.loss(self.network, draw_batch())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def sample(self, num, rng):
        return self.sampling.draw(master(self.network).eval(), num, (2,), rng)
