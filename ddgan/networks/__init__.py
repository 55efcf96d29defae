from .discriminator import Discriminator
from .mlp import MLPDiscriminator, MLPGenerator
from .unet import UNet

__all__ = ["Discriminator", "MLPDiscriminator", "MLPGenerator", "UNet"]
