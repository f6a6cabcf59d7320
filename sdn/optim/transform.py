"""The transform: a draw of a noise model at `x = w − w̄`, added to the gradient.

`add_state_dependent_noise(key, model)` composes an anchor tracker (`sdn.optim.anchors`),
the model's law (`sdn.noise`) and its draw (``model.sample``); `add_power_law_noise` and
`power_law_sgd` are thin constructors on top, and `sdn.optim.sources` builds the model
from two batch sizes (docs/theory.md §5).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sdn import noise
from sdn._deprecation import warn_deprecated
from sdn.optim._keys import canonical_key, fingerprint, is_key_like
from sdn.optim.anchors import (
    ANCHORS,
    AnchorTracker,
    _stat_dtype,
    accepts_legacy_anchor_keywords,
    anchor_tracker,
)

Array = jax.Array


class StateDependentNoiseState(NamedTuple):
    """State of `add_state_dependent_noise`.

    Attributes:
      count: number of updates so far (int32).
      rng_key: the key of the next step's draw (a typed key of the given impl).
      anchor: the anchor tracker's state (`w̄`, a float32 or wider copy of the params'
        tree); ``()`` when the model does not depend on the state.
    """

    count: Array
    rng_key: Array
    anchor: Any


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


@accepts_legacy_anchor_keywords
def add_state_dependent_noise(
    key: Array | int,
    model: noise.NoiseModel,
    *,
    anchor: str | AnchorTracker | Any = "ema",
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
    model depends on the state (``not model.constant``). It is a tracker of
    `sdn.optim.anchors`, or a shorthand for one:

    - ``ema_anchor(β)``: `w̄_0 = w_0`, `w̄_{k+1} = β w̄_k + (1 − β) w_k` (``"ema"``: `β = 0.99`);
    - ``init_anchor()``: `w̄ = w_0` (``"init"``);
    - ``periodic_anchor(every=N)``: `w̄ = w_{N⌊k/N⌋}` (``"periodic"``: `N = 100`);
    - ``fixed_anchor(w̄)``: that fixed `w̄`, a pytree shaped like the params (or the pytree
      itself).

    The keywords ``ema_decay=`` and ``anchor_every=`` of before 1.0 still work for one
    release (a DeprecationWarning names the tracker to pass instead).

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
      anchor: the anchor tracker, or its shorthand, see above.
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
    rng_key = canonical_key(key)
    if not isinstance(model, noise.NoiseModel):
        raise TypeError(f"model must be an sdn.noise model, got {type(model).__name__}")
    noise.check_increments(increments)
    if increments != "gaussian" and not model.is_gaussian:
        raise ValueError(
            f"increments={increments!r} needs a Gaussian noise model, got {type(model).__name__}"
        )
    tracker = None if model.constant else anchor_tracker(anchor)
    if tracker is None and isinstance(anchor, str) and anchor not in ANCHORS:
        anchor_tracker(anchor)  # the same error for a constant model's unknown name
    anchor_name = anchor if isinstance(anchor, str) else type(anchor).__name__

    def init_fn(params: Any) -> StateDependentNoiseState:
        model.check_state(params)
        count = jnp.zeros([], jnp.int32)
        key_i = jax.random.fold_in(rng_key, fingerprint(params))
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


@accepts_legacy_anchor_keywords
def add_power_law_noise(
    key: Array | int,
    *,
    alpha_g: Any,
    alpha_h: Any,
    alpha_gh: Any = 0.0,
    anchor: str | AnchorTracker | Any = "ema",
    increments: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    r"""`add_state_dependent_noise(key, noise.power_law(α_g, α_H, sigma_gh=α_gH))`.

    `Cov ζ = diag(α_g + 2 α_gH x + α_H x²)`, `x = w − w̄`: `α` are the coefficients of
    the **added** noise, not per-sample moments (for those, see `sdn.optim.from_moments`).
    Each is a scalar or a pytree like the params; the Python number 0 for `α_H` and
    `α_gH` makes the noise state-independent (no anchor, no params needed). The keywords
    are hyperparameters for ``optax.inject_hyperparams`` (schedules included).

    >>> import jax.numpy as jnp
    >>> tx = add_power_law_noise(0, alpha_g=1.0, alpha_h=0.0)
    >>> tx.init(jnp.zeros(2)).anchor
    ()
    """
    return add_state_dependent_noise(
        key, _power_law_model(alpha_g, alpha_h, alpha_gh), anchor=anchor, increments=increments
    )


@accepts_legacy_anchor_keywords
def power_law_sgd(
    key: Array | int,
    learning_rate: optax.ScalarOrSchedule,
    *,
    alpha_g: Any,
    alpha_h: Any,
    alpha_gh: Any = 0.0,
    anchor: str | AnchorTracker | Any = "ema",
    increments: str = "gaussian",
    momentum: float | None = None,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""SGD on gradients with added power-law noise: `w ← w − η (g + ζ)`.

    ``optax.chain(add_power_law_noise(key, alpha_g=…, alpha_h=…), optax.sgd(learning_rate,
    momentum, nesterov))``: `Cov ζ = diag(α_g + 2 α_gH x + α_H x²)`, `x = w − w̄`, with
    `α` the added noise's own coefficients (docs/theory.md §5).

    The order of before 1.0, ``power_law_sgd(learning_rate, key, ...)``, works for one
    release with a DeprecationWarning. It is told from the new order by the types: a key
    is a key array, an integer array or an int; a learning rate is a float, a float array
    or a schedule. When both are ints (``power_law_sgd(0, 1, ...)``) the call is read in
    the new order, ``key=0, learning_rate=1``: write an int learning rate as a float.

    Args:
      key: as in `add_state_dependent_noise`.
      learning_rate: `η`, a scalar or schedule.
      alpha_g, alpha_h, alpha_gh: `α_g ≥ 0`, `α_H ≥ 0`, `α_gH`, see `add_power_law_noise`.
      anchor, increments: see `add_state_dependent_noise`.
      momentum: heavy-ball momentum, or None for plain SGD.
      nesterov: Nesterov momentum.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from sdn.optim import power_law_sgd
      >>> tx = power_law_sgd(0, 0.1, alpha_g=0.0, alpha_h=0.0)
      >>> params = jnp.array([1.0, 2.0])
      >>> updates, _ = tx.update(params, tx.init(params), params)  # grad of |w|²/2
      >>> optax.apply_updates(params, updates)
      Array([0.9, 1.8], dtype=float32)

    References:
      Meng et al., arXiv:2006.13719, 2020. Mori and Ueda, arXiv:2009.13094, 2020.
    """
    if not is_key_like(key) and is_key_like(learning_rate):
        warn_deprecated(
            "sdn.optim.power_law_sgd(learning_rate, key, ...)",
            "sdn.optim.power_law_sgd(key, learning_rate, ...)",
            stacklevel=4,  # past this function and its keyword wrapper
        )
        key, learning_rate = learning_rate, key
    return optax.chain(
        add_power_law_noise(
            key,
            alpha_g=alpha_g,
            alpha_h=alpha_h,
            alpha_gh=alpha_gh,
            anchor=anchor,
            increments=increments,
        ),
        optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov),
    )


class RefittedNoiseState(NamedTuple):
    """State of `add_refitted_noise`: the update count, the next draw's key, and the
    noise model itself (replaced by `refit_noise`)."""

    count: Array
    rng_key: Array
    model: Any


def add_refitted_noise(
    key: Array | int, model: Any, *, increments: str = "gaussian"
) -> optax.GradientTransformationExtraArgs:
    r"""Add the noise of a constant model that lives in the optimizer state.

    The update is `g + ζ`, `ζ = model.sample(key, ·)`, as in `add_state_dependent_noise`
    with a constant model, except that the model is part of the state: the training loop
    can measure the gradient noise at the current parameters every few steps and put a
    model of it in place of the old one with `refit_noise` (``sdn.train.train(...,
    refit=...)`` calls such a function before every chunk of steps). The noise then
    follows the state at the pace of the refits, with whatever structure the model has:
    `noise.empirical` of per-sample gradients keeps the covariance's cross terms,
    `noise.diagonal` their variances only (docs/theory.md §5).

    Args:
      key: a ``jax.random.key``, a raw uint32 key, or an int seed (folded with a
        fingerprint of the params at ``init``, as in `add_state_dependent_noise`).
      model: a constant `sdn.noise` model (``model.constant``), or ``params -> model``,
        called at ``init`` (a placeholder of the right shapes until the first refit).
      increments: ``"gaussian"`` or ``"two_point"``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a `RefittedNoiseState`.

    Raises:
      TypeError: `model` is neither a noise model nor a callable that returns one.
      ValueError: a model that depends on the state or on a measured statistic (use
        `add_state_dependent_noise`), or whose parameters do not fit the params.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from sdn import noise
      >>> tx = add_refitted_noise(0, noise.diagonal(jnp.zeros(2)))
      >>> state = tx.init(jnp.zeros(2))
      >>> bool(jnp.all(tx.update(jnp.ones(2), state)[0] == 1.0))  # zero noise so far
      True
      >>> state = refit_noise(state, noise.diagonal(jnp.array([1.0, 4.0])))
      >>> tx.update(jnp.ones(2), state)[0].shape
      (2,)
    """
    rng_key = canonical_key(key)
    noise.check_increments(increments)

    def check(m: Any) -> noise.NoiseModel:
        if not isinstance(m, noise.NoiseModel):
            raise TypeError(f"model must be an sdn.noise model, got {type(m).__name__}")
        if not m.constant or m.extra_arg is not None:
            raise ValueError(
                f"add_refitted_noise needs a constant noise model (refitted by the loop), "
                f"got {type(m).__name__} that depends on "
                f"{'the state' if not m.constant else m.extra_arg}; use "
                "add_state_dependent_noise"
            )
        if increments != "gaussian" and not m.is_gaussian:
            raise ValueError(
                f"increments={increments!r} needs a Gaussian noise model, got {type(m).__name__}"
            )
        return m

    if isinstance(model, noise.NoiseModel):
        check(model)
    elif not callable(model):
        raise TypeError(f"model must be an sdn.noise model or params -> model, got {model!r}")

    def init_fn(params: Any) -> RefittedNoiseState:
        m = check(model if isinstance(model, noise.NoiseModel) else model(params))
        m.check_state(params)
        key_i = jax.random.fold_in(rng_key, fingerprint(params))
        return RefittedNoiseState(jnp.zeros([], jnp.int32), key_i, m)

    def update_fn(
        updates: Any, state: RefittedNoiseState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, RefittedNoiseState]:
        del params, extra_args
        x = jax.tree.map(lambda g: jnp.zeros(g.shape, _stat_dtype(g.dtype)), updates)
        next_key, draw_key = jax.random.split(state.rng_key)
        zeta = state.model.sample(draw_key, x, increments=increments)
        new_updates = jax.tree.map(lambda g, z: g + z.astype(g.dtype), updates, zeta)
        return new_updates, RefittedNoiseState(
            optax.safe_increment(state.count), next_key, state.model
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def refit_noise(opt_state: Any, model: noise.NoiseModel) -> Any:
    """`opt_state` with `model` in place of the model of every `add_refitted_noise` state.

    The new model must have the old one's type and array shapes (the state is carried
    through compiled loops); its numbers may be traced (call it inside ``jit``/``vmap``).

    Raises:
      ValueError: the state holds no `add_refitted_noise` state, or `model` differs from
        the held one in structure or shapes.
    """
    found = []

    def is_state(node: Any) -> bool:
        return isinstance(node, RefittedNoiseState)

    def swap(node: Any) -> Any:
        if not is_state(node):
            return node
        old_shapes = jax.tree.map(jnp.shape, node.model)
        new_shapes = jax.tree.map(jnp.shape, model)
        if jax.tree.structure(node.model) != jax.tree.structure(model) or (
            jax.tree.leaves(old_shapes) != jax.tree.leaves(new_shapes)
        ):
            raise ValueError(
                f"refit_noise: the new {type(model).__name__} model must match the held "
                f"{type(node.model).__name__} in structure and shapes, got "
                f"{new_shapes} for {old_shapes}"
            )
        found.append(True)
        old_dtypes = [jnp.result_type(a) for a in jax.tree.leaves(node.model)]
        leaves = [jnp.asarray(a).astype(d) for a, d in zip(jax.tree.leaves(model), old_dtypes)]
        return node._replace(model=jax.tree.unflatten(jax.tree.structure(model), leaves))

    out = jax.tree.map(swap, opt_state, is_leaf=is_state)
    if not found:
        raise ValueError("refit_noise: opt_state holds no add_refitted_noise state")
    return out
