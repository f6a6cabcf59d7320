"""Noise that gives batch-`large` SGD the gradient noise of batch `small`, one constructor
per way the per-sample covariance `C(w)` is known (docs/theory.md §5).

SGD with batch `b` has gradient noise of covariance `C(w)/b` (§1). Adding an independent
`ζ` with `Cov ζ = C(w) r`, `r = 1/b_small − 1/b_large`, makes the large-batch gradient's
noise `C(w)/b_small`. `C(w)` comes from

- `from_moments`: a power law of per-sample moments `σ_g + 2σ_gH x + σ_H x²`, known in
  advance (as in `sdn.theory`);
- `from_gradient_variance`: a per-coordinate variance measured every step (``grad_variance``);
- `from_fluctuation`: the difference of two half-batch gradients (``grad_fluctuation``),
  which carries the full covariance structure and needs no random draw.

Sampling without replacement from `n` samples would multiply `C` by `(n−b)/(n−1)` (§1);
that factor is left to the caller (it is close to 1 when `b ≪ n`).
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import numpy as np
import optax

from sdn import noise
from sdn._checks import is_concrete
from sdn._deprecation import warn_deprecated
from sdn.optim.anchors import AnchorTracker, legacy_anchor
from sdn.optim.transform import add_state_dependent_noise

Array = jax.Array

# The `source` names of the deprecated `from_batch_sizes`, with the constructor of each.
SOURCES = ("gaussian", "grad_variance", "grad_fluctuation")


def _missing_variance(small: Any, large: Any) -> float:
    """`r = 1/b_small − 1/b_large`, the per-sample variance the large batch lacks."""
    for name, b in (("small", small), ("large", large)):
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1:
            raise ValueError(f"{name} must be an int >= 1, got {b!r}")
    if large <= small:
        raise ValueError(f"large must exceed small, got small={small}, large={large}")
    return 1.0 / small - 1.0 / large


def _times(value: Any, factor: float) -> Any:
    return jax.tree.map(lambda v: factor * v, value)


def _state_factor(kappa: Any, factor: float) -> Any:
    """`factor · κ`, kept the Python number 0 when `κ` is one (no anchor then)."""
    for leaf in jax.tree.leaves(kappa):
        if is_concrete(leaf) and not (np.all(np.isfinite(leaf)) and np.all(np.asarray(leaf) >= 0)):
            raise ValueError(f"kappa must be finite and non-negative, got {kappa!r}")
    return kappa if noise.is_static_zero(kappa) else _times(kappa, factor)


def from_moments(
    key: Array | int,
    small: int,
    large: int,
    *,
    sigma_g: Any,
    sigma_h: Any,
    sigma_gh: Any = 0.0,
    anchor: str | AnchorTracker | Any = "ema",
    increments: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    r"""Batch-`small` noise for batch-`large` SGD, from per-sample power-law moments.

    `C(w) = σ_g + 2σ_gH x + σ_H x²` per coordinate, `x = w − w̄`, with `σ` the
    **per-sample** moments of the gradient noise (as in `sdn.theory`); the added noise is
    ``noise.power_law(r σ_g, r σ_H, sigma_gh=r σ_gH)``, `r = 1/b_small − 1/b_large`.

    Args:
      key: as in `add_state_dependent_noise`.
      small: `b_small ≥ 1`, the batch size whose noise is wanted.
      large: `b_large > b_small`, the batch size trained with.
      sigma_g, sigma_h, sigma_gh: `σ_g ≥ 0`, `σ_H ≥ 0`, `σ_gH`, scalars or pytrees like
        the params.
      anchor, increments: as in `add_state_dependent_noise`.

    Returns:
      ``add_state_dependent_noise`` with that model.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = from_moments(0, 16, 256, sigma_g=2.0, sigma_h=0.0)
      >>> zeta, _ = tx.update(jnp.zeros(20_000), tx.init(jnp.zeros(20_000)))
      >>> round(float(jnp.var(zeta)) / (2.0 * (1 / 16 - 1 / 256)), 1)  # Var ζ = r σ_g
      1.0

    References:
      Meng et al., arXiv:2006.13719, 2020, §5 (noise for large-batch training).
    """
    r = _missing_variance(small, large)
    model = noise.power_law(_times(sigma_g, r), _times(sigma_h, r), sigma_gh=_times(sigma_gh, r))
    return add_state_dependent_noise(key, model, anchor=anchor, increments=increments)


def from_gradient_variance(
    key: Array | int,
    small: int,
    large: int,
    *,
    kappa: Any = 0.0,
    anchor: str | AnchorTracker | Any = "ema",
    increments: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    r"""Batch-`small` noise for batch-`large` SGD, from a measured per-coordinate variance.

    Pass ``grad_variance=v`` to every ``update``, `v` the per-coordinate **per-sample**
    variance estimate of `C_jj(w)` (e.g. `m · Var` of `m`-sample microbatch means). The
    model is ``noise.gradient_variance(r, r κ)``: `Var ζ_j = r v_j (1 + κ x_j²)`.

    Args:
      key: as in `add_state_dependent_noise`.
      small: `b_small ≥ 1`, the batch size whose noise is wanted.
      large: `b_large > b_small`, the batch size trained with.
      kappa: `κ ≥ 0`, an optional state dependence `1 + κ x²` (0: none, no anchor).
      anchor, increments: as in `add_state_dependent_noise`.

    Returns:
      ``add_state_dependent_noise`` with that model.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = from_gradient_variance(0, 16, 256)
      >>> v = jnp.full(20_000, 3.0)
      >>> zeta, _ = tx.update(jnp.zeros(20_000), tx.init(v), grad_variance=v)
      >>> round(float(jnp.var(zeta)) / (3.0 * (1 / 16 - 1 / 256)), 1)  # Var ζ = r v
      1.0

    References:
      Meng et al., arXiv:2006.13719, 2020, §5 (noise for large-batch training).
    """
    r = _missing_variance(small, large)
    model = noise.gradient_variance(r, _state_factor(kappa, r))
    return add_state_dependent_noise(key, model, anchor=anchor, increments=increments)


def from_fluctuation(
    small: int,
    large: int,
    *,
    fluctuation_batch_size: int | None = None,
    kappa: Any = 0.0,
    anchor: str | AnchorTracker | Any = "ema",
) -> optax.GradientTransformationExtraArgs:
    r"""Batch-`small` noise for batch-`large` SGD, from the batch's own gradient fluctuation.

    Pass ``grad_fluctuation=g_A − g_B`` to every ``update``, the mean gradients of two
    independent halves of a batch of size `B` (``fluctuation_batch_size``, default
    `large`; `sdn.optim.value_grad_and_fluctuation` returns it). `Cov((g_A − g_B)/2) =
    C(w)/B`, so the model is ``noise.fluctuation(k², k² κ)`` with `k² = B r`
    (`b` 32 vs 1024: `k = 5.57`). The noise is a multiple of the fluctuation, not a
    random draw: no key.

    Args:
      small: `b_small ≥ 1`, the batch size whose noise is wanted.
      large: `b_large > b_small`, the batch size trained with.
      fluctuation_batch_size: `B ≥ 2`, the size of the batch split into the two halves.
      kappa: `κ ≥ 0`, an optional state dependence `1 + κ x²` (0: none, no anchor).
      anchor: as in `add_state_dependent_noise`.

    Returns:
      ``add_state_dependent_noise`` with that model.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = from_fluctuation(32, 1024)
      >>> g = jnp.zeros(2)
      >>> f = jnp.array([2.0, -2.0])  # g_A - g_B
      >>> zeta, _ = tx.update(g, tx.init(g), grad_fluctuation=f)
      >>> [round(float(z), 3) for z in zeta]  # k f / 2 with k = sqrt(31)
      [5.568, -5.568]

    References:
      Meng et al., arXiv:2006.13719, 2020, §5 (noise for large-batch training).
    """
    r = _missing_variance(small, large)
    big = large if fluctuation_batch_size is None else fluctuation_batch_size
    if isinstance(big, bool) or not isinstance(big, int | np.integer) or big < 2:
        raise ValueError(f"fluctuation_batch_size must be an int >= 2, got {big!r}")
    model = noise.fluctuation(big * r, _state_factor(kappa, big * r))
    # No draw is made, so the key only seeds the (unused) stream of the state.
    return add_state_dependent_noise(0, model, anchor=anchor)


def _from_batch_sizes_signature(
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
    anchor: str | AnchorTracker | Any = "ema",
    ema_decay: float | None = None,
    anchor_every: int | None = None,
    increments: str = "gaussian",
) -> None:
    """The arguments of `from_batch_sizes` before 1.0."""


_FROM_BATCH_SIZES = inspect.signature(_from_batch_sizes_signature)


def from_batch_sizes(*args: Any, **kwargs: Any) -> optax.GradientTransformationExtraArgs:
    """Deprecated: one constructor per source of `C(w)` replaces it (removed in sdn 2.0).

    ``from_batch_sizes(small, large, key, source=...)`` with ``source="grad_variance"`` is
    ``from_gradient_variance(key, small, large, kappa=...)``; ``"grad_fluctuation"`` is
    ``from_fluctuation(small, large, fluctuation_batch_size=..., kappa=...)``;
    ``"gaussian"`` is ``from_moments(key, small, large, sigma_g=..., sigma_h=...)``. The
    warning names the one for the call's source.
    """
    a = _FROM_BATCH_SIZES.bind(*args, **kwargs).arguments
    source = a.get("source", "grad_variance")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    small, large, key = a["small"], a["large"], a["key"]
    sigma_g, sigma_h, kappa = a.get("sigma_g"), a.get("sigma_h"), a.get("kappa", 0.0)
    increments = a.get("increments", "gaussian")
    new = {
        "gaussian": "sdn.optim.from_moments(key, small, large, sigma_g=..., sigma_h=...)",
        "grad_variance": "sdn.optim.from_gradient_variance(key, small, large)",
        "grad_fluctuation": "sdn.optim.from_fluctuation(small, large)",
    }[source]
    warn_deprecated(f"sdn.optim.from_batch_sizes(..., source={source!r})", new)
    anchor = legacy_anchor(
        "from_batch_sizes", a.get("anchor", "ema"), a.get("ema_decay"), a.get("anchor_every")
    )
    if source == "gaussian":
        if sigma_g is None:
            raise ValueError("source='gaussian' needs sigma_g (and sigma_h) of the per-sample C(w)")
        sigma_h = 0.0 if sigma_h is None else sigma_h
        return from_moments(
            key,
            small,
            large,
            sigma_g=sigma_g,
            sigma_h=sigma_h,
            sigma_gh=a.get("sigma_gh", 0.0),
            anchor=anchor,
            increments=increments,
        )
    if sigma_g is not None or sigma_h is not None:
        raise ValueError(
            f"source={source!r} measures C(w); set its state dependence with kappa, "
            f"not sigma_g={sigma_g!r} / sigma_h={sigma_h!r}"
        )
    if source == "grad_variance":
        return from_gradient_variance(
            key, small, large, kappa=kappa, anchor=anchor, increments=increments
        )
    if increments != "gaussian":
        raise ValueError(f"increments={increments!r} needs a Gaussian noise model, got Fluctuation")
    return from_fluctuation(
        small,
        large,
        fluctuation_batch_size=a.get("fluctuation_batch_size"),
        kappa=kappa,
        anchor=anchor,
    )
