"""EDM's preconditioning (Karras et al. 2022, Table 1), kept apart from the architecture.

D(x; sigma) = c_skip x + c_out F(c_in x; c_noise), so that the network F sees
unit-variance inputs and learns a unit-variance target at every noise level.
The noise level enters F through its time embedding as c_noise = ln(sigma) / 4.
"""
from torch import nn

from ..diffusion import per_sample


def edm_coefficients(sigma, sigma_data=0.5):
    """(c_skip, c_out, c_in, c_noise) for noise levels sigma."""
    total = sigma**2 + sigma_data**2
    return (sigma_data**2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(),
            sigma.log() / 4)


class EDMPrecond(nn.Module):
    def __init__(self, network, sigma_data=0.5):
        super().__init__()
        self.network, self.sigma_data = network, sigma_data

    def forward(self, x, sigma):
        """D(x; sigma) for sigma of shape [B]; computed in float32 whatever x's dtype."""
        x32, sigma = x.float(), sigma.float().reshape(-1)
        c_skip, c_out, c_in, c_noise = edm_coefficients(per_sample(sigma, x32), self.sigma_data)
        out = self.network(c_in * x32, None, c_noise.reshape(-1))
        return (c_skip * x32 + c_out * out.float()).to(x.dtype)
