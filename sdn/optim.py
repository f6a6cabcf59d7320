"""Optax transforms that add state-dependent gradient noise (docs/theory.md §5).

Large batches shrink SGD's noise by `1/b`. These transforms add the missing noise back
to the **gradient, before the learning rate**, as

    ζ = sqrt(α_g + 2 α_gH x + α_H x²) ⊙ ε,   x = w − w̄      (elementwise)

where `w̄` is an anchor that estimates the local minimum and `ε` is the *base noise*:

- ``source="gaussian"``: `ε ~ N(0, I)`, so `Cov ζ = diag(α_g + 2α_gH x + α_H x²)`, the
  diagonal power-law covariance of docs/theory.md §1;
- ``source="grad_variance"``: `ε ~ N(0, diag(v))` with `v` a per-coordinate gradient
  variance estimate passed to ``update`` each step, so the measured `C(w)` drives the
  noise: `Cov ζ = diag(v · (α_g + …))`;
- ``source="grad_fluctuation"``: `ε = f / 2` with `f = g_A − g_B` the difference of two
  gradients passed to ``update`` each step (two halves of a batch, two devices). No
  random draw: the noise has the real covariance structure of the batch, scaled by
  `k = sqrt(α_g)` (times the state-dependent factor when `α_H > 0`).

The variance `α_g + 2α_gH x + α_H x²` is `sdn.noise.power_law_variance`, the same
function the SDE integrators use. `add_state_dependent_noise` is the transform,
`from_batch_sizes` sets its scales from a small and a large batch size, and
`power_law_sgd` chains it with `optax.sgd`.
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
Scale = float | Array | Any | Callable[[Array], Any]
"""A noise scale: a scalar, a pytree matching the params, or a schedule of the count."""

ANCHORS = ("ema", "init", "periodic")
SOURCES = ("gaussian", "grad_variance", "grad_fluctuation")


class StateDependentNoiseState(NamedTuple):
    """State of `add_state_dependent_noise`.

    Attributes:
      count: number of updates so far (int32); schedules are evaluated at it.
      rng_key: the key of the next step's draw (a typed key of the given impl).
      anchor: `w̄`, a float32 (or wider) copy of the params' tree; ``()`` when the
        noise does not depend on the state (`α_H`, `α_gH` both the Python number 0).
    """

    count: Array
    rng_key: Array
    anchor: Any


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


def _is_static_zero(value: Any) -> bool:
    """True for a Python or numpy number equal to 0 (known zero at trace time)."""
    return (
        not callable(value)
        and isinstance(value, int | float | np.number | np.ndarray)
        and np.ndim(value) == 0
        and float(value) == 0.0
    )


def _is_scalar(value: Any) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree.structure(value)) and np.ndim(value) == 0


def _check_scale(name: str, value: Any) -> None:
    """Non-negativity of a concrete scale (scalar or pytree); schedules checked at init."""
    if callable(value) or not is_concrete(value):
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
        arr = np.asarray(leaf)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            where = jax.tree_util.keystr(path)
            raise ValueError(
                f"{name}{where} must be finite and non-negative, got "
                f"{np.array2string(arr, threshold=6, precision=4)}"
            )


def _check_tree_like(name: str, value: Any, params: Any, *, exact_shape: bool) -> None:
    """Raise ValueError unless `value` has the tree structure of `params` and fitting shapes."""
    p_struct, v_struct = jax.tree.structure(params), jax.tree.structure(value)
    if p_struct != v_struct:
        raise ValueError(
            f"{name} is a pytree that does not match the params: its structure is {v_struct}, "
            f"the params' is {p_struct}"
        )
    for (path, v), p in zip(
        jax.tree_util.tree_flatten_with_path(value)[0], jax.tree.leaves(params)
    ):
        vs, ps = np.shape(v), np.shape(p)
        if exact_shape:
            ok = vs == ps
        else:
            try:
                ok = np.broadcast_shapes(vs, ps) == ps
            except ValueError:
                ok = False
        if not ok:
            need = "equal" if exact_shape else "broadcast to"
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} has shape {vs}, which does not {need} the "
                f"shape {ps} of the matching params leaf"
            )


def _per_leaf(name: str, value: Any, treedef: Any, n: int) -> list:
    """A scale as one entry per leaf: broadcast a scalar, flatten a pytree."""
    if _is_scalar(value):
        return [value] * n
    try:
        return treedef.flatten_up_to(value)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{name} is a pytree that does not match the updates ({treedef}); inside "
            f"optax.masked / multi_transform pass a scalar scale"
        ) from err


def _stat_dtype(dtype: Any) -> Any:
    """Statistics (anchor, variance) are kept in float32, or wider for wider params."""
    return jnp.promote_types(dtype, jnp.float32)


def add_state_dependent_noise(
    key: Array | int,
    *,
    sigma_g: Scale,
    sigma_h: Scale,
    sigma_gh: Scale = 0.0,
    anchor: str | Any = "ema",
    ema_decay: float = 0.99,
    anchor_every: int = 100,
    source: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    r"""Add state-dependent Gaussian noise to the gradient (docs/theory.md §5).

    The update is `g + ζ` with, elementwise and with `x = w − w̄`,

        ζ = sqrt(α_g + 2 α_gH x + α_H x²) ⊙ ε

    (`sdn.noise.power_law_variance`, clipped at 0), so for the default Gaussian `ε`

        Cov ζ = diag(α_g + 2 α_gH (w − w̄) + α_H (w − w̄)²).

    Chain it **before** the learning rate (``optax.chain(this, optax.sgd(lr))``): SGD
    then moves by `−η (g + ζ)`, the noise of a batch whose per-step covariance is
    `C(w)/b + Cov ζ`.

    The anchor `w̄` estimates the local minimum:

    - ``"ema"``: `w̄_0 = w_0` (the params given to ``init``), and after each step
      `w̄_{k+1} = β w̄_k + (1 − β) w_k`; step `k` uses `w̄_k`, which excludes `w_k`;
    - ``"init"``: `w̄ = w_0` throughout;
    - ``"periodic"``: `w̄ = w_{N⌊k/N⌋}`, the params copied at the start of every
      `N`-th step (`k = 0, N, 2N, …`; at those steps `x = 0`);
    - a pytree shaped like the params: that fixed `w̄`.

    The base noise `ε` (``source``):

    - ``"gaussian"``: `ε ~ N(0, I)`, one draw per parameter leaf per step (in float32,
      or wider for wider params; the noise is then cast to the gradient's dtype).
    - ``"grad_variance"``: ``update(..., grad_variance=v)`` with `v` a pytree like the
      updates of per-coordinate variance estimates (e.g. the per-sample variance
      `C_jj(w)` from microbatches); `ε ~ N(0, diag(v))`, so `Var ζ_j = v_j (α_g + …)`:
      `α_g` is the factor that multiplies the given variance.
    - ``"grad_fluctuation"``: ``update(..., grad_fluctuation=f)`` with `f = g_A − g_B`;
      `ε = f / 2`, so `ζ = k f / 2` with `k = sqrt(α_g)` when `α_H = α_gH = 0`. If `g_A`,
      `g_B` are means over two independent halves of a batch of size `B`,
      `Cov(f/2) = C(w)/B` with the full (not diagonal) covariance structure. No random
      draw is made.

    Extra arguments that the chosen source does not use are ignored, as optax ignores
    them for every transform in a chain that does not take them. Inside
    ``optax.multi_transform`` / ``optax.masked``, pass ``mask_compatible_extra_args=True``
    so the extra argument is masked like the updates.

    Non-finite gradients pass through unchanged in position (NaN stays NaN, ±inf stays
    ±inf), and the transform itself creates no non-finite value from finite gradients,
    params, anchor, scales and extra arguments; wrap the chain in
    ``optax.apply_if_finite`` to skip such steps. Negative entries of `v` are treated as 0.

    Args:
      key: a ``jax.random.key`` of any implementation (threefry, rbg, …), a raw
        uint32 key, or an int seed.
      sigma_g: `α_g ≥ 0`: a scalar, a pytree matching the params (leaves broadcastable
        to the params' leaves), or a schedule ``count -> scalar``.
      sigma_h: `α_H ≥ 0`, same forms. The Python number 0 (with ``sigma_gh`` also 0)
        makes the noise state-independent: no anchor is stored and ``params`` are not
        needed.
      sigma_gh: `α_gH`, the cross term (keep `α_gH² ≤ α_g α_H`; the variance is clipped
        at 0 anyway). Same forms.
      anchor: ``"ema"``, ``"init"``, ``"periodic"`` or a fixed pytree shaped like the
        params.
      ema_decay: `β ∈ [0, 1]` of the ``"ema"`` anchor.
      anchor_every: `N ≥ 1` of the ``"periodic"`` anchor.
      source: ``"gaussian"``, ``"grad_variance"`` or ``"grad_fluctuation"``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a
      `StateDependentNoiseState`; ``update(updates, state, params=None, **extra_args)``.

    Raises:
      ValueError: negative scales, an unknown anchor or source, scale or anchor pytrees
        that do not match the params (at ``init``), ``params=None`` when the noise
        depends on the state, a missing ``grad_variance``/``grad_fluctuation``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from sdn.optim import add_state_dependent_noise
      >>> tx = optax.chain(
      ...     add_state_dependent_noise(jax.random.key(0), sigma_g=1e-4, sigma_h=1.0),
      ...     optax.sgd(0.1),
      ... )
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.zeros(3)}
      >>> updates, state = jax.jit(tx.update)(grads, state, params)
      >>> updates["w"].shape, int(state[0].count)
      ((3,), 1)

    References:
      Meng, Gong, Chen, Ma and Liu, *Dynamic of Stochastic Gradient Descent with
      State-Dependent Noise*, arXiv:2006.13719, 2020.

      Mori and Ueda, *Improved generalization by noise enhancement*,
      arXiv:2009.13094, 2020.
    """
    rng_key = _canonical_key(key)
    if isinstance(anchor, str) and anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS} or a pytree, got {anchor!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    for name, value in (("sigma_g", sigma_g), ("sigma_h", sigma_h)):
        _check_scale(name, value)
    if not callable(sigma_gh) and is_concrete(sigma_gh):
        for leaf in jax.tree.leaves(sigma_gh):
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"sigma_gh must be finite, got {sigma_gh}")
    if is_concrete(ema_decay):
        if np.ndim(ema_decay) != 0 or not 0.0 <= float(ema_decay) <= 1.0:
            raise ValueError(f"ema_decay must be a scalar in [0, 1], got {ema_decay}")
    if is_concrete(anchor_every):
        n_every = np.asarray(anchor_every)
        if n_every.ndim != 0 or not np.issubdtype(n_every.dtype, np.integer) or n_every < 1:
            raise ValueError(f"anchor_every must be an int >= 1, got {anchor_every!r}")
    state_dependent = not (_is_static_zero(sigma_h) and _is_static_zero(sigma_gh))
    fixed_anchor = not isinstance(anchor, str)
    anchor_name = "pytree" if fixed_anchor else anchor
    if fixed_anchor and is_concrete(anchor):
        for path, leaf in jax.tree_util.tree_flatten_with_path(anchor)[0]:
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"anchor{jax.tree_util.keystr(path)} must be finite")

    def init_fn(params: Any) -> StateDependentNoiseState:
        for name, value in (("sigma_g", sigma_g), ("sigma_h", sigma_h), ("sigma_gh", sigma_gh)):
            if callable(value):
                _check_scale(f"{name}(0)", value(jnp.zeros([], jnp.int32)))
            elif not _is_scalar(value):
                _check_tree_like(name, value, params, exact_shape=False)
        count = jnp.zeros([], jnp.int32)
        # A copy, so that donating the state to a jitted step never deletes the caller's key.
        key_copy = jnp.copy(rng_key)
        if not state_dependent:
            return StateDependentNoiseState(count, key_copy, ())
        if fixed_anchor:
            _check_tree_like("anchor", anchor, params, exact_shape=True)
            start = anchor
        else:
            start = params
        # Copies: donating the state must not delete the caller's params or anchor.
        start = jax.tree.map(
            lambda a, p: jnp.array(a, _stat_dtype(jnp.result_type(p)), copy=True), start, params
        )
        return StateDependentNoiseState(count, key_copy, start)

    def update_fn(
        updates: Any, state: StateDependentNoiseState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, StateDependentNoiseState]:
        if state_dependent and params is None:
            raise ValueError(
                f"params are needed: the noise depends on w − w̄ (sigma_h={sigma_h!r}, "
                f"sigma_gh={sigma_gh!r}, anchor={anchor_name!r}); call "
                "update(updates, state, params)"
            )
        base = None
        if source != "gaussian":
            if extra_args.get(source) is None:
                raise ValueError(
                    f"source={source!r} needs update(updates, state, params, {source}=...), "
                    f"got extra arguments {sorted(extra_args)}"
                )
            base = extra_args[source]
            if jax.tree.structure(base) != jax.tree.structure(updates):
                raise ValueError(
                    f"{source} must have the structure of the updates "
                    f"({jax.tree.structure(updates)}), got {jax.tree.structure(base)}; "
                    "inside optax.multi_transform/masked pass mask_compatible_extra_args=True"
                )

        count = state.count
        leaves, treedef = jax.tree.flatten(updates)
        n = len(leaves)
        scales = [
            _per_leaf(name, value(count) if callable(value) else value, treedef, n)
            for name, value in (("sigma_g", sigma_g), ("sigma_h", sigma_h), ("sigma_gh", sigma_gh))
        ]
        next_key, sample_key = jax.random.split(state.rng_key)
        keys = jax.random.split(sample_key, n)
        if state_dependent:
            w_leaves = treedef.flatten_up_to(params)
            a_leaves = treedef.flatten_up_to(state.anchor)
            if not fixed_anchor and anchor == "periodic":
                refresh = count % anchor_every == 0
                a_leaves = [
                    jnp.where(refresh, w.astype(a.dtype), a) for w, a in zip(w_leaves, a_leaves)
                ]
        else:
            w_leaves = a_leaves = [None] * n
        b_leaves = [None] * n if base is None else treedef.flatten_up_to(base)

        ema = state_dependent and not fixed_anchor and anchor == "ema"
        one_minus_beta = 1 - jnp.asarray(ema_decay, jnp.float32) if ema else None
        # With β ≥ 1/2 known, w − w̄ is recovered from the new anchor, (w − w̄')/β, so
        # the noise reads w̄' and not w̄: the anchor can then be updated in place before
        # the params are, and XLA copies neither (with both reading the old w̄ and w it
        # copied every param and anchor leaf: +60% on the transform's cost in a step).
        from_new = ema and is_concrete(ema_decay) and float(ema_decay) >= 0.5
        out, new_anchor = [], []
        for i, g in enumerate(leaves):
            w, a, b = w_leaves[i], a_leaves[i], b_leaves[i]
            stat = a.dtype if a is not None else _stat_dtype(g.dtype)
            if ema:
                # w̄' = w̄ + (1 − β)(w − w̄) = β w̄ + (1 − β) w.
                new_anchor.append(a + one_minus_beta.astype(stat) * (w.astype(stat) - a))
            if state_dependent:
                if from_new:
                    d = (w.astype(stat) - new_anchor[-1]) / jnp.asarray(ema_decay, stat)
                else:
                    d = w.astype(stat) - a
                # Clipping |x| keeps x² finite and the variance below the dtype's max, so
                # diverging params give huge but finite noise, never inf − inf = NaN.
                lim = math.sqrt(float(jnp.finfo(stat).max)) / 4
                x = jnp.clip(d, -lim, lim)
            else:
                x = jnp.zeros([], stat)
            sg, sh, sgh = (jnp.asarray(s[i], stat) for s in scales)
            var = jnp.minimum(noise.power_law_variance(x, sg, sh, sgh), jnp.finfo(stat).max)
            if source == "grad_fluctuation":
                zeta = jnp.sqrt(var) * (0.5 * b.astype(stat))
            else:
                if source == "grad_variance":
                    var = var * jnp.maximum(b.astype(stat), 0.0)
                # Drawn in float32 even for bfloat16 leaves: bfloat16 normals are coarse
                # and cut off near 2.9σ.
                z = jax.random.normal(keys[i], g.shape, stat)
                zeta = jnp.sqrt(var) * z
            out.append(g + zeta.astype(g.dtype))
        new_updates = jax.tree.unflatten(treedef, out)

        if not state_dependent or fixed_anchor or anchor == "init":
            new_anchor = state.anchor
        elif ema:
            new_anchor = jax.tree.unflatten(treedef, new_anchor)
        else:
            new_anchor = jax.tree.unflatten(treedef, a_leaves)
        return new_updates, StateDependentNoiseState(
            optax.safe_increment(count), next_key, new_anchor
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _times(value: Scale, factor: float) -> Scale:
    """`factor · value` for a scalar, a pytree or a schedule."""
    if callable(value):
        return lambda count: jax.tree.map(lambda v: factor * v, value(count))
    return jax.tree.map(lambda v: factor * v, value)


def from_batch_sizes(
    small: int,
    large: int,
    key: Array | int,
    *,
    source: str = "grad_variance",
    sigma_g: Scale | None = None,
    sigma_h: Scale | None = None,
    sigma_gh: Scale = 0.0,
    kappa: Scale = 0.0,
    fluctuation_batch_size: int | None = None,
    anchor: str | Any = "ema",
    ema_decay: float = 0.99,
    anchor_every: int = 100,
) -> optax.GradientTransformationExtraArgs:
    r"""Noise that gives batch-`large` SGD the gradient noise of batch `small` (docs/theory.md §5).

    SGD with batch `b` has gradient noise of covariance `C(w)/b` (§1). Adding an
    independent `ζ` with `Cov ζ = C(w) r`, `r = 1/b_small − 1/b_large`, makes the
    large-batch gradient's noise `C(w)/b_small`. How `C(w)` is known (``source``):

    - ``"grad_variance"``: pass ``grad_variance=v`` to every ``update``, `v` the
      per-coordinate **per-sample** variance estimate of `C_jj(w)` (e.g. `m · Var` of
      `m`-sample microbatch means). Then `α_g = r`, and `Var ζ_j = r v_j (1 + κ x_j²)`.
    - ``"grad_fluctuation"``: pass ``grad_fluctuation=g_A − g_B``, the means over two
      independent halves of a batch of size `B` (``fluctuation_batch_size``, default
      `large`). Then `Cov((g_A − g_B)/2) = C(w)/B`, so `ζ = k (g_A − g_B)/2` with
      `k² = B r = B/b_small − B/b_large` (`B = b_large`: `k = sqrt(b_large/b_small − 1)`;
      `b` 32 vs 1024 gives `k = 5.57`), times `sqrt(1 + κ x²)` if `κ > 0`.
    - ``"gaussian"``: `C(w)` given by a power-law model of the per-sample covariance,
      `C = σ_g + 2σ_gH x + σ_H x²` (``sigma_g``, ``sigma_h``, ``sigma_gh``), scaled by
      `r`: `α = r σ`.

    Sampling without replacement from `n` samples would multiply by `(n−b)/(n−1)`
    (§1); that factor is left to the caller (it is close to 1 when `b ≪ n`).

    Args:
      small: `b_small ≥ 1`, the batch size whose noise is wanted.
      large: `b_large > b_small`, the batch size trained with.
      key: as in `add_state_dependent_noise`.
      source: ``"grad_variance"``, ``"grad_fluctuation"`` or ``"gaussian"``.
      sigma_g, sigma_h, sigma_gh: the per-sample covariance model (``"gaussian"`` only).
      kappa: `κ ≥ 0`, optional state dependence `1 + κ x²` of the measured noise (the
        two measured sources only).
      fluctuation_batch_size: `B`, the size of the batch split into the two halves.
      anchor, ema_decay, anchor_every: as in `add_state_dependent_noise`.

    Returns:
      ``add_state_dependent_noise`` with the scales above.

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
    if source == "gaussian":
        if sigma_g is None:
            raise ValueError("source='gaussian' needs sigma_g (and sigma_h) of the per-sample C(w)")
        sh = 0.0 if sigma_h is None else sigma_h
        sg, sh, sgh = (_times(v, r) for v in (sigma_g, sh, sigma_gh))
    elif source in ("grad_variance", "grad_fluctuation"):
        if sigma_g is not None or sigma_h is not None:
            raise ValueError(
                f"source={source!r} measures C(w); set its state dependence with kappa, "
                f"not sigma_g={sigma_g!r} / sigma_h={sigma_h!r}"
            )
        _check_scale("kappa", kappa)
        if source == "grad_fluctuation":
            big = large if fluctuation_batch_size is None else fluctuation_batch_size
            if isinstance(big, bool) or not isinstance(big, int | np.integer) or big < 2:
                raise ValueError(f"fluctuation_batch_size must be an int >= 2, got {big!r}")
            r = big * r
        sg = r
        sh = 0.0 if _is_static_zero(kappa) else _times(kappa, r)
        sgh = 0.0
    else:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    return add_state_dependent_noise(
        key,
        sigma_g=sg,
        sigma_h=sh,
        sigma_gh=sgh,
        anchor=anchor,
        ema_decay=ema_decay,
        anchor_every=anchor_every,
        source=source,
    )


def power_law_sgd(
    learning_rate: optax.ScalarOrSchedule,
    key: Array | int,
    *,
    sigma_g: Scale,
    sigma_h: Scale,
    sigma_gh: Scale = 0.0,
    anchor: str | Any = "ema",
    ema_decay: float = 0.99,
    anchor_every: int = 100,
    source: str = "gaussian",
    momentum: float | None = None,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""SGD on gradients with state-dependent noise: `w ← w − η (g + ζ)`.

    ``optax.chain(add_state_dependent_noise(key, ...), optax.sgd(learning_rate,
    momentum, nesterov))``; `ζ` and every argument but the SGD ones are those of
    `add_state_dependent_noise` (docs/theory.md §5).

    Args:
      learning_rate: `η`, a scalar or schedule.
      key: as in `add_state_dependent_noise`.
      sigma_g, sigma_h, sigma_gh, anchor, ema_decay, anchor_every, source: see
        `add_state_dependent_noise`.
      momentum: heavy-ball momentum, or None for plain SGD.
      nesterov: Nesterov momentum.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from sdn.optim import power_law_sgd
      >>> tx = power_law_sgd(0.1, 0, sigma_g=0.0, sigma_h=0.0)
      >>> params = jnp.array([1.0, 2.0])
      >>> updates, _ = tx.update(params, tx.init(params), params)  # grad of |w|²/2
      >>> optax.apply_updates(params, updates)
      Array([0.9, 1.8], dtype=float32)

    References:
      Meng et al., arXiv:2006.13719, 2020. Mori and Ueda, arXiv:2009.13094, 2020.
    """
    return optax.chain(
        add_state_dependent_noise(
            key,
            sigma_g=sigma_g,
            sigma_h=sigma_h,
            sigma_gh=sigma_gh,
            anchor=anchor,
            ema_decay=ema_decay,
            anchor_every=anchor_every,
            source=source,
        ),
        optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov),
    )


__all__ = [
    "StateDependentNoiseState",
    "add_state_dependent_noise",
    "from_batch_sizes",
    "power_law_sgd",
]
