"""The noise-model protocol and the helpers every model shares.

A noise model is a frozen dataclass registered as a JAX pytree (its numbers are leaves,
so a model can be built inside `jit`/`vmap` from traced parameters) and a subclass of
`NoiseModel`, whose methods turn standard increments (drawn by `sdn.noise.increments`)
into the noise term `sqrt(C(w)) dW`; see the package docstring for the interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_broadcastable, check_positive
from sdn._deprecation import warn_deprecated
from sdn.noise.increments import check_increments, leaf_keys, standard_increments

Array = jax.Array


def _per_leaf(name: str, value: Any, treedef: Any) -> list:
    """A model parameter as one entry per leaf of the state: repeat an array, flatten a tree."""
    n = treedef.num_leaves
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(value)):
        return [value] * n
    try:
        return treedef.flatten_up_to(value)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{name} is a pytree that does not match the state's structure {treedef}"
        ) from err


def leafwise(fn: Callable, w: Any, **params: Any) -> Any:
    """`fn(leaf, **params_of_that_leaf)` over the leaves of the state `w`, as a tree like `w`.

    Each parameter is either one array (used for every leaf, broadcast) or a pytree with
    `w`'s structure.
    """
    leaves, treedef = jax.tree.flatten(w)
    cols = {k: _per_leaf(k, v, treedef) for k, v in params.items()}
    out = [fn(x, **{k: c[i] for k, c in cols.items()}) for i, x in enumerate(leaves)]
    return jax.tree.unflatten(treedef, out)


def _dtype(x: Any) -> Any:
    return jnp.result_type(x)


class NoiseModel:
    """Base of the noise models; see the module docstring for the interface.

    Attributes (what a model is; solvers list the ones they need):
      is_gaussian: the noise is `sqrt(C(w))` times Brownian increments (so
        ``increments="two_point"`` may replace them); ``gaussian`` before 1.0.
      diagonal: `sqrt(C(w))` acts coordinate by coordinate and `C_jj` depends on `w_j`
        only (Milstein's case).
      constant: `C` does not depend on `w` (known at trace time).
      stratonovich_convertible: the Itô–Stratonovich drift correction `½ g g'` is known
        (diagonal or constant noise; Heun's case).
      scale_exponent: the SDE multiplies the noise term by `scale ** scale_exponent`:
        `½` for Gaussian noise (`sqrt(η/b)`), `1 − 1/α` for α-stable noise, so that a
        step of length `η` is SGD's jump `η ξ` in both.
      extra_arg: for the measured models, the name of the gradient statistic the
        optimizer passes them each step (``"grad_variance"``, ``"grad_fluctuation"``).
    """

    diagonal: bool = True
    is_gaussian: bool = True
    constant: bool = False
    scale_exponent: Any = 0.5
    extra_arg: str | None = None
    _state_params: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A model written before 1.0 set `gaussian = ...` and overrode `increments`: read
        # them as `is_gaussian` and `block`, with a warning, for one release.
        super().__init_subclass__(**kwargs)
        if "gaussian" in vars(cls) and not isinstance(vars(cls)["gaussian"], property):
            warn_deprecated(f"{cls.__name__}.gaussian", f"{cls.__name__}.is_gaussian")
            cls.is_gaussian = vars(cls)["gaussian"]
            del cls.gaussian
        if "increments" in vars(cls) and "block" not in vars(cls):
            warn_deprecated(f"{cls.__name__}.increments(...)", f"{cls.__name__}.block(...)")
            cls.block = vars(cls)["increments"]
            del cls.increments

    @property
    def gaussian(self) -> bool:
        """Deprecated spelling of `is_gaussian`."""
        warn_deprecated(f"{type(self).__name__}.gaussian", f"{type(self).__name__}.is_gaussian")
        return self.is_gaussian

    @property
    def stratonovich_convertible(self) -> bool:
        return bool(self.diagonal or self.constant)

    def variance(self, w: Any) -> Any:
        raise NotImplementedError

    def covariance(self, w: Array) -> Array:
        """Full `C(w)` for a flat `w` of shape `(d,)` (diagonal models: `diag(variance)`)."""
        return jnp.diag(jnp.ravel(self.variance(w)))

    def std(self, w: Any) -> Any:
        """`sqrt` of the diagonal of `C(w)`, elementwise, so that `std² = variance`."""
        return jax.tree.map(jnp.sqrt, self.variance(w))

    def g_dg(self, w: Array) -> Array:
        """`g g' = ½ ∂C_jj/∂w_j` with `g = sqrt(C_jj)` (diagonal models).

        Computed from `C` directly (a jvp with a vector of ones, which for diagonal noise
        is the diagonal derivative), not by differentiating `sqrt(C)`: finite where
        `C(w) = 0`.
        """
        _, dc = jax.jvp(self.variance, (w,), (jnp.ones_like(w),))
        return 0.5 * dc

    def standard(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Any:
        """Standard increments shaped like the pytree `w` (one key per leaf)."""
        if increments != "gaussian" and not self.is_gaussian:
            check_increments(increments)
            raise ValueError(
                f"increments={increments!r} needs a Gaussian noise model, got {type(self).__name__}"
            )
        leaves, treedef = jax.tree.flatten(w)
        out = [
            standard_increments(k, jnp.shape(x), _dtype(x), dt, increments)
            for k, x in zip(leaf_keys(key, len(leaves)), leaves)
        ]
        return jax.tree.unflatten(treedef, out)

    def sample(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Any:
        """One draw of the noise term `sqrt(C(w)) dW`, shaped like the pytree `w`.

        Its covariance is `C(w) dt` (`dt=None`: `C(w)`). With ``increments="two_point"``
        each standard normal is a random sign: same covariance, not Gaussian.
        """
        return self.diffusion(w, self.standard(key, w, dt, increments))

    def block(
        self, key: Array, w: Array, dt: Array | float, n: int, increments: str = "gaussian"
    ) -> Any:
        """A block of `n` standard increments (`N(0, dt I)` or `±sqrt(dt)`) shaped like `w`,
        on axis 0: the draws of `n` consecutive steps of one path (step `i` is entry `i`)."""
        return self.standard(key, jnp.zeros((n, *jnp.shape(w)), _dtype(w)), dt, increments)

    def increments(
        self, key: Array, w: Array, dt: Array | float, n: int, increments: str = "gaussian"
    ) -> Any:
        """Deprecated spelling of `block` (the keyword `increments=` names the law)."""
        name = type(self).__name__
        warn_deprecated(f"{name}.increments(...)", f"{name}.block(...)")
        return self.block(key, w, dt, n, increments)

    def diffusion(self, w: Any, dw: Any) -> Any:
        """`sqrt(C(w)) dw`, elementwise for diagonal models."""
        return jax.tree.map(jnp.multiply, self.std(w), dw)

    def check_state(self, w: Any) -> None:
        """Raise ValueError if the model's parameters do not fit a state shaped like `w`."""
        leaves, treedef = jax.tree.flatten(w)
        for name in self._state_params:
            for value, x in zip(_per_leaf(name, getattr(self, name), treedef), leaves):
                check_broadcastable(name, value, jnp.shape(x), "w0")


def _check_tree(name: str, value: Any, *, allow_zero: bool = True) -> None:
    for leaf in jax.tree.leaves(value):
        check_positive(name, leaf, allow_zero=allow_zero)


def _as_float_tree(x: Any) -> Any:
    return jax.tree.map(_as_float, x)


def _as_float(x: Any) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def is_static_zero(*values: Any) -> bool:
    """True if every leaf is a Python or NumPy number (or array) equal to 0.

    Decided from the arguments a model is built from, never from JAX arrays: a model
    built from traced (or injected) parameters is state-dependent, whatever their value,
    so that `init` and a jitted `update` agree on the state they carry.
    """
    leaves = jax.tree.leaves(values)
    return all(
        isinstance(v, int | float | np.number | np.ndarray)
        and not isinstance(v, bool)
        and not np.any(np.asarray(v))
        for v in leaves
    )


def _broadcast_like(value: Any, tree: Any) -> Any:
    """`value` as a pytree like `tree`: one array repeated, or the pytree itself."""
    treedef = jax.tree.structure(tree)
    return jax.tree.unflatten(treedef, _per_leaf("alpha", value, treedef))
