"""Optax transforms that add state-dependent gradient noise (docs/theory.md §5).

Large batches shrink SGD's noise by `1/b`. `add_state_dependent_noise` adds noise back
to the **gradient, before the learning rate**: a draw `ζ` of any `sdn.noise` model
evaluated at `x = w − w̄`, where `w̄` is an anchor that estimates the local minimum, so

    Cov ζ = C(w − w̄)      (the model's covariance; diagonal: `model.variance(x)`)

The transform is three small pieces, each usable alone:

- an **anchor tracker** (`ema_anchor(0.99)`, `init_anchor()`, `periodic_anchor(every=100)`,
  `fixed_anchor(w̄)`; the names in `ANCHORS` are shorthand for their defaults), the one
  ``anchor`` argument of every constructor: ``init(params) -> anchor`` and
  ``offset(anchor, params, count) -> (x, anchor')``;
- the **model** at `x`: ``model.variance(x)``, the law of the noise (`sdn.noise`);
- the **draw**: ``model.sample(key, x, increments=...)``, the same method `sdn.simulate`
  uses, so the optimizer has no sampling code of its own.

`from_moments`, `from_gradient_variance` and `from_fluctuation` build the noise that
gives batch-`large` SGD the noise of batch `small`, one constructor per way the
per-sample covariance `C(w)` is known. Its modelled coefficients are `σ_g`, `σ_H`
(``sigma_*``, as in `sdn.theory`); those of the **added** noise in `add_power_law_noise`
and `power_law_sgd` are `α_g`, `α_H` (``alpha_*``): `Cov ζ = diag(α_g + α_H (w − w̄)²)`.

`add_refitted_noise` holds a constant model in its state, which the training loop
replaces with `refit_noise` every few steps (noise measured at the current parameters,
e.g. ``sdn.train.train(..., refit=...)``).

`svag(ℓ)` amplifies the noise of a half-batch gradient `ℓ`-fold, for the test of whether
SGD is in the regime its SDE describes (Li, Malladi & Arora, 2021).

Replicas: the noise key is folded with a fingerprint of the params at ``init``, so
`jax.vmap(tx.init)` over replicas with different params gives independent noise
streams; `reseed` gives each replica a key of its own, and
`assert_independent_replicas` catches replicas that share one (`sdn.train.train` does
both).
"""

from sdn.optim.anchors import (
    ANCHORS,
    AnchorTracker,
    anchor_tracker,
    ema_anchor,
    fixed_anchor,
    init_anchor,
    periodic_anchor,
)
from sdn.optim.fluctuation import value_grad_and_fluctuation
from sdn.optim.replicas import assert_independent_replicas, reseed
from sdn.optim.sources import (
    SOURCES,
    from_batch_sizes,
    from_fluctuation,
    from_gradient_variance,
    from_moments,
)
from sdn.optim.svag import svag
from sdn.optim.transform import (
    RefittedNoiseState,
    StateDependentNoiseState,
    add_power_law_noise,
    add_refitted_noise,
    add_state_dependent_noise,
    power_law_sgd,
    refit_noise,
)

__all__ = [
    "ANCHORS",
    "SOURCES",
    "AnchorTracker",
    "RefittedNoiseState",
    "StateDependentNoiseState",
    "add_power_law_noise",
    "add_refitted_noise",
    "add_state_dependent_noise",
    "anchor_tracker",
    "assert_independent_replicas",
    "ema_anchor",
    "fixed_anchor",
    "from_batch_sizes",
    "from_fluctuation",
    "from_gradient_variance",
    "from_moments",
    "init_anchor",
    "periodic_anchor",
    "power_law_sgd",
    "refit_noise",
    "reseed",
    "svag",
    "value_grad_and_fluctuation",
]
