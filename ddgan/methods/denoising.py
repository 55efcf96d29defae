"""The baselines' common part: one network trained by regression, with its optimiser and EMA.

A subclass supplies build_network, loss, sample_with, preview_steps and network_calls; the training loop,
logging and checkpoints are train.py's, shared with DDGAN.
"""
import torch

from ..speed import adam, compiled, match_optimizer, prepare_module, resolve
from .common import grad_norm, make_ema, optimizer_step


class DenoisingMethod:
    batches_per_step = 1
    unused_sections = ("diffusion", "discriminator", "divergence")  # DDGAN's; a subclass adds the other baselines'

    def __init__(self, cfg, image_shape, accelerator):
        self.check_config(cfg)
        self.accelerator, self.cfg, self.image_shape = accelerator, cfg, tuple(image_shape)
        self.speed = speed = resolve(cfg["speed"], accelerator.device)
        network = prepare_module(self.build_network(cfg, image_shape), speed)
        o = cfg["optim"]
        self.ema = make_ema(network, o["ema_decay"], accelerator.device, o["ema_warmup"])
        optimizer = adam(network.parameters(), o["lr_g"], o["betas"], speed)
        self.network, self.optimizer = accelerator.prepare(network, optimizer)
        self.fast_network = compiled(self.network, speed)  # shares the weights
        max_steps, warmup = cfg["train"]["max_steps"], o["warmup_steps"]
        schedule = [torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: min(1.0, (step + 1) / warmup))
                    ] if warmup else []
        if o["cosine_decay"]:
            schedule.append(torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, max_steps, o["lr_min"]))
        self.schedulers = schedule

    @staticmethod
    def check_config(cfg):
        g, o = cfg["generator"], cfg["optim"]
        if g["nz"] or g["tanh_output"]:
            raise ValueError(f"{cfg['method']} uses the backbone without a latent or tanh: set "
                             f"generator.nz=0 and generator.tanh_output=false")
        if o["warmup_steps"] and o["cosine_decay"]:
            raise ValueError("choose one learning-rate schedule: optim.warmup_steps or "
                             "optim.cosine_decay")

    def loss(self, network, x0):
        raise NotImplementedError

    def train_step(self, batches, step, with_grad_norms=False):
        loss = self.loss(self.fast_network, next(batches))
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        stats = {"loss": loss.detach()}
        if with_grad_norms:
            stats["grad_norm"] = grad_norm(self.network)
        optimizer_step(self.optimizer, self.cfg["optim"]["grad_clip"])
        self.ema.update_parameters(self.accelerator.unwrap_model(self.network))
        for scheduler in self.schedulers:
            scheduler.step()
        return stats

    def state_dict(self):
        return {"network": self.accelerator.unwrap_model(self.network).state_dict(),
                "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state):
        self.accelerator.unwrap_model(self.network).load_state_dict(state["network"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        match_optimizer(self.optimizer, self.speed)
        for scheduler, s in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(s)
