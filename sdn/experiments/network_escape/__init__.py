"""Escape from sharp and flat minima of a real network (docs/theory.md §6.5).

The two minima: the flat one is full-batch gradient descent's minimum of a digits MLP's
cross-entropy plus a weight decay; the sharp one is the same network rescaled
(`rescale_layers`, Dinh et al. 2017): the same function, training loss and test accuracy,
its top Hessian eigenvalue several times larger.

From a minimum `w*` several noisy dynamics are run with the same learning rate `η`, all
on flat parameter vectors. Each is SGD's SDE (`sdn.sgd_sde`) with a noise model of
`sdn.noise`, stepped by `sdn.simulate` with the `sgd` solver (`dynamics.py`):

* ``sgd``: real minibatch SGD at batch size `b` (with replacement), `noise.minibatch`;
* ``anisotropic``: GD plus constant noise with the gradient covariance `C(w*)/b` itself
  (Zhu et al. 2019), `noise.empirical` of `m` centred per-sample gradients;
* ``power_law``: the same plus the *fitted* state-dependent rise along the top Hessian
  eigenvector `v`, `C(w) = C(w*) + σ_H (v·x)² vvᵀ` with `x = w − w*`, so that along `v`
  the noise is the fitted power law `(σ_g + σ_H t²)/b`, `t = v·x` (`RiseAlong`);
* ``langevin``: GD plus isotropic constant noise with the trace of `C(w*)/b`;
* ``alpha_stable``: GD plus symmetric α-stable noise, coordinate `j` of scale
  `sqrt(C_jj(w*)/(2b))` (the Gaussian of the same variance at `α = 2`);
* ``gaussian``: SGD with its noise made Gaussian, `noise.minibatch_gaussian`: the
  minibatch's own covariance `C(w)/b` at every state of the whole network, drawn from a
  normal (the swap of the noise's law, docs/theory.md §6.7).

`laws` runs SGD from the whole rescaled family at several scales and barriers and ranks
the rival escape laws on its times (docs/theory.md §6.7).

The package: `basin` (the minima and their problems), `measure` (what is measured at a
minimum and the prediction), `dynamics` (the noise models and the runs), `experiment`
(the configuration, the result and its verdict).

Each chain records `L(w_t) − L(w*)` and `t = v·(w_t − w*)` every `record_every` steps. The
mean of the first over chains is Zhu et al.'s *escaping efficiency*; the *escape time* of a
chain is the first recorded step at which `|t|` passes `x_b = sqrt(2ΔL/h)`, where the
quadratic loss along `v` has risen by `ΔL` (chains that never do are censored at the last
step and counted).

The prediction comes from the one-dimensional theory along `v` with eigenvalue `h`: the
per-sample variance of `v·∇ℓ_i` at `w* + t v` is fitted by `σ_g + 2σ_gH t + σ_H t²`
(`sdn.train.power_law_fit`; `σ_g` is the variance measured at `w*`).
`sdn.theory.mean_first_passage_time` gives the mean exit time of
`dx = −h x dt + sqrt(η C(x)/b) dB` from `(−x_b, x_b)` with `C = σ_g + σ_H x²` (the power
law as the dynamics use it, cross term `σ_gH` dropped) and with `C = σ_g` (Langevin,
Kramers' setting; along `v` that is the anisotropic dynamic). Exits are only seen at
recorded steps, so the walls are moved out by `0.5826 σ(x_b) sqrt(η · record_every)` (the
discrete-monitoring shift of Broadie, Glasserman and Kou 1997), which keeps the prediction
right to `O(η)`.
"""

from sdn.experiments.network_escape.basin import (
    Basin,
    basin_from_finite_sum,
    basin_from_network,
    gradient_descent,
    rescale_layers,
)
from sdn.experiments.network_escape.dynamics import (
    DYNAMICS,
    Chains,
    EscapeStats,
    RiseAlong,
    escape_sde,
    escape_stats,
    escape_times,
    noise_model,
    run_dynamics,
)
from sdn.experiments.network_escape.experiment import (
    ESCAPE_RATIO_CLAIM,
    NetworkEscapeConfig,
    NetworkEscapeResult,
    escape_ratio_verdict,
    run_network_escape,
)
from sdn.experiments.network_escape.laws import (
    NetworkLawsConfig,
    NetworkLawsResult,
    run_network_laws,
)
from sdn.experiments.network_escape.measure import (
    MONITOR_SHIFT,
    BasinNoise,
    Prediction,
    measure_basin,
    predicted_escape_steps,
)

__all__ = [
    "DYNAMICS",
    "MONITOR_SHIFT",
    "Basin",
    "BasinNoise",
    "Chains",
    "EscapeStats",
    "ESCAPE_RATIO_CLAIM",
    "NetworkEscapeConfig",
    "NetworkEscapeResult",
    "NetworkLawsConfig",
    "NetworkLawsResult",
    "Prediction",
    "RiseAlong",
    "basin_from_finite_sum",
    "basin_from_network",
    "escape_sde",
    "escape_stats",
    "escape_times",
    "gradient_descent",
    "measure_basin",
    "noise_model",
    "predicted_escape_steps",
    "rescale_layers",
    "run_dynamics",
    "run_network_laws",
    "escape_ratio_verdict",
    "run_network_escape",
]
