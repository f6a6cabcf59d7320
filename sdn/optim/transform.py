"""The transform: a draw of a noise model at `x = w − w̄`, added to the gradient.

`add_state_dependent_noise(key, model)` composes an anchor tracker (`sdn.optim.anchors`),
the model's law (`sdn.noise`) and its draw (``model.sample``); `add_power_law_noise`,
`power_law_sgd` and `from_batch_sizes` are thin constructors on top (docs/theory.md §5).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdn import noise
from sdn._checks import is_concrete
from sdn.optim.anchors import ANCHORS, _stat_dtype, anchor_tracker
from sdn.optim.replicas import StateDependentNoiseState, _canonical_key, _fingerprint

Array = jax.Array

SOURCES = ("gaussian", "grad_variance", "grad_fluctuation")


def _bind(model: noise.NoiseModel, updates: Any, extra_args: dict) -> noise.NoiseModel:
    """The model for this step: measured models take their statistic from `extra_args`."""
    name = model.extra_arg
    if name is None:
        return model
    value = extra_args.get(name)
    if value is None:
        raise ValueError(
            f"the {type(model).__name__} model needs update(updates, state, params, "
            f"{name}=...), got extra arguments {sorted(extra_args)}"
        )
    if jax.tree.structure(value) != jax.tree.structure(updates):
        raise ValueError(
            f"{name} must have the structure of the updates ({jax.tree.structure(updates)}), "
            f"got {jax.tree.structure(value)}; inside optax.multi_transform/masked pass "
            "mask_compatible_extra_args=True"
        )
    return model.with_data(value)


def add_state_dependent_noise(
    key: Array | int,
    model: noise.NoiseModel,
    *,
    anchor: str | Any = "ema",
    ema_decay: float = 0.99,
    anchor_every: int = 100,
    increments: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    r"""Add noise from `model`, evaluated at `x = w − w̄`, to the gradient (docs/theory.md §5).

    The update is `g + ζ` with `ζ = model.sample(key, x)`, so `Cov ζ = C(x)`: for the
    power law `power_law(σ_g, σ_H)`, `Cov ζ = diag(σ_g + σ_H (w − w̄)²)` (here `σ` are the
    coefficients of the added noise; `power_law_sgd` names them `α_g`, `α_H`).

    Chain it **before** the learning rate (``optax.chain(this, optax.sgd(lr))``): SGD
    then moves by `−η (g + ζ)`, the noise of a batch whose per-step covariance is
    `C(w)/b + Cov ζ`.

    Models (`sdn.noise`): ``isotropic``, ``diagonal`` (variances a pytree like the
    params, or one array), ``power_law`` (coefficients scalars or pytrees like the
    params), ``full`` (params a flat vector), ``alpha_stable`` (heavy-tailed injection:
    `ζ = c S`, `S` standard symmetric α-stable), and the two measured models, which
    take a gradient statistic passed to ``update`` as an optax extra argument:
    ``gradient_variance(α_g, α_H)`` (``grad_variance=v``, `Cov ζ = diag(v (α_g + α_H
    x²))`) and ``fluctuation(α_g, α_H)`` (``grad_fluctuation=g_A − g_B``,
    `ζ = sqrt(α_g + α_H x²) (g_A − g_B)/2`, no random draw). Extra arguments a model does
    not use are ignored; inside ``optax.multi_transform`` / ``optax.masked`` pass
    ``mask_compatible_extra_args=True``.

    The anchor `w̄` (``anchor``) estimates the local minimum; it is stored only when the
    model depends on the state (``not model.constant``):

    - ``"ema"``: `w̄_0 = w_0`, `w̄_{k+1} = β w̄_k + (1 − β) w_k` (`β` = ``ema_decay``);
    - ``"init"``: `w̄ = w_0`;
    - ``"periodic"``: `w̄ = w_{N⌊k/N⌋}` (`N` = ``anchor_every``);
    - a pytree shaped like the params: that fixed `w̄`; or an `AnchorTracker`.

    Noise is drawn in float32 (or wider for wider params) and cast to the gradient's
    dtype. ``increments="two_point"`` draws each standard normal as a random sign `±1`
    (one random bit per parameter): the same covariance, not Gaussian (Gaussian models
    only). Non-finite gradients pass through unchanged in position; the transform
    creates no non-finite value from finite inputs (wrap the chain in
    ``optax.apply_if_finite`` to skip such steps).

    Args:
      key: a ``jax.random.key`` of any implementation, a raw uint32 key, or an int seed.
        ``init`` folds it with a fingerprint of the params, so ``jax.vmap(tx.init)`` over
        replicas with different params gives each its own noise stream.
      model: an `sdn.noise` model, evaluated at `x = w − w̄`.
      anchor, ema_decay, anchor_every: the anchor, see above.
      increments: ``"gaussian"`` or ``"two_point"``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a
      `StateDependentNoiseState`; ``update(updates, state, params=None, **extra_args)``.

    Raises:
      ValueError: an unknown anchor or increments, a model whose parameters do not fit
        the params (at ``init``), ``params=None`` when the noise depends on the state, a
        measured model's missing extra argument.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from sdn import noise
      >>> from sdn.optim import add_state_dependent_noise
      >>> tx = optax.chain(
      ...     add_state_dependent_noise(jax.random.key(0), noise.power_law(1e-4, 1.0)),
      ...     optax.sgd(0.1),
      ... )
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = jax.jit(tx.update)({"w": jnp.zeros(3)}, state, params)
      >>> updates["w"].shape, int(state[0].count)
      ((3,), 1)

    References:
      Meng, Gong, Chen, Ma and Liu, *Dynamic of Stochastic Gradient Descent with
      State-Dependent Noise*, arXiv:2006.13719, 2020.

      Mori and Ueda, *Improved generalization by noise enhancement*,
      arXiv:2009.13094, 2020.
    """
    rng_key = _canonical_key(key)
    if not isinstance(model, noise.NoiseModel):
        raise TypeError(f"model must be an sdn.noise model, got {type(model).__name__}")
    noise.check_increments(increments)
    if increments != "gaussian" and not model.is_gaussian:
        raise ValueError(
            f"increments={increments!r} needs a Gaussian noise model, got {type(model).__name__}"
        )
    tracker = None if model.constant else anchor_tracker(anchor, ema_decay, anchor_every)
    if tracker is None and isinstance(anchor, str) and anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS} or a pytree, got {anchor!r}")
    anchor_name = anchor if isinstance(anchor, str) else "pytree"

    def init_fn(params: Any) -> StateDependentNoiseState:
        model.check_state(params)
        count = jnp.zeros([], jnp.int32)
        key_i = jax.random.fold_in(rng_key, _fingerprint(params))
        return StateDependentNoiseState(
            count, key_i, () if tracker is None else tracker.init(params)
        )

    def update_fn(
        updates: Any, state: StateDependentNoiseState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, StateDependentNoiseState]:
        step_model = _bind(model, updates, extra_args)
        if tracker is None:
            x = jax.tree.map(lambda g: jnp.zeros(g.shape, _stat_dtype(g.dtype)), updates)
            new_anchor = state.anchor
        elif params is None:
            raise ValueError(
                f"params are needed: the noise of {type(model).__name__} depends on w − w̄ "
                f"(anchor={anchor_name!r}); call update(updates, state, params)"
            )
        else:
            x, new_anchor = tracker.offset(state.anchor, params, state.count)
        next_key, draw_key = jax.random.split(state.rng_key)
        zeta = step_model.sample(draw_key, x, increments=increments)
        new_updates = jax.tree.map(lambda g, z: g + z.astype(g.dtype), updates, zeta)
        return new_updates, StateDependentNoiseState(
            optax.safe_increment(state.count), next_key, new_anchor
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _power_law_model(alpha_g: Any, alpha_h: Any, alpha_gh: Any) -> noise.PowerLaw:
    return noise.power_law(alpha_g, alpha_h, sigma_gh=alpha_gh)


def add_power_law_noise(
    key: Array | int,
    *,
    alpha_g: Any,
    alpha_h: Any,
    alpha_gh: Any = 0.0,
    anchor: str | Any = "ema",
    ema_decay: float = 0.99,
    anchor_every: int = 100,
    increments: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    r"""`add_state_dependent_noise(key, noise.power_law(α_g, α_H, sigma_gh=α_gH))`.

    `Cov ζ = diag(α_g + 2 α_gH x + α_H x²)`, `x = w − w̄`: `α` are the coefficients of
    the **added** noise, not per-sample moments (for those, see `from_batch_sizes`).
    Each is a scalar or a pytree like the params; the Python number 0 for `α_H` and
    `α_gH` makes the noise state-independent (no anchor, no params needed). The keywords
    are hyperparameters for ``optax.inject_hyperparams`` (schedules included).

    >>> import jax.numpy as jnp
    >>> tx = add_power_law_noise(0, alpha_g=1.0, alpha_h=0.0)
    >>> tx.init(jnp.zeros(2)).anchor
    ()
    """
    return add_state_dependent_noise(
        key,
        _power_law_model(alpha_g, alpha_h, alpha_gh),
        anchor=anchor,
        ema_decay=ema_decay,
        anchor_every=anchor_every,
        increments=increments,
    )


def from_batch_sizes(
    small: int,
    large: int,
    key: Array | int,
    *,
    source: str = "grad_variance",
    sigma_g: Any = None,
    sigma_h: Any = None,
    sigma_gh: Any = 0.0,
    kappa: Any = 0.0,
    fluctuation_batch_size: int | None = None,
    anchor: str | Any = "ema",
    ema_decay: float = 0.99,
    anchor_every: int = 100,
    increments: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    r"""Noise that gives batch-`large` SGD the gradient noise of batch `small` (docs/theory.md §5).

    SGD with batch `b` has gradient noise of covariance `C(w)/b` (§1). Adding an
    independent `ζ` with `Cov ζ = C(w) r`, `r = 1/b_small − 1/b_large`, makes the
    large-batch gradient's noise `C(w)/b_small`. How `C(w)` is known (``source``):

    - ``"grad_variance"``: pass ``grad_variance=v`` to every ``update``, `v` the
      per-coordinate **per-sample** variance estimate of `C_jj(w)` (e.g. `m · Var` of
      `m`-sample microbatch means). Model ``noise.gradient_variance(r, r κ)``:
      `Var ζ_j = r v_j (1 + κ x_j²)`.
    - ``"grad_fluctuation"``: pass ``grad_fluctuation=g_A − g_B``, the means over two
      independent halves of a batch of size `B` (``fluctuation_batch_size``, default
      `large`). `Cov((g_A − g_B)/2) = C(w)/B`, so the model is
      ``noise.fluctuation(k², k² κ)`` with `k² = B r` (`b` 32 vs 1024: `k = 5.57`).
    - ``"gaussian"``: `C(w)` given by a power-law model of the **per-sample** covariance
      `σ_g + 2σ_gH x + σ_H x²` (``sigma_g``, ``sigma_h``, ``sigma_gh``, moments as in
      `sdn.theory`); model ``noise.power_law(r σ_g, r σ_H, sigma_gh=r σ_gH)``.

    Sampling without replacement from `n` samples would multiply by `(n−b)/(n−1)`
    (§1); that factor is left to the caller (it is close to 1 when `b ≪ n`).

    Args:
      small: `b_small ≥ 1`, the batch size whose noise is wanted.
      large: `b_large > b_small`, the batch size trained with.
      key: as in `add_state_dependent_noise`.
      source: ``"grad_variance"``, ``"grad_fluctuation"`` or ``"gaussian"``.
      sigma_g, sigma_h, sigma_gh: per-sample moments of `C` (``"gaussian"`` only).
      kappa: `κ ≥ 0`, optional state dependence `1 + κ x²` of the measured noise (the
        two measured sources only).
      fluctuation_batch_size: `B`, the size of the batch split into the two halves.
      anchor, ema_decay, anchor_every, increments: as in `add_state_dependent_noise`.

    Returns:
      ``add_state_dependent_noise`` with the model above.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from sdn.optim import from_batch_sizes
      >>> tx = from_batch_sizes(32, 1024, jax.random.key(0), source="grad_fluctuation")
      >>> g = jnp.zeros(2)
      >>> f = jnp.array([2.0, -2.0])  # g_A - g_B
      >>> zeta, _ = tx.update(g, tx.init(g), grad_fluctuation=f)
      >>> [round(float(z), 3) for z in zeta]  # k f / 2 with k = sqrt(31)
      [5.568, -5.568]

    References:
      Meng et al., arXiv:2006.13719, 2020, §5 (noise for large-batch training).
    """
    for name, b in (("small", small), ("large", large)):
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1:
            raise ValueError(f"{name} must be an int >= 1, got {b!r}")
    if large <= small:
        raise ValueError(f"large must exceed small, got small={small}, large={large}")
    r = 1.0 / small - 1.0 / large

    def times(value, factor):
        return jax.tree.map(lambda v: factor * v, value)

    if source == "gaussian":
        if sigma_g is None:
            raise ValueError("source='gaussian' needs sigma_g (and sigma_h) of the per-sample C(w)")
        sh = 0.0 if sigma_h is None else sigma_h
        model = noise.power_law(times(sigma_g, r), times(sh, r), sigma_gh=times(sigma_gh, r))
    elif source in SOURCES:
        if sigma_g is not None or sigma_h is not None:
            raise ValueError(
                f"source={source!r} measures C(w); set its state dependence with kappa, "
                f"not sigma_g={sigma_g!r} / sigma_h={sigma_h!r}"
            )
        for leaf in jax.tree.leaves(kappa):
            if is_concrete(leaf) and not (
                np.all(np.isfinite(leaf)) and np.all(np.asarray(leaf) >= 0)
            ):
                raise ValueError(f"kappa must be finite and non-negative, got {kappa!r}")
        if source == "grad_fluctuation":
            big = large if fluctuation_batch_size is None else fluctuation_batch_size
            if isinstance(big, bool) or not isinstance(big, int | np.integer) or big < 2:
                raise ValueError(f"fluctuation_batch_size must be an int >= 2, got {big!r}")
            r = big * r
        make = noise.gradient_variance if source == "grad_variance" else noise.fluctuation
        model = make(r, kappa if noise.is_static_zero(kappa) else times(kappa, r))
    else:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    return add_state_dependent_noise(
        key,
        model,
        anchor=anchor,
        ema_decay=ema_decay,
        anchor_every=anchor_every,
        increments=increments,
    )


def power_law_sgd(
    learning_rate: optax.ScalarOrSchedule,
    key: Array | int,
    *,
    alpha_g: Any,
    alpha_h: Any,
    alpha_gh: Any = 0.0,
    anchor: str | Any = "ema",
    ema_decay: float = 0.99,
    anchor_every: int = 100,
    increments: str = "gaussian",
    momentum: float | None = None,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""SGD on gradients with added power-law noise: `w ← w − η (g + ζ)`.

    ``optax.chain(add_power_law_noise(key, alpha_g=…, alpha_h=…), optax.sgd(learning_rate,
    momentum, nesterov))``: `Cov ζ = diag(α_g + 2 α_gH x + α_H x²)`, `x = w − w̄`, with
    `α` the added noise's own coefficients (docs/theory.md §5).

    Args:
      learning_rate: `η`, a scalar or schedule.
      key: as in `add_state_dependent_noise`.
      alpha_g, alpha_h, alpha_gh: `α_g ≥ 0`, `α_H ≥ 0`, `α_gH`, see `add_power_law_noise`.
      anchor, ema_decay, anchor_every, increments: see `add_state_dependent_noise`.
      momentum: heavy-ball momentum, or None for plain SGD.
      nesterov: Nesterov momentum.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from sdn.optim import power_law_sgd
      >>> tx = power_law_sgd(0.1, 0, alpha_g=0.0, alpha_h=0.0)
      >>> params = jnp.array([1.0, 2.0])
      >>> updates, _ = tx.update(params, tx.init(params), params)  # grad of |w|²/2
      >>> optax.apply_updates(params, updates)
      Array([0.9, 1.8], dtype=float32)

    References:
      Meng et al., arXiv:2006.13719, 2020. Mori and Ueda, arXiv:2009.13094, 2020.
    """
    return optax.chain(
        add_power_law_noise(
            key,
            alpha_g=alpha_g,
            alpha_h=alpha_h,
            alpha_gh=alpha_gh,
            anchor=anchor,
            ema_decay=ema_decay,
            anchor_every=anchor_every,
            increments=increments,
        ),
        optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov),
    )
