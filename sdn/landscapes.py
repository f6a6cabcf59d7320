"""Loss landscapes with gradients and per-sample structure (docs/theory.md §1, §3, §4).

Two kinds of object live here, all frozen dataclasses registered as JAX pytrees (numeric
parameters are leaves, so a landscape can be passed through `jit` and `vmap`):

* analytic landscapes used by the escape experiments: `quadratic_basin` (absorbing walls),
  `double_well` (smooth, with a saddle) and `sharp_flat_2d` (one sharp and one flat
  minimum). Each has `loss(w)` and `grad(w)` (autodiff) and attributes such as `minimum`,
  `saddle` and `barrier`. The 1-D ones act elementwise on arrays of positions.
* finite-sum problems `L(w) = (1/n) Σ_i ℓ_i(w)`: `finite_sum_quadratic` and
  `digits_logistic`. Each has `data` (a pytree of arrays with leading axis `n`),
  `sample_loss(w, datum)`, `sample_grad(w, datum)`, `loss(w)`, `grad(w)`, `minimum` and
  `gradient_noise_moments(w_star)`, which returns the `σ_g, σ_gH, σ_H` of docs/theory.md §1.
  `sample_grad` and `data` are exactly what `sdn.noise.minibatch` consumes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_int, check_positive, is_concrete, pytree_dataclass

Array = jax.Array

__all__ = [
    "DigitsLogistic",
    "DoubleWell",
    "FiniteSumQuadratic",
    "GradientNoiseMoments",
    "QuadraticBasin",
    "SharpFlat2D",
    "digits_logistic",
    "double_well",
    "finite_sum_quadratic",
    "quadratic_basin",
    "sharp_flat_2d",
]


def _as_float(value: Any) -> Array:
    return jnp.asarray(value, dtype=jnp.result_type(float))


def _elementwise_grad(loss, w: Array) -> Array:
    """Gradient of a separable (elementwise) loss, for scalar or array `w`."""
    return jax.grad(lambda v: jnp.sum(loss(v)))(jnp.asarray(w, dtype=jnp.result_type(float)))


# ---------------------------------------------------------------------------------------
# Analytic landscapes
# ---------------------------------------------------------------------------------------


@pytree_dataclass
class QuadraticBasin:
    """`L(x) = h x²/2` on `(−wall, wall)`, absorbing at both walls (docs/theory.md §4).

    The barrier is the loss at the wall, `ΔL = h wall²/2`; the minimum is at 0.
    """

    curvature: Array
    wall: Array

    @property
    def minimum(self) -> Array:
        return jnp.zeros_like(self.curvature)

    @property
    def barrier(self) -> Array:
        return 0.5 * self.curvature * self.wall**2

    @property
    def bounds(self) -> tuple[Array, Array]:
        """The absorbing walls `(−wall, wall)`."""
        return -self.wall, self.wall

    def loss(self, w: Array) -> Array:
        return 0.5 * self.curvature * jnp.square(w)

    def grad(self, w: Array) -> Array:
        return _elementwise_grad(self.loss, w)


def quadratic_basin(curvature: float, wall: float) -> QuadraticBasin:
    """A quadratic basin `L = h x²/2` with absorbing walls at `±wall` (docs/theory.md §4).

    Args:
      curvature: `h > 0`.
      wall: `x_b > 0`; the barrier is `ΔL = h x_b²/2`.

    Example:
      >>> basin = quadratic_basin(curvature=2.0, wall=1.0)
      >>> float(basin.barrier), float(basin.grad(0.5))
      (1.0, 1.0)
    """
    check_positive("curvature", curvature)
    check_positive("wall", wall)
    return QuadraticBasin(_as_float(curvature), _as_float(wall))


def _sextic_well_coefficients(h_min, h_saddle, barrier):
    """Half width `d` and coefficients of `L(x) = ΔL − h_s x²/2 + c2 x⁴ + c3 x⁶`.

    Solving `L(d) = 0, L'(d) = 0, L''(d) = h_min` with `L''(0) = −h_s` gives
    `d² = 24 ΔL / (h_min + 4 h_s)`, `c2 = (4 h_s − h_min) / (8 d²)`,
    `c3 = (h_min − 2 h_s) / (12 d⁴)`; on `(0, d)` the derivative has no other zero.
    """
    d2 = 24.0 * barrier / (h_min + 4.0 * h_saddle)
    c2 = (4.0 * h_saddle - h_min) / (8.0 * d2)
    c3 = (h_min - 2.0 * h_saddle) / (12.0 * d2**2)
    return jnp.sqrt(d2), c2, c3


def _sextic_well(x, h_min, h_saddle, barrier):
    """Even 1-D well: sextic between the minima `±d`, a confining quartic in `|x| − d` outside.

    Outside, `L = h t²/2 + k3 t³/6 + k3² t⁴/(32 h)` with `t = |x| − d` and `k3` the
    third derivative of the sextic at `d`: `L` is three times differentiable at the minima
    (a jump in the third derivative would put an `O(sqrt(D/ΔL))` error into the Laplace
    asymptotics), and `L' > 0` for `t > 0` because `h + k3 t/2 + k3² t²/(8h) > 0`.
    """
    d, c2, c3 = _sextic_well_coefficients(h_min, h_saddle, barrier)
    x2 = jnp.square(x)
    inner = barrier - 0.5 * h_saddle * x2 + c2 * x2**2 + c3 * x2**3
    k3 = 24.0 * c2 * d + 120.0 * c3 * d**3
    t = jnp.abs(x) - d
    outer = t * t * (0.5 * h_min + t * (k3 / 6.0 + t * k3 * k3 / (32.0 * h_min)))
    return jnp.where(jnp.abs(x) <= d, inner, outer)


@pytree_dataclass
class DoubleWell:
    """Symmetric smooth double well with independent `h_a`, `|h_s|` and `ΔL`.

    Construction: between the minima `±d`, `L(x) = ΔL − h_s x²/2 + c2 x⁴ + c3 x⁶`; the
    three conditions `L(d) = 0, L'(d) = 0, L''(d) = h_a` fix `d² = 24 ΔL/(h_a + 4 h_s)`,
    `c2` and `c3`, and `L'` has no other zero on `(0, d)`. Outside, a quartic in `|x| − d`
    continues `L` with three continuous derivatives and keeps it confining. The saddle
    (a local maximum in 1-D) is at 0, the minima at `±d`; escapes start at `minimum = −d`.
    """

    curvature_min: Array
    curvature_saddle: Array
    barrier: Array

    @property
    def half_width(self) -> Array:
        return _sextic_well_coefficients(self.curvature_min, self.curvature_saddle, self.barrier)[0]

    @property
    def minimum(self) -> Array:
        """The minimum escapes start from, `−d`."""
        return -self.half_width

    @property
    def other_minimum(self) -> Array:
        return self.half_width

    @property
    def saddle(self) -> Array:
        return jnp.zeros_like(self.barrier)

    def loss(self, w: Array) -> Array:
        return _sextic_well(w, self.curvature_min, self.curvature_saddle, self.barrier)

    def grad(self, w: Array) -> Array:
        return _elementwise_grad(self.loss, w)


def double_well(curvature_min: float, curvature_saddle: float, barrier: float) -> DoubleWell:
    """A smooth symmetric double well with curvature `h_a` at the minima, `−h_s` at the saddle.

    See `DoubleWell` for the construction (docs/theory.md §4, the Kramers setting).

    Args:
      curvature_min: `h_a > 0`, the curvature `L''` at both minima.
      curvature_saddle: `h_s > 0`, minus the curvature at the saddle `x = 0`.
      barrier: `ΔL > 0`, the loss at the saddle above the minima.

    Example:
      >>> well = double_well(curvature_min=2.0, curvature_saddle=1.0, barrier=0.5)
      >>> round(float(well.loss(well.saddle) - well.loss(well.minimum)), 6)
      0.5
    """
    check_positive("curvature_min", curvature_min)
    check_positive("curvature_saddle", curvature_saddle)
    check_positive("barrier", barrier)
    return DoubleWell(_as_float(curvature_min), _as_float(curvature_saddle), _as_float(barrier))


def _smoothstep(t):
    t = jnp.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@pytree_dataclass
class SharpFlat2D:
    """2-D landscape with a sharp minimum at `(−d_sharp, 0)` and a flat one at `(d_flat, 0)`.

    `L(x, y) = V(x) + k(x) y²/2`. `V` is the left half of `double_well(h_sharp, h_s, ΔL)`
    for `x < 0` and the right half of `double_well(h_flat, h_s, ΔL)` for `x ≥ 0` (both equal
    `ΔL − h_s x²/2 + O(x⁴)` at 0, so `V` is smooth there). `k(x)` goes from `h_sharp` at the
    sharp minimum to `h_flat` at the flat one along a cubic smoothstep, so the Hessians are
    `h_sharp I` and `h_flat I` at the minima and `diag(−h_s, k(0))` at the saddle `(0, 0)`.
    Both minima sit `ΔL` below the saddle. `w` has shape `(..., 2)`.
    """

    curvature_sharp: Array
    curvature_flat: Array
    curvature_saddle: Array
    barrier: Array

    def _half_widths(self):
        d_sharp = _sextic_well_coefficients(
            self.curvature_sharp, self.curvature_saddle, self.barrier
        )[0]
        d_flat = _sextic_well_coefficients(
            self.curvature_flat, self.curvature_saddle, self.barrier
        )[0]
        return d_sharp, d_flat

    @property
    def sharp_minimum(self) -> Array:
        d_sharp, _ = self._half_widths()
        return jnp.stack([-d_sharp, jnp.zeros_like(d_sharp)], axis=-1)

    @property
    def flat_minimum(self) -> Array:
        _, d_flat = self._half_widths()
        return jnp.stack([d_flat, jnp.zeros_like(d_flat)], axis=-1)

    @property
    def minimum(self) -> Array:
        """The sharp minimum, where escapes start."""
        return self.sharp_minimum

    @property
    def saddle(self) -> Array:
        return jnp.zeros(jnp.shape(self.barrier) + (2,), dtype=jnp.result_type(self.barrier))

    def transverse_curvature(self, x: Array) -> Array:
        """`k(x)`, the curvature across the valley at abscissa `x`."""
        d_sharp, d_flat = self._half_widths()
        t = _smoothstep((x + d_sharp) / (d_sharp + d_flat))
        return self.curvature_sharp + (self.curvature_flat - self.curvature_sharp) * t

    def loss(self, w: Array) -> Array:
        x, y = w[..., 0], w[..., 1]
        v = jnp.where(
            x < 0,
            _sextic_well(x, self.curvature_sharp, self.curvature_saddle, self.barrier),
            _sextic_well(x, self.curvature_flat, self.curvature_saddle, self.barrier),
        )
        return v + 0.5 * self.transverse_curvature(x) * jnp.square(y)

    def grad(self, w: Array) -> Array:
        return _elementwise_grad(self.loss, w)


def sharp_flat_2d(
    curvature_sharp: float = 8.0,
    curvature_flat: float = 1.0,
    curvature_saddle: float = 1.0,
    barrier: float = 0.5,
) -> SharpFlat2D:
    """A 2-D landscape with one sharp and one flat minimum at equal depth (docs/theory.md §4).

    See `SharpFlat2D` for the construction.

    Example:
      >>> land = sharp_flat_2d(curvature_sharp=8.0, curvature_flat=1.0)
      >>> [round(float(v), 6) for v in land.grad(land.flat_minimum)]
      [0.0, 0.0]
    """
    for name, value in [
        ("curvature_sharp", curvature_sharp),
        ("curvature_flat", curvature_flat),
        ("curvature_saddle", curvature_saddle),
        ("barrier", barrier),
    ]:
        check_positive(name, value)
    return SharpFlat2D(
        _as_float(curvature_sharp),
        _as_float(curvature_flat),
        _as_float(curvature_saddle),
        _as_float(barrier),
    )


# ---------------------------------------------------------------------------------------
# Finite-sum problems
# ---------------------------------------------------------------------------------------


class GradientNoiseMoments(NamedTuple):
    """Per-coordinate moments of the per-sample gradients at a minimum (docs/theory.md §1).

    With `g_i = ∇ℓ_i(w*)` and `H_i` the diagonal of `∇²ℓ_i(w*)` (population moments over
    the `n` samples, i.e. divided by `n`): `sigma_g = Var(g_i)`, `sigma_gh = Cov(g_i, H_i)`,
    `sigma_h = Var(H_i)`, so that `C_jj(w* + x) ≈ σ_g + 2 σ_gH x_j + σ_H x_j²`. Each field
    has the structure of the parameters.
    """

    sigma_g: Any
    sigma_gh: Any
    sigma_h: Any


def _moments_from_samples(grads, hess_diag) -> GradientNoiseMoments:
    """Population moments over the leading axis of per-sample gradients and Hessian diagonals."""

    def centre(a):
        return a - jnp.mean(a, axis=0)

    sigma_g = jax.tree.map(lambda g: jnp.mean(jnp.square(centre(g)), axis=0), grads)
    sigma_gh = jax.tree.map(lambda g, h: jnp.mean(centre(g) * centre(h), axis=0), grads, hess_diag)
    sigma_h = jax.tree.map(lambda h: jnp.mean(jnp.square(centre(h)), axis=0), hess_diag)
    return GradientNoiseMoments(sigma_g, sigma_gh, sigma_h)


@pytree_dataclass
class FiniteSumQuadratic:
    """Finite-sum quadratic `ℓ_i(w) = Σ_j h_ij (w_j − c_ij)²/2` (docs/theory.md §1, §3, §4).

    `data = {"curvature": (n, dim), "center": (n, dim)}`; `w` has shape `(dim,)`.
    Everything is exact: the minimum is `w* = Σ_i h_i c_i / Σ_i h_i` per coordinate, and
    with `g_i = h_i (w* − c_i)` the per-sample gradient is `g_i + h_i x` (`x = w − w*`),
    so `C_jj(w) = σ_g + 2 σ_gH x_j + σ_H x_j²` holds exactly.
    """

    data: dict

    @property
    def n(self) -> int:
        return self.data["curvature"].shape[0]

    @property
    def dim(self) -> int:
        return self.data["curvature"].shape[1]

    @property
    def minimum(self) -> Array:
        h, c = self.data["curvature"], self.data["center"]
        return jnp.sum(h * c, axis=0) / jnp.sum(h, axis=0)

    @property
    def hessian(self) -> Array:
        """Diagonal of the full-batch Hessian, `mean_i h_i`, shape `(dim,)`."""
        return jnp.mean(self.data["curvature"], axis=0)

    def sample_loss(self, w: Array, datum: dict) -> Array:
        return 0.5 * jnp.sum(datum["curvature"] * jnp.square(w - datum["center"]))

    def sample_grad(self, w: Array, datum: dict) -> Array:
        return jax.grad(self.sample_loss)(w, datum)

    def loss(self, w: Array) -> Array:
        return jnp.mean(jax.vmap(self.sample_loss, in_axes=(None, 0))(w, self.data))

    def grad(self, w: Array) -> Array:
        return jax.grad(self.loss)(w)

    def gradient_noise_moments(self, w_star: Array | None = None) -> GradientNoiseMoments:
        """`σ_g, σ_gH, σ_H` per coordinate at `w_star` (default: the exact minimum)."""
        w = self.minimum if w_star is None else jnp.asarray(w_star)
        return _jitted_moments(self, w)

    def _moments(self, w: Array) -> GradientNoiseMoments:
        grads = jax.vmap(self.sample_grad, in_axes=(None, 0))(w, self.data)

        def hess_diag(datum):
            return jnp.diagonal(jax.hessian(self.sample_loss)(w, datum))

        return _moments_from_samples(grads, jax.vmap(hess_diag)(self.data))


def finite_sum_quadratic(
    key: Array,
    n: int,
    dim: int = 1,
    curvature: float = 1.0,
    curvature_spread: float = 1.0,
    center_spread: float = 1.0,
) -> FiniteSumQuadratic:
    """Random finite-sum quadratic `ℓ_i = h_i (w − c_i)²/2` per coordinate (docs/theory.md §1, §4).

    `h_i = h u_i` with `u_i ~ Gamma(1/v, scale v)` (mean 1, variance `v`, positive), so that
    `σ_H ≈ h² v`; `c_i ~ N(0, center_spread²)`. Hold `σ_g` fixed across `h` by scaling
    `center_spread ∝ 1/h` (docs/theory.md §4, sharp versus flat).

    Args:
      key: PRNG key.
      n: number of samples, `>= 2`.
      dim: number of coordinates.
      curvature: `h > 0`.
      curvature_spread: `v = Var(u_i) >= 0` (0 gives identical curvatures).
      center_spread: standard deviation of the centres `c_i`, `>= 0`.

    Example:
      >>> prob = finite_sum_quadratic(jax.random.key(0), n=100, curvature=2.0)
      >>> prob.data["curvature"].shape, prob.minimum.shape
      ((100, 1), (1,))
      >>> bool(jnp.allclose(prob.grad(prob.minimum), 0.0, atol=1e-5))
      True
    """
    n = check_int("n", n, minimum=2)
    dim = check_int("dim", dim, minimum=1)
    check_positive("curvature", curvature)
    check_positive("curvature_spread", curvature_spread, allow_zero=True)
    check_positive("center_spread", center_spread, allow_zero=True)
    return _draw_finite_sum_quadratic(key, n, dim, curvature, curvature_spread, center_spread)


@jax.jit(static_argnames=("n", "dim"))
def _draw_finite_sum_quadratic(key, n, dim, curvature, curvature_spread, center_spread):
    dtype = jnp.result_type(float)
    k_u, k_c = jax.random.split(key)
    v = jnp.asarray(curvature_spread, dtype)
    shape_param = 1.0 / jnp.maximum(v, 1e-30)
    u = jax.random.gamma(k_u, shape_param, (n, dim), dtype=dtype) / shape_param
    u = jnp.where(v > 0, u, 1.0)
    centers = center_spread * jax.random.normal(k_c, (n, dim), dtype=dtype)
    return FiniteSumQuadratic({"curvature": curvature * u, "center": centers})


@pytree_dataclass
class DigitsLogistic:
    """Multinomial logistic regression on scikit-learn's digits with L2 penalty.

    `ℓ_i(w) = logsumexp(z_i) − z_{i,y_i} + (λ/2)(|W|² + |b|²)`, `z_i = x_i W + b`, with
    features scaled to `[0, 1]`. `w = {"weight": (64, 10), "bias": (10,)}`; `data =
    {"x": (n, 64), "y": (n,)}`. `minimum` is found at construction by L-BFGS.
    """

    data: dict
    l2: Array
    minimum: dict

    @property
    def n(self) -> int:
        return self.data["x"].shape[0]

    def sample_loss(self, w: dict, datum: dict) -> Array:
        z = datum["x"] @ w["weight"] + w["bias"]
        penalty = (
            0.5 * self.l2 * (jnp.sum(jnp.square(w["weight"])) + jnp.sum(jnp.square(w["bias"])))
        )
        return jax.nn.logsumexp(z) - z[datum["y"]] + penalty

    def sample_grad(self, w: dict, datum: dict) -> dict:
        return jax.grad(self.sample_loss)(w, datum)

    def loss(self, w: dict) -> Array:
        return jnp.mean(jax.vmap(self.sample_loss, in_axes=(None, 0))(w, self.data))

    def grad(self, w: dict) -> dict:
        return jax.grad(self.loss)(w)

    def sample_hessian_diagonal(self, w: dict, datum: dict) -> dict:
        """Diagonal of `∇²ℓ_i`: `x_j² p_k (1 − p_k) + λ` for `W_jk`, `p_k (1 − p_k) + λ` for `b_k`.

        Closed form (the softmax Hessian `diag(p) − p pᵀ` has diagonal `p (1 − p)`).
        """
        p = jax.nn.softmax(datum["x"] @ w["weight"] + w["bias"])
        pq = p * (1.0 - p)
        return {
            "weight": jnp.square(datum["x"])[:, None] * pq[None, :] + self.l2,
            "bias": pq + self.l2,
        }

    def gradient_noise_moments(self, w_star: dict | None = None) -> GradientNoiseMoments:
        """`σ_g, σ_gH, σ_H` per parameter at `w_star` (default: `minimum`), docs/theory.md §1."""
        w = self.minimum if w_star is None else w_star
        return _jitted_moments(self, w)

    def _moments(self, w: dict) -> GradientNoiseMoments:
        grads = jax.vmap(self.sample_grad, in_axes=(None, 0))(w, self.data)
        hess = jax.vmap(self.sample_hessian_diagonal, in_axes=(None, 0))(w, self.data)
        return _moments_from_samples(grads, hess)


@jax.jit
def _jitted_moments(problem, w):
    # problems are pytrees: one compilation per problem type and data shape
    return problem._moments(w)


@jax.jit(static_argnames=("steps",))
def _minimize_digits(problem, steps: int):
    return _lbfgs_minimize(problem.loss, problem.minimum, steps)


def _lbfgs_minimize(loss, params, steps: int):
    import optax

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params


def digits_logistic(l2: float = 1e-3, *, steps: int = 300) -> DigitsLogistic:
    """Logistic regression on scikit-learn's 1797 8×8 digits, minimised by L-BFGS.

    The minimum is `steps` L-BFGS iterations from zero; with `l2 = 1e-3` the full-batch
    gradient norm there is at float32 round-off level.

    Args:
      l2: L2 penalty `λ > 0` (makes the minimum unique).
      steps: L-BFGS iterations.

    Example:
      >>> prob = digits_logistic(steps=50)
      >>> prob.data["x"].shape, prob.minimum["weight"].shape
      ((1797, 64), (64, 10))
    """
    check_positive("l2", l2)
    steps = check_int("steps", steps, minimum=1)
    from sklearn.datasets import load_digits

    digits = load_digits()
    dtype = jnp.result_type(float)
    data = {
        "x": jnp.asarray(digits.data / 16.0, dtype=dtype),
        "y": jnp.asarray(digits.target, dtype=jnp.int32),
    }
    zeros = {"weight": jnp.zeros((64, 10), dtype), "bias": jnp.zeros((10,), dtype)}
    problem = DigitsLogistic(data, jnp.asarray(l2, dtype), zeros)
    w_star = _minimize_digits(problem, steps=steps)
    if is_concrete(w_star) and not all(
        np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(w_star)
    ):
        raise ValueError(f"L-BFGS diverged for l2={l2}, steps={steps}")
    return DigitsLogistic(data, jnp.asarray(l2, dtype), w_star)
