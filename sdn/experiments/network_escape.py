"""Escape from sharp and flat minima of a real network (docs/theory.md §6.5).

From a minimum `w*` several noisy dynamics are run with the same learning rate `η`, all
on flat parameter vectors and vmapped over independent chains:

* ``sgd``: real minibatch SGD at batch size `b` (with replacement);
* ``power_law``: full-batch GD plus Gaussian noise of the *fitted* state-dependent
  model, per coordinate `C_jj(w) = σ_g,j + σ_H,j (w_j − w*_j)²`, divided by `b`;
* ``langevin``: GD plus isotropic constant noise with the trace of `C(w*)/b`;
* ``anisotropic``: GD plus constant noise with the gradient covariance `C(w*)/b` itself
  (Zhu et al. 2019), drawn as `Gᵀz/√(m b)` from `m` centred per-sample gradients `G`;
* ``alpha_stable``: GD plus symmetric α-stable noise, coordinate `j` of scale
  `sqrt(C_jj(w*)/(2b))` (the Gaussian of the same variance at `α = 2`).

Each chain records `L(w_t) − L(w*)` every `record_every` steps. The mean of that over
chains is Zhu et al.'s *escaping efficiency*; the *escape time* of a chain is the first
recorded step at which the loss has risen by more than `ΔL` (chains that never do are
censored at the last step and counted).

The prediction comes from the one-dimensional theory along the top Hessian eigenvector
`v` with eigenvalue `h`: the per-sample variance of `v·∇ℓ_i` at `w* + t v` is fitted by
`σ_g + 2σ_gH t + σ_H t²` (`sdn.train.power_law_fit`), and a loss rise `ΔL` is reached at
`|t| = x_b = sqrt(2ΔL/h)`. `sdn.theory.mean_first_passage_time` gives the mean exit time of
`dx = −h x dt + sqrt(η C(x)/b) dB` from `(−x_b, x_b)` with `C = σ_g + σ_H x²` (the power
law as the dynamics use it, cross term `σ_gH` dropped) and with `C = σ_g` (Langevin,
Kramers' setting). Exits are only seen at recorded steps, so the walls
are moved out by `0.5826 σ(x_b) sqrt(η · record_every)` (the discrete-monitoring shift of
Broadie, Glasserman and Kou 1997), which keeps the prediction right to `O(η)`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sdn import noise as noise_models
from sdn import theory
from sdn.train import noise_along, power_law_fit, top_hessian_eigenvalue

Array = jax.Array

DYNAMICS = ("sgd", "power_law", "langevin", "anisotropic", "alpha_stable")
MONITOR_SHIFT = 0.5826  # −ζ(1/2)/√(2π): the overshoot of a Gaussian random walk


class Basin(NamedTuple):
    """A minimum `w*` and what the dynamics need of its problem, on flat vectors.

    Attributes:
      w_star: `(P,)` the minimum.
      loss: ``w -> L(w)``, the full training loss (regulariser included).
      sample_grad: ``(w, datum) -> (P,)``, one sample's gradient (regulariser included,
        so the sample gradients average to `∇L`); `sample_loss` likewise.
      data: the samples, a pytree with leading axis `n`.
    """

    w_star: Array
    loss: Callable[[Array], Array]
    sample_grad: Callable[[Array, Any], Array]
    sample_loss: Callable[[Array, Any], Array]
    data: Any

    @property
    def n(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])


def basin_from_finite_sum(problem: Any, w_star: Array | None = None) -> Basin:
    """A `Basin` of a finite-sum problem of `sdn.landscapes` (its `minimum` by default)."""
    w = jnp.ravel(problem.minimum if w_star is None else w_star)
    shape = jnp.shape(problem.minimum)

    def sample_loss(w, datum):
        return problem.sample_loss(jnp.reshape(w, shape), datum)

    def loss(w):
        return problem.loss(jnp.reshape(w, shape))

    return Basin(w, loss, jax.grad(sample_loss), sample_loss, problem.data)


def basin_from_network(
    apply: Callable, params: Any, x: Array, y: Array, *, weight_decay: float = 0.0
) -> Basin:
    """A `Basin` of a classifier ``apply(params, x) -> logits`` at `params`, with the
    cross-entropy per sample plus `weight_decay ‖w‖²/2`."""
    flat, unravel = ravel_pytree(params)

    def sample_loss(w, datum):
        xi, yi = datum
        logits = apply(unravel(w), xi[None])[0]
        ce = jax.nn.logsumexp(logits) - logits[yi]
        return ce + 0.5 * weight_decay * jnp.sum(w * w)

    def loss(w):
        return jnp.mean(jax.vmap(sample_loss, (None, 0))(w, (x, y)))

    return Basin(flat, loss, jax.grad(sample_loss), sample_loss, (x, y))


# ---------------------------------------------------------------------------------------
# What is measured at the minimum
# ---------------------------------------------------------------------------------------


class BasinNoise(NamedTuple):
    """The noise of a basin at its minimum and the 1-D theory along its top eigenvector.

    Attributes:
      curvature: `h`, the top Hessian eigenvalue; `direction` its unit eigenvector.
      sigma_g, sigma_gh, sigma_h: `Var_i(v·∇ℓ_i)` at `w*` and the quadratic fit of its
        rise along `v`; `stderr` and `r2_quadratic` are those of the unconstrained
        quadratic fit (`sdn.train.power_law_fit`), for judging the profile's shape.
      coord_sigma_g, coord_sigma_h: `(P,)` the fitted per-coordinate power law.
      centred_grads: `(m, P)` centred per-sample gradients at `w*` (the anisotropic noise).
      loss_star: `L(w*)`.
    """

    curvature: float
    direction: Array
    sigma_g: float
    sigma_gh: float
    sigma_h: float
    stderr: tuple[float, float, float]
    r2_quadratic: float
    coord_sigma_g: Array
    coord_sigma_h: Array
    centred_grads: Array
    loss_star: float


def measure_basin(
    basin: Basin,
    key: Array,
    *,
    n_reference: int = 512,
    n_t: int = 9,  # odd, so that t = 0 is on the grid
    loss_rise: float = 0.05,
    power_iters: int = 100,
) -> BasinNoise:
    """Measure `h`, `v`, the power law along `v` and per coordinate, and `C(w*)`'s factor.

    The per-coordinate fit regresses each `C_jj(w* + t v)` on `t² v_j²` over the same grid
    (`C_jj ≈ σ_g,j + σ_H,j x_j²` along the path `x = t v`); coordinates the grid barely
    moves keep `σ_H,j = 0`. The grid reaches the loss rise `loss_rise` of the quadratic
    model, `|t| ≤ sqrt(2 loss_rise / h)`.
    """
    if n_t < 3 or n_t % 2 == 0:
        raise ValueError(f"n_t must be odd and >= 3 (t = 0 on the grid), got {n_t}")
    k_eig, k_ref = jax.random.split(key)
    eig = jax.jit(lambda w, k: top_hessian_eigenvalue(basin.loss, w, k, num_iters=power_iters))(
        basin.w_star, k_eig
    )
    h = float(eig.value)
    v = eig.vector
    t_max = math.sqrt(2 * loss_rise / max(h, 1e-12))
    ts = np.linspace(-t_max, t_max, n_t)
    prof = noise_along(basin.sample_loss, basin.w_star, basin.data, v, ts, per_coordinate=True)
    fit = power_law_fit(prof.t, prof.directional)
    # σ_g is the variance at w* itself (t = 0 is on the grid); σ_gH and σ_H by least
    # squares of the rise above it, so curvature of the profile far out cannot push the
    # intercept below zero
    sigma_g = float(prof.directional[n_t // 2])
    design = np.stack([2 * prof.t, prof.t**2], axis=1)
    (sigma_gh, sigma_h), *_ = np.linalg.lstsq(design, prof.directional - sigma_g, rcond=None)
    c = np.asarray(prof.per_coordinate, np.float64)  # (T, P)
    u = (prof.t[:, None] * np.asarray(v)[None, :]) ** 2  # (T, P)
    u_c = u - u.mean(axis=0)
    denom = np.sum(u_c**2, axis=0)
    slope = np.where(
        denom > 1e-30, np.sum(u_c * (c - c.mean(axis=0)), axis=0) / np.maximum(denom, 1e-30), 0.0
    )
    coord_sigma_h = np.maximum(slope, 0.0)
    coord_sigma_g = np.maximum(c[n_t // 2], 0.0)  # the variance at t = 0, w*

    n = basin.n
    idx = jax.random.choice(k_ref, n, (min(n_reference, n),), replace=False)
    sub = jax.tree.map(lambda a: a[idx], basin.data)
    g = jax.lax.map(lambda d: basin.sample_grad(basin.w_star, d), sub, batch_size=64)
    return BasinNoise(
        curvature=h,
        direction=v,
        sigma_g=sigma_g,
        sigma_gh=float(sigma_gh),
        sigma_h=float(sigma_h),
        stderr=fit.stderr,
        r2_quadratic=fit.r_squared["quadratic"],
        coord_sigma_g=jnp.asarray(coord_sigma_g, jnp.float32),
        coord_sigma_h=jnp.asarray(coord_sigma_h, jnp.float32),
        centred_grads=g - g.mean(axis=0),
        loss_star=float(basin.loss(basin.w_star)),
    )


class Prediction(NamedTuple):
    """Mean escape steps of the 1-D power-law and Langevin dynamics along `v`."""

    power_law: float
    langevin: float
    wall: float


def predicted_escape_steps(
    noise: BasinNoise,
    *,
    barrier: float,
    learning_rate: float,
    batch_size: int,
    record_every: int = 1,
) -> Prediction:
    """Exact mean escape steps along `v` (quadrature), corrected for discrete steps.

    `x_b = sqrt(2 barrier / h)`; for each dynamic `σ²(x) = (η/b) C(x)`, times `2/(2 − ηh)`
    (the stationary variance of GD's chain `x ← (1 − ηh) x + noise` over the SDE's), and
    the walls move out by `0.5826 σ(±x_b) sqrt(η · record_every)` for the exits missed
    between records; the time `T` becomes `T/η` steps.
    """
    h, eta, b = noise.curvature, learning_rate, batch_size
    xb = math.sqrt(2 * barrier / h)
    dt = eta * record_every
    sg, sh = noise.sigma_g, max(noise.sigma_h, 0.0)

    # GD's discrete drift (1 − ηh) inflates the stationary variance by 2/(2 − ηh) over
    # the SDE's; carry that factor into the diffusion so the prediction is the chain's
    inflation = 2.0 / (2.0 - min(eta * h, 1.0))

    def steps(c):
        def sig2(x):
            return inflation * eta / b * c(x)

        lo = -xb - MONITOR_SHIFT * math.sqrt(float(sig2(-xb)) * dt)
        hi = xb + MONITOR_SHIFT * math.sqrt(float(sig2(xb)) * dt)
        t = theory.mean_first_passage_time(
            lambda x: -h * x, sig2, 0.0, lo, hi, n_grid=8193, rtol=1e-3
        )
        return float(t) / eta

    pld = steps(lambda x: sg + sh * x * x)
    lan = steps(lambda x: sg + 0.0 * x)
    return Prediction(pld, lan, xb)


# ---------------------------------------------------------------------------------------
# The dynamics
# ---------------------------------------------------------------------------------------


def _noise_fn(name: str, noise: BasinNoise, w_star: Array, b: int, alpha: float):
    """``(key, w) -> ζ``, the noise added to the full gradient for one step."""
    sg, sh = noise.coord_sigma_g, noise.coord_sigma_h
    if name == "power_law":
        return lambda k, w: (
            jnp.sqrt((sg + sh * (w - w_star) ** 2) / b) * jax.random.normal(k, w.shape, w.dtype)
        )
    if name == "langevin":
        sd = jnp.sqrt(jnp.sum(sg) / (sg.size * b))
        return lambda k, w: sd * jax.random.normal(k, w.shape, w.dtype)
    if name == "anisotropic":
        g = noise.centred_grads
        m = g.shape[0]
        return lambda k, w: g.T @ jax.random.normal(k, (m,), w.dtype) / jnp.sqrt(m * b)
    if name == "alpha_stable":
        scale = jnp.sqrt(sg / (2 * b))
        model = noise_models.alpha_stable(alpha, 1.0)
        return lambda k, w: scale * model.increments(k, w, 1.0, 1)[0]
    raise ValueError(f"dynamics must be one of {DYNAMICS}, got {name!r}")


def run_dynamics(
    basin: Basin,
    noise: BasinNoise,
    name: str,
    key: Array,
    *,
    learning_rate: float,
    batch_size: int,
    n_chains: int,
    n_steps: int,
    record_every: int = 1,
    alpha: float = 1.5,
) -> np.ndarray:
    """`L(w_t) − L(w*)` every `record_every` steps: `(n_chains, n_steps // record_every)`."""
    eta, b, n = learning_rate, batch_size, basin.n
    w_star = basin.w_star
    grad = jax.grad(basin.loss)
    if name == "sgd":

        def step(w, k):
            idx = jax.random.randint(k, (b,), 0, n)
            batch = jax.tree.map(lambda a: a[idx], basin.data)
            g = jnp.mean(jax.vmap(basin.sample_grad, (None, 0))(w, batch), axis=0)
            return w - eta * g

    else:
        add = _noise_fn(name, noise, w_star, b, alpha)

        def step(w, k):
            return w - eta * (grad(w) + add(k, w))

    n_records = n_steps // record_every

    def chain(k):
        def record(w, kk):
            w = jax.lax.fori_loop(
                0, record_every, lambda i, w: step(w, jax.random.fold_in(kk, i)), w
            )
            return w, basin.loss(w) - noise.loss_star

        _, rise = jax.lax.scan(record, w_star, jax.random.split(k, n_records))
        return rise

    run = jax.jit(lambda keys: jax.lax.map(chain, keys, batch_size=min(n_chains, 256)))
    return np.asarray(run(jax.random.split(key, n_chains)))


class EscapeStats(NamedTuple):
    """First-passage statistics of a set of chains (steps)."""

    mean: float
    stderr: float
    escaped: float  # fraction of chains that escaped within the run
    censored: bool


def escape_times(
    rise: np.ndarray, barrier: float, record_every: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """First step at which `L − L*` exceeds `barrier`, per chain (censored chains get the
    run's length), and whether each chain escaped."""
    above = rise > barrier
    first = np.where(above.any(axis=1), above.argmax(axis=1) + 1, rise.shape[1])
    return first * record_every, above.any(axis=1)


def escape_stats(rise: np.ndarray, barrier: float, record_every: int = 1) -> EscapeStats:
    t, escaped = escape_times(rise, barrier, record_every)
    return EscapeStats(
        float(t.mean()),
        float(t.std(ddof=1) / math.sqrt(t.size)),
        float(escaped.mean()),
        bool(not escaped.all()),
    )


# ---------------------------------------------------------------------------------------
# The experiment: sharp and flat minima of a digits MLP
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkEscapeConfig:
    """Sizes of §6.5. The flat minimum is small-batch SGD's, the sharp one large-batch
    SGD's, from the same initialisation and at the same learning rate (docs/theory.md §5:
    large batches find sharper minima); both fit their training set."""

    n_train: int = 512  # a subset of digits keeps full-batch GD steps cheap
    hidden: tuple[int, ...] = (32,)
    weight_decay: float = 1e-3
    train_steps: int = 4000
    train_learning_rate: float = 0.1
    flat_batch_size: int = 8
    sharp_batch_size: int = 512
    learning_rate: float = 0.5  # η of the escape dynamics
    batch_size: int = 4  # b of SGD and of the noise models
    barrier: float = 0.1  # ΔL: escape when L(w) − L(w*) > ΔL
    n_chains: int = 256
    n_steps: int = 4000
    record_every: int = 10
    alpha: float = 1.5
    dynamics: tuple[str, ...] = DYNAMICS
    seed: int = 0

    @classmethod
    def quick(cls) -> NetworkEscapeConfig:
        return cls(n_train=256, hidden=(16,), train_steps=1500, n_chains=64, n_steps=1000)


@dataclass(frozen=True)
class NetworkEscapeResult:
    """Per minimum: the measured noise and predictions; per (minimum, dynamic): escape."""

    config: NetworkEscapeConfig
    minima: dict = field(default_factory=dict)  # name → dict of measured numbers
    rows: list[dict] = field(default_factory=list)
    efficiency: dict = field(default_factory=dict)  # (minimum, dynamic) → mean rise
    seconds: float = 0.0

    def ratio(self, dynamic: str) -> tuple[float, float]:
        """Measured flat/sharp ratio of mean escape steps and the SE of its log."""
        r = {row["minimum"]: row for row in self.rows if row["dynamics"] == dynamic}
        f, s = r["flat"], r["sharp"]
        ratio = f["mean_steps"] / s["mean_steps"]
        se = math.hypot(f["stderr"] / f["mean_steps"], s["stderr"] / s["mean_steps"])
        return ratio, se

    def verdict(self) -> tuple[str, str]:
        """The claim, and whether SGD's log-ratio lies nearer the power-law prediction than
        Langevin's, with its 95% interval on one side of their midpoint."""
        claim = (
            "SGD escapes the sharp minimum faster than the flat one by a factor closer to "
            "the power-law prediction than to the Langevin prediction"
        )
        if "sgd" not in self.config.dynamics:
            return claim, "not measured (sgd not among the dynamics)"
        ratio, se = self.ratio("sgd")
        pld = self.minima["flat"]["pred_power_law"] / self.minima["sharp"]["pred_power_law"]
        lan = self.minima["flat"]["pred_langevin"] / self.minima["sharp"]["pred_langevin"]
        censored = any(r["censored"] for r in self.rows if r["dynamics"] == "sgd")
        lo, hi = math.log(ratio) - 1.96 * se, math.log(ratio) + 1.96 * se
        mid = 0.5 * (math.log(pld) + math.log(lan))
        pld_side = (lambda x: x > mid) if pld > lan else (lambda x: x < mid)
        text = (
            f"measured {ratio:.2f} (95% CI {math.exp(lo):.2f}–{math.exp(hi):.2f}), "
            f"power law {pld:.2f}, Langevin {lan:.2f}"
        )
        if censored:
            return claim, f"inconclusive: some SGD chains never escaped ({text})"
        if abs(math.log(pld) - math.log(lan)) < 2 * 1.96 * se:
            return (
                claim,
                f"inconclusive at this size: the predictions differ by less than the CI ({text})",
            )
        if pld_side(lo) and pld_side(hi):
            return claim, f"supported: {text}"
        if not pld_side(lo) and not pld_side(hi):
            return claim, f"not supported: {text}"
        return claim, f"inconclusive: the CI spans the midpoint ({text})"

    def table(self) -> str:
        lines = [f"{'minimum':8} {'dynamics':13} {'mean steps':>11} {'± SE':>8} {'escaped':>8}"]
        for r in self.rows:
            lines.append(
                f"{r['minimum']:8} {r['dynamics']:13} {r['mean_steps']:11.1f} "
                f"{r['stderr']:8.1f} {r['escaped']:8.2f}"
            )
        return "\n".join(lines)


def run_network_escape(config: NetworkEscapeConfig | None = None, *, progress: bool = False):
    """Run §6.5 on the digits MLP and return a `NetworkEscapeResult`."""
    import optax

    from sdn.train import MLP, load_digits, train

    cfg = config or NetworkEscapeConfig()
    unknown = set(cfg.dynamics) - set(DYNAMICS)
    if unknown:
        raise ValueError(f"dynamics must be among {DYNAMICS}, got {sorted(unknown)}")
    t0 = time.perf_counter()
    data = load_digits(seed=cfg.seed)
    data = data._replace(x_train=data.x_train[: cfg.n_train], y_train=data.y_train[: cfg.n_train])
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def model_fn(rngs):
        return MLP(x.shape[1], cfg.hidden, data.n_classes, rngs=rngs)

    tx = optax.chain(
        optax.add_decayed_weights(cfg.weight_decay), optax.sgd(cfg.train_learning_rate)
    )
    minima, rows, efficiency = {}, [], {}
    key = jax.random.key(cfg.seed + 1)
    for name, b_train in (("flat", cfg.flat_batch_size), ("sharp", cfg.sharp_batch_size)):
        res = train(
            model_fn,
            data,
            tx,
            steps=cfg.train_steps,
            batch_size=b_train,
            seeds=[cfg.seed],
            progress=progress,
        )
        basin = basin_from_network(
            res.apply, res.seed_params(0), x, y, weight_decay=cfg.weight_decay
        )
        key, k_measure = jax.random.split(key)
        noise = measure_basin(basin, k_measure, loss_rise=cfg.barrier)
        pred = predicted_escape_steps(
            noise,
            barrier=cfg.barrier,
            learning_rate=cfg.learning_rate,
            batch_size=cfg.batch_size,
            record_every=cfg.record_every,
        )
        minima[name] = dict(
            train_accuracy=float(res.train_accuracy[0, -1]),
            test_accuracy=float(res.test_accuracy[0, -1]),
            loss=noise.loss_star,
            curvature=noise.curvature,
            sigma_g=noise.sigma_g,
            sigma_gh=noise.sigma_gh,
            sigma_h=noise.sigma_h,
            r2_quadratic=noise.r2_quadratic,
            pred_power_law=pred.power_law,
            pred_langevin=pred.langevin,
            wall=pred.wall,
        )
        for dyn in cfg.dynamics:
            key, k_run = jax.random.split(key)
            rise = run_dynamics(
                basin,
                noise,
                dyn,
                k_run,
                learning_rate=cfg.learning_rate,
                batch_size=cfg.batch_size,
                n_chains=cfg.n_chains,
                n_steps=cfg.n_steps,
                record_every=cfg.record_every,
                alpha=cfg.alpha,
            )
            st = escape_stats(rise, cfg.barrier, cfg.record_every)
            rows.append(
                dict(
                    minimum=name,
                    dynamics=dyn,
                    mean_steps=st.mean,
                    stderr=st.stderr,
                    escaped=st.escaped,
                    censored=st.censored,
                )
            )
            efficiency[name, dyn] = rise.mean(axis=0)
    return NetworkEscapeResult(cfg, minima, rows, efficiency, time.perf_counter() - t0)
