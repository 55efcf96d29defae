"""Sample-quality metrics."""
import numpy as np
import torch
from scipy import linalg


def frechet_distance(features_a, features_b):
    """Fréchet distance between Gaussians fitted to two feature sets [N, d] (REFERENCE §6).

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.
    """
    a = torch.as_tensor(features_a, dtype=torch.float64).cpu().numpy()
    b = torch.as_tensor(features_b, dtype=torch.float64).cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = covmean.real  # sqrtm leaves tiny imaginary parts from rounding
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))
