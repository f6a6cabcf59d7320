"""Probes of the gradient noise and the curvature of a trained model (docs/theory.md §1, §6.1).

The probes live in one module per concern; this module gathers them under their old home:

- `sdn.train.persample`: per-sample gradients of any per-sample loss and their moments
  (`per_sample_grads`, `gradient_moments`, `directional_derivatives`);
- `sdn.train.gradstats`: the same moments of a Flax NNX network from one backward pass
  (`gradient_statistics`, with the noise scale `GradientStatistics.noise_scale`);
- `sdn.train.moments`: the one accumulator of per-sample moments both of them use;
- `sdn.train.profiles`: directions and the noise along a line (`noise_along`,
  `network_noise_along`, `taylor_coefficients`);
- `sdn.train.hessian`: `hessian_vector_product`, `top_hessian_eigenvalue`;
- `sdn.train.fits`: the power-law fit and the fitted noise models (`NoiseFit`).
"""

from sdn.train.fits import (
    NoiseFit,
    PowerLawFit,
    fit_empirical,
    fit_network_empirical,
    fit_network_power_law,
    fit_noise_along,
    fit_power_law,
    power_law_fit,
)
from sdn.train.gradstats import GradientStatistics, NoiseScale, gradient_statistics
from sdn.train.hessian import Eigenpair, hessian_vector_product, top_hessian_eigenvalue
from sdn.train.persample import (
    GradientMoments,
    directional_derivatives,
    gradient_moments,
    per_sample_grads,
)
from sdn.train.profiles import (
    NoiseProfile,
    TaylorCoefficients,
    network_noise_along,
    noise_along,
    random_direction,
    taylor_coefficients,
    tree_normalize,
)

__all__ = [
    "Eigenpair",
    "GradientMoments",
    "GradientStatistics",
    "NoiseFit",
    "NoiseProfile",
    "NoiseScale",
    "PowerLawFit",
    "TaylorCoefficients",
    "directional_derivatives",
    "fit_empirical",
    "fit_network_empirical",
    "fit_network_power_law",
    "fit_noise_along",
    "fit_power_law",
    "gradient_moments",
    "gradient_statistics",
    "hessian_vector_product",
    "network_noise_along",
    "noise_along",
    "per_sample_grads",
    "power_law_fit",
    "random_direction",
    "taylor_coefficients",
    "top_hessian_eigenvalue",
    "tree_normalize",
]
