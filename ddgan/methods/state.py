"""A run's trainable state, composed by every method: its networks laid out for the speed
switches, computing in the run's precision and wrapped by accelerate, an Adam and the
learning-rate schedule per network, the
EMA of the sampled network, and one state dict that resumes all of it."""
import torch

from ..precision import in_precision, master
from ..speed import adam, compiled, match_optimizer, prepare_module, resolve
from .common import make_ema


def check_schedule(optim):
    """The `optim` settings of one learning-rate schedule."""
    if optim.warmup_steps and optim.cosine_decay:
        raise ValueError("choose one learning-rate schedule: optim.warmup_steps or optim.cosine_decay")


def schedules(optimizer, optim, max_steps):
    """optim's schedule for one optimiser: a linear warm-up over warmup_steps, or a cosine decay
    to lr_min over max_steps, or none."""
    warmup = optim.warmup_steps
    if warmup:
        return [torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))]
    if optim.cosine_decay:
        return [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max_steps, optim.lr_min)]
    return []


class RunState:
    """Networks, their optimisers and schedules, and the EMA, under the names of the state dict.

    add() each network in the order its random initialisation was drawn; its state-dict entry
    is `name`, its optimiser's `optimizer_name`. train.mixed_precision is the run's, as
    resolved (ddgan/precision.py): with "bf16" each network computes in bf16 from its float32
    weights, which the optimiser, the EMA and the state dict keep.
    """

    def __init__(self, settings, accelerator):
        check_schedule(settings.optim)
        self.accelerator, self.optim = accelerator, settings.optim
        self.max_steps = settings.train.max_steps
        self.speed = resolve(vars(settings.speed), accelerator.device)
        self.precision = settings.train.mixed_precision
        self.networks, self.optimizers, self.schedulers = {}, {}, []
        self.ema = self.ema_source = None

    def add(self, name, network, lr, optimizer_name, ema=False):
        """The network prepared for training and its optimiser; ema: keep the EMA of this one
        (the network that samples)."""
        network = prepare_module(network, self.speed)
        if ema:  # made before accelerate wraps the network, so it stays a plain module
            o = self.optim
            self.ema = make_ema(network, o.ema_decay, self.accelerator.device, o.ema_warmup)
        optimizer = adam(network.parameters(), lr, self.optim.betas, self.speed)
        network, optimizer = self.accelerator.prepare(in_precision(network, self.precision), optimizer)
        if ema:
            self.ema_source = network
        self.networks[name], self.optimizers[optimizer_name] = network, optimizer
        self.schedulers += schedules(optimizer, self.optim, self.max_steps)
        return network, optimizer

    def fast(self, network):
        """The network's compiled form where the speed switches ask for it (sharing its weights)."""
        return compiled(network, self.speed)

    def unwrap(self, network):
        """The float32 module behind a prepared network (no DDP, no bf16 wrapper)."""
        return master(self.accelerator.unwrap_model(network))

    def end_step(self):
        """After a training step's updates: the EMA follows the sampled network, the schedules advance."""
        self.ema.update_parameters(self.unwrap(self.ema_source))
        for scheduler in self.schedulers:
            scheduler.step()

    def state_dict(self):
        return {**{name: self.unwrap(net).state_dict() for name, net in self.networks.items()},
                "ema": self.ema.state_dict(),
                **{name: opt.state_dict() for name, opt in self.optimizers.items()},
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state):
        for name, network in self.networks.items():
            self.unwrap(network).load_state_dict(state[name])
        self.ema.load_state_dict(state["ema"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])
            match_optimizer(optimizer, self.speed)  # this run's Adam variant and memory layout
        if len(state["schedulers"]) != len(self.schedulers):
            raise ValueError(f"the checkpoint holds {len(state['schedulers'])} learning-rate "
                             f"schedule(s) where this config makes {len(self.schedulers)}: resume "
                             f"with the run's optim.warmup_steps and optim.cosine_decay")
        for scheduler, saved in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
