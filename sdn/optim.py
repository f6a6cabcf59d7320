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

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdn import noise
from sdn._checks import is_concrete

Array = jax.Array

ANCHORS = ("ema", "init", "periodic")
SOURCES = ("gaussian", "grad_variance", "grad_fluctuation")


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


# ----------------------------------------------------------------------------- keys


def _canonical_key(key: Any) -> Array:
    """A typed PRNG key from a typed key of any impl, a raw uint32 key, or an int seed."""
    if isinstance(key, jax.Array | np.ndarray) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single key, got a key array of shape {key.shape}")
        return key
    if isinstance(key, bool):
        raise TypeError("key must be a jax.random.key or an int seed, got a bool")
    if isinstance(key, int | np.integer):
        return jax.random.key(key)
    if isinstance(key, jax.Array | np.ndarray) and jnp.issubdtype(key.dtype, jnp.integer):
        if key.ndim == 0:
            return jax.random.key(key)
        if key.dtype == jnp.uint32 and key.ndim == 1:
            return jax.random.wrap_key_data(key)
        raise ValueError(
            f"key must be a single key or an int seed, got an array of shape {key.shape}"
        )
    raise TypeError(f"key must be a jax.random.key or an int seed, got {type(key).__name__}")


def _fingerprint(params: Any) -> Array:
    """A uint32 hash of the params' bits (position-weighted, so permutations differ)."""
    h = jnp.uint32(2166136261)
    for leaf in jax.tree.leaves(params):
        x = jnp.ravel(jnp.asarray(leaf))
        if x.size == 0:
            continue
        bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
        weights = jnp.arange(x.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
        h = (h ^ jnp.sum(bits * weights, dtype=jnp.uint32)) * jnp.uint32(16777619)
    return h


def _is_noise_state(node: Any) -> bool:
    return isinstance(node, StateDependentNoiseState)


def reseed(opt_state: Any, key: Array | int) -> Any:
    """`opt_state` with a fresh noise key, from `key`, in every noise transform it holds.

    For one replica; ``jax.vmap(reseed)(states, keys)`` gives replica `i` the key
    `keys[i]` (`sdn.train.train` does this for a plain transform, so each seed draws its
    own noise). The `j`-th noise state met gets `fold_in(key, j)`.
    """
    key = _canonical_key(key)
    counter = iter(range(1 << 30))

    def fresh(node):
        if _is_noise_state(node):
            return node._replace(rng_key=jax.random.fold_in(key, next(counter)))
        return node

    return jax.tree.map(fresh, opt_state, is_leaf=_is_noise_state)


def assert_independent_replicas(opt_state: Any) -> None:
    """Raise ValueError if two replicas (leading axis) of a noise state share a key.

    Replicas with one key draw the same noise: K seeds would then be K correlated runs.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sdn import noise
      >>> tx = add_state_dependent_noise(0, noise.isotropic(1.0))
      >>> states = jax.vmap(tx.init)(jnp.zeros((3, 2)))  # equal params, one key
      >>> assert_independent_replicas(states)
      Traceback (most recent call last):
      ...
      ValueError: replicas 0 and 1 share the noise key ...
    """
    states = [n for n in jax.tree.leaves(opt_state, is_leaf=_is_noise_state) if _is_noise_state(n)]
    for state in states:
        keys = state.rng_key
        if keys.ndim == 0:
            continue
        data = np.asarray(jax.random.key_data(keys)).reshape(keys.shape[0], -1)
        seen: dict[bytes, int] = {}
        for i, row in enumerate(data):
            j = seen.setdefault(row.tobytes(), i)
            if j != i:
                raise ValueError(
                    f"replicas {j} and {i} share the noise key of a state-dependent noise "
                    "transform, so they draw the same noise; give each replica its own key "
                    "(tx as key -> transform, or sdn.optim.reseed under jax.vmap)"
                )


# ----------------------------------------------------------------------------- anchors


class AnchorTracker(NamedTuple):
    """How `w̄` follows the params: ``init(params) -> anchor`` and
    ``offset(anchor, params, count) -> (x, new_anchor)`` with `x = w − w̄` (clipped so
    that `x²` stays finite)."""

    init: Callable[[Any], Any]
    offset: Callable[[Any, Any, Array], tuple[Any, Any]]


def _stat_dtype(dtype: Any) -> Any:
    """Statistics (anchor, offsets, draws) are kept in float32, or wider for wider params."""
    return jnp.promote_types(dtype, jnp.float32)


def _copy_like(tree: Any, params: Any) -> Any:
    # Copies: donating the state must not delete the caller's params or anchor.
    return jax.tree.map(
        lambda a, p: jnp.array(a, _stat_dtype(jnp.result_type(p)), copy=True), tree, params
    )


def _clip(d: Array) -> Array:
    # |x| ≤ sqrt(max)/4 keeps x² finite, so diverging params give huge but finite noise,
    # never inf − inf = NaN.
    lim = math.sqrt(float(jnp.finfo(d.dtype).max)) / 4
    return jnp.clip(d, -lim, lim)


def _offsets(anchor: Any, params: Any) -> Any:
    return jax.tree.map(lambda a, w: _clip(w.astype(a.dtype) - a), anchor, params)


def ema_anchor(decay: float = 0.99) -> AnchorTracker:
    """`w̄_0 = w_0`, then `w̄_{k+1} = β w̄_k + (1 − β) w_k`; step `k` uses `w̄_k`.

    With `β ≥ 1/2` known at construction, `x = w − w̄` is read from the new anchor as
    `(w − w̄')/β` (the same number): the anchor can then be updated in place before the
    params are, and XLA copies neither (reading the old `w̄` and `w` copied every param
    and anchor leaf: +60% on the transform's cost in a step).
    """
    if is_concrete(decay) and (np.ndim(decay) != 0 or not 0.0 <= float(decay) <= 1.0):
        raise ValueError(f"ema_decay must be a scalar in [0, 1], got {decay}")
    from_new = is_concrete(decay) and float(decay) >= 0.5

    def init(params):
        return _copy_like(params, params)

    def offset(anchor, params, count):
        def step(a, w):
            return a + (1 - jnp.asarray(decay, a.dtype)) * (w.astype(a.dtype) - a)

        new = jax.tree.map(step, anchor, params)
        if not from_new:
            return _offsets(anchor, params), new
        x = jax.tree.map(
            lambda n, w: _clip((w.astype(n.dtype) - n) / jnp.asarray(decay, n.dtype)), new, params
        )
        return x, new

    return AnchorTracker(init, offset)


def init_anchor() -> AnchorTracker:
    """`w̄ = w_0`, the params given to ``init``, throughout."""
    return AnchorTracker(
        lambda params: _copy_like(params, params), lambda a, p, c: (_offsets(a, p), a)
    )


def periodic_anchor(every: int = 100) -> AnchorTracker:
    """`w̄ = w_{N⌊k/N⌋}`: the params copied at steps `0, N, 2N, …` (where `x = 0`)."""
    if is_concrete(every):
        n = np.asarray(every)
        if n.ndim != 0 or not np.issubdtype(n.dtype, np.integer) or n < 1:
            raise ValueError(f"anchor_every must be an int >= 1, got {every!r}")

    def offset(anchor, params, count):
        refresh = count % every == 0
        a = jax.tree.map(lambda a, w: jnp.where(refresh, w.astype(a.dtype), a), anchor, params)
        return _offsets(a, params), a

    return AnchorTracker(lambda params: _copy_like(params, params), offset)


def fixed_anchor(anchor: Any) -> AnchorTracker:
    """A fixed `w̄`: a pytree with the params' structure and shapes."""
    if is_concrete(anchor):
        for path, leaf in jax.tree_util.tree_flatten_with_path(anchor)[0]:
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"anchor{jax.tree_util.keystr(path)} must be finite")

    def init(params):
        _check_tree_like("anchor", anchor, params)
        return _copy_like(anchor, params)

    return AnchorTracker(init, lambda a, p, c: (_offsets(a, p), a))


def _check_tree_like(name: str, value: Any, params: Any) -> None:
    """Raise ValueError unless `value` has the tree structure and shapes of `params`."""
    p_struct, v_struct = jax.tree.structure(params), jax.tree.structure(value)
    if p_struct != v_struct:
        raise ValueError(
            f"{name} is a pytree that does not match the params: its structure is {v_struct}, "
            f"the params' is {p_struct}"
        )
    for (path, v), p in zip(
        jax.tree_util.tree_flatten_with_path(value)[0], jax.tree.leaves(params)
    ):
        if np.shape(v) != np.shape(p):
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} has shape {np.shape(v)}, which does not "
                f"equal the shape {np.shape(p)} of the matching params leaf"
            )


def anchor_tracker(anchor: str | Any = "ema", ema_decay: float = 0.99, anchor_every: int = 100):
    """The tracker named by `anchor` (``"ema"``, ``"init"``, ``"periodic"``, or a pytree)."""
    if isinstance(anchor, AnchorTracker):
        return anchor
    if isinstance(anchor, str):
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS} or a pytree, got {anchor!r}")
        if anchor == "ema":
            return ema_anchor(ema_decay)
        if anchor == "init":
            return init_anchor()
        return periodic_anchor(anchor_every)
    return fixed_anchor(anchor)


# ----------------------------------------------------------------------------- the transform


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
    if increments != "gaussian" and not model.gaussian:
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
        model = make(r, kappa if noise._static_zero(kappa) else times(kappa, r))
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


# ----------------------------------------------------------------------------- fluctuations


def value_grad_and_fluctuation(
    loss_fn: Callable[..., Array], *, per_example: bool = False
) -> Callable[..., tuple[Array, Any, Any]]:
    """`f(params, *batch) -> (loss, grad, g_A − g_B)` in one vmapped pass over two halves.

    The batch (every array in ``batch``, leading axis `B`, even) is split into its first
    and second halves; one ``vmap`` of ``value_and_grad`` over the two halves gives their
    losses and gradients `g_A`, `g_B` at the cost of one batch gradient (no extra
    forward). Returns the batch loss and gradient (the halves' means) and the
    fluctuation `g_A − g_B`, whose half has covariance `C(w)/B` (docs/theory.md §5): the
    ``grad_fluctuation`` of `noise.fluctuation`.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar`` mean loss of a batch, or with
        ``per_example=True`` ``loss_fn(params, *example) -> scalar`` for one example.
      per_example: whether `loss_fn` takes one example (it is then vmapped and averaged).

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda w, x: jnp.mean((x - w) ** 2) / 2
      >>> f = value_grad_and_fluctuation(loss)
      >>> l, g, d = f(jnp.array(0.0), jnp.array([1.0, 1.0, 3.0, 3.0]))
      >>> float(l), float(g), float(d)
      (2.5, -2.0, 2.0)
    """
    if per_example:

        def half_loss(params, *half):
            return jnp.mean(jax.vmap(lambda *ex: loss_fn(params, *ex))(*half))
    else:
        half_loss = loss_fn

    value_and_grad = jax.value_and_grad(half_loss)

    def both(params, *halves):
        return jax.vmap(lambda *h: value_and_grad(params, *h))(*halves)

    def fn(params: Any, *batch: Any) -> tuple[Array, Any, Any]:
        sizes = {np.shape(x)[0] for x in jax.tree.leaves(batch)}
        if len(sizes) != 1 or next(iter(sizes)) % 2:
            raise ValueError(
                f"batch needs one even leading axis (split into two halves), got {sorted(sizes)}"
            )
        halves = jax.tree.map(lambda x: x.reshape(2, x.shape[0] // 2, *x.shape[1:]), batch)
        losses, grads = both(params, *halves)
        grad = jax.tree.map(lambda g: 0.5 * (g[0] + g[1]), grads)
        fluct = jax.tree.map(lambda g: g[0] - g[1], grads)
        return jnp.mean(losses), grad, fluct

    return fn


__all__ = [
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
