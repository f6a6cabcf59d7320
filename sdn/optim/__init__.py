"""Optax transforms that add state-dependent gradient noise (docs/theory.md §5).

Large batches shrink SGD's noise by `1/b`. `add_state_dependent_noise` adds noise back
to the **gradient, before the learning rate**: a draw `ζ` of any `sdn.noise` model
evaluated at `x = w − w̄`, where `w̄` is an anchor that estimates the local minimum, so

    Cov ζ = C(w − w̄)      (the model's covariance; diagonal: `model.variance(x)`)

The transform is three small pieces, each usable alone:

- an **anchor tracker** (`ema_anchor`, `init_anchor`, `periodic_anchor`, `fixed_anchor`):
  ``init(params) -> anchor`` and ``offset(anchor, params, count) -> (x, anchor')``;
- the **model** at `x`: ``model.variance(x)``, the law of the noise (`sdn.noise`);
- the **draw**: ``model.sample(key, x, increments=...)``, the same method `sdn.simulate`
  uses, so the optimizer has no sampling code of its own.

Names: the noise models' `σ_g`, `σ_H` (``sigma_*``) are coefficients of a modelled
covariance (per-sample moments in `from_batch_sizes`, as in `sdn.theory`); the
keyword shorthands `add_power_law_noise` and `power_law_sgd` take the added noise's
own coefficients as `α_g`, `α_H` (``alpha_*``): `Cov ζ = diag(α_g + α_H (w − w̄)²)`.

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
from sdn.optim.replicas import StateDependentNoiseState, assert_independent_replicas, reseed
from sdn.optim.transform import (
    SOURCES,
    add_power_law_noise,
    add_state_dependent_noise,
    from_batch_sizes,
    power_law_sgd,
)

__all__ = [
    "ANCHORS",
    "SOURCES",
    "AnchorTracker",
    "StateDependentNoiseState",
    "add_power_law_noise",
    "add_state_dependent_noise",
    "anchor_tracker",
    "assert_independent_replicas",
    "ema_anchor",
    "fixed_anchor",
    "from_batch_sizes",
    "init_anchor",
    "periodic_anchor",
    "power_law_sgd",
    "reseed",
    "value_grad_and_fluctuation",
]
