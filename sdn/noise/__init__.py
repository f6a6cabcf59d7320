"""Noise models: the gradient-noise covariance `C(w)` and the law of its increments.

This package is the shared core of `sdn`. The SDE integrators (`sdn.sde`, `sdn.solvers`,
`sdn.engine`) and the optimizer transform (`sdn.optim`) both call these methods and
nothing else; neither has sampling code of its own. One module turns keys into numbers
(`sdn.noise.increments`); one module holds each family of models.

Every model is a frozen dataclass registered as a JAX pytree (its numbers are leaves, so
a model can be built inside `jit`/`vmap` from traced parameters) and offers

- ``variance(w)``: the diagonal of `C(w)`, elementwise, shaped like `w` (a pytree of
  states gives a pytree of variances; parameters may be scalars, arrays broadcastable
  to each leaf, or pytrees matching `w`);
- ``covariance(w)``: the full matrix `C(w)` for a flat `w` of shape `(d,)`;
- ``sample(key, w, dt=None, increments="gaussian")``: one draw of the noise term
  `sqrt(C(w)) dW` over a step `dt` (`dt=None`: unit), shaped like the pytree `w`;
- ``block(key, w, dt, n, increments="gaussian")``: a block of `n` standard increments for
  one path, leading axis `n` (the keyword names their law), and ``diffusion(w, dw)``: the
  noise term for one of them, whose covariance is `C(w) dt` (`sqrt(C(w)) dw` for the
  Gaussian models);
- ``g_dg(w)``: `g g' = ½ ∂C_jj/∂w_j` for diagonal models (Milstein, Heun), computed from
  `C` itself so that it stays finite where `C(w) = 0`.

``increments="two_point"`` replaces each `N(0, dt)` by `±sqrt(dt)` with equal
probability (one random bit): the same covariance, so weak (in law) results keep their
order, but the noise is no longer Gaussian. Gaussian models only.

Attributes say what a model is, and solvers state what they need in those terms
(``is_gaussian``, ``diagonal``, ``constant``, ``stratonovich_convertible``); see
`sdn.solvers`. The notation follows docs/theory.md §1–2: the SDE of SGD is
`dw = −∇L(w) dt + sqrt(η C(w) / b) dB`, and the factor `η / b` is the SDE's `scale`.

The coefficients `σ_g`, `σ_H`, `σ_gH` (``sigma_g``, ``sigma_h``, ``sigma_gh``) of
`power_law` are variances and a covariance, as in the paper: `σ_g = Var g_i`,
`σ_H = Var H_i`, `σ_gH = Cov(g_i, H_i)` of the per-sample gradients and curvatures at the
minimum, so that `C(w) = σ_g + 2 σ_gH x + σ_H x²`; a standard deviation is never passed.
The multipliers `α_g`, `α_H` (``alpha_g``, ``alpha_h``) of the *measured* models
(`gradient_variance`, `fluctuation`, `empirical`) scale a gradient statistic the training
loop measures; they are not moments of anything (and not the α-stable index ``alpha``).
"""

from sdn.noise.base import Array, NoiseModel, is_static_zero, leafwise
from sdn.noise.constant import Diagonal, Full, Isotropic, diagonal, full, isotropic
from sdn.noise.increments import (
    INCREMENTS,
    check_increments,
    rademacher,
    standard_increments,
)
from sdn.noise.increments import symmetric_stable as _symmetric_stable  # noqa: F401  (tests)
from sdn.noise.measured import (
    Empirical,
    Fluctuation,
    GradientVariance,
    empirical,
    fluctuation,
    gradient_variance,
)
from sdn.noise.minibatches import (
    Minibatch,
    MinibatchDraw,
    MinibatchGaussian,
    minibatch,
    minibatch_gaussian,
)
from sdn.noise.powerlaw import PowerLaw, power_law, power_law_variance
from sdn.noise.stable import AlphaStable, alpha_stable

_static_zero = is_static_zero  # the spelling `sdn.optim` used before 1.0

__all__ = [
    "INCREMENTS",
    "AlphaStable",
    "Array",
    "Diagonal",
    "Empirical",
    "Fluctuation",
    "Full",
    "GradientVariance",
    "Isotropic",
    "Minibatch",
    "MinibatchDraw",
    "MinibatchGaussian",
    "NoiseModel",
    "PowerLaw",
    "alpha_stable",
    "check_increments",
    "diagonal",
    "empirical",
    "fluctuation",
    "full",
    "gradient_variance",
    "is_static_zero",
    "isotropic",
    "leafwise",
    "minibatch",
    "minibatch_gaussian",
    "power_law",
    "power_law_variance",
    "rademacher",
    "standard_increments",
]
