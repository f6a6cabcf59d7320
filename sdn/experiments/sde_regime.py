"""Is SGD in the SDE regime? Li, Malladi & Arora's SVAG test on MNIST-1D (docs/theory.md §5).

For each learning rate `η`, SGD on a half batch of `B/2` (``ℓ = 1``) is set beside SVAG
runs of amplification `ℓ = 2, 4, 8, …` (`sdn.optim.svag`: `ℓK` steps of `η/ℓ` with the
noise amplified `ℓ`-fold), all at the same SDE time `Kη`. As `ℓ → ∞` SVAG converges to
the SDE of SGD on the half batch with weak order 1, so each final metric (test accuracy,
training loss) is `m(ℓ) ≈ m_∞ + c/ℓ`: a line in `1/ℓ`, fitted per seed over the `ℓ ≥ 2`
runs and extrapolated to `1/ℓ = 0`. SGD is in the SDE regime at `η` when its own
metric `m(1)` lies within the interval of that limit. Seeds set the initialization and
the minibatch draws, the same for every `ℓ` and `η`, so the difference `m(1) − m_∞` is
paired over seeds and its interval is a Student-t interval over them.

During the `ℓ = 1` runs every step's batch also gives the unbiased parts of the
gradient noise scale (`GradientStatistics.noise_scale`, McCandlish et al. 2018); their
sums over the run give `B_simple = Σ tr C / Σ ‖∇L‖²`, reported as the ratio
`(B/2) / B_simple` of SGD's batch to it (Li et al.: the linear scaling rule needs
`B ≲ B_simple`).

All `η` and seeds of one `ℓ` run as one vmapped ``lax.scan`` (the learning rate is a
state entry, ``optax.inject_hyperparams``), so a whole experiment compiles once per `ℓ`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats as sps

from sdn import optim
from sdn._checks import check_int
from sdn.experiments.claims import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    REPORTED,
    SUPPORTED,
    Claim,
    Section,
    combine_verdicts,
    outputs,
)
from sdn.train import (
    MLP,
    Dataset,
    evaluate,
    functional_apply,
    init_params,
    load_mnist1d,
    make_train_step,
)

METRICS = ("test_accuracy", "train_loss")


@dataclass(frozen=True)
class SdeRegimeConfig:
    """Sizes of Li et al.'s test; the defaults are the full size (MNIST-1D, MLP 2×256).

    Attributes:
      hidden: the MLP's hidden widths.
      n_train, n_test: MNIST-1D examples (generated, seed `data_seed`).
      batch_size: `B`, even; split into two halves of `B/2`, so `ℓ = 1` is SGD on `B/2`.
      sde_steps: `K`; amplification `ℓ` runs `ℓK` steps, SDE time `Kη` for every `ℓ`.
      learning_rates: the `η` compared.
      ells: the amplifications, `1` and at least two values `≥ 2` (the fit's).
      seeds: `S ≥ 2` seeds (initialization and minibatches, shared by every `ℓ`, `η`).
      acc_tolerance: a departure of test accuracy that matters, as a fraction: by default
        the small/large-batch gap of §6.4 (`PAPER_GAP`), which the SDE should explain.
      loss_tolerance: a departure of training loss that matters, relative to the limit.
      level: the confidence level of the intervals.
    """

    hidden: tuple[int, ...] = (256, 256)
    n_train: int = 4000
    n_test: int = 1000
    batch_size: int = 64
    sde_steps: int = 2000
    learning_rates: tuple[float, ...] = (0.05, 0.2, 0.5, 1.0)
    ells: tuple[int, ...] = (1, 2, 4, 8)
    seeds: int = 5
    acc_tolerance: float = 0.022
    loss_tolerance: float = 0.1
    level: float = 0.95
    data_seed: int = 42

    @classmethod
    def quick(cls) -> SdeRegimeConfig:
        """A smoke run of a few seconds on two CPU cores (too small to tell much)."""
        return cls(
            hidden=(32,),
            n_train=1000,
            n_test=500,
            sde_steps=150,
            learning_rates=(0.05, 1.0),
            ells=(1, 2, 4),
            seeds=4,
        )

    @classmethod
    def full(cls) -> SdeRegimeConfig:
        return cls()


def check_config(cfg: SdeRegimeConfig) -> None:
    """Raise ValueError (or TypeError) naming the field of `cfg` that is unusable."""
    b = check_int("batch_size", cfg.batch_size, minimum=4)
    if b % 2:
        raise ValueError(f"batch_size must be even (two halves), got {b}")
    check_int("sde_steps", cfg.sde_steps)
    check_int("seeds", cfg.seeds, minimum=2)
    for e in cfg.ells:
        check_int("ells entries", e)
    if 1 not in cfg.ells or len(set(cfg.ells)) != len(cfg.ells):
        raise ValueError(f"ells must hold 1 and distinct values, got {cfg.ells!r}")
    if sum(e >= 2 for e in cfg.ells) < 2:
        raise ValueError(f"ells needs at least two values >= 2 to extrapolate, got {cfg.ells!r}")
    lrs = cfg.learning_rates
    if not lrs or not all(isinstance(x, int | float) and math.isfinite(x) and x > 0 for x in lrs):
        raise ValueError(f"learning_rates must be positive finite numbers, got {lrs!r}")
    for name in ("acc_tolerance", "loss_tolerance"):
        v = getattr(cfg, name)
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if not 0 < cfg.level < 1:
        raise ValueError(f"level must be in (0, 1), got {cfg.level!r}")


# --------------------------------------------------------------------------- extrapolation


class LimitComparison(NamedTuple):
    """SGD (`ℓ = 1`) against the `ℓ → ∞` limit of one metric, over `S` seeds.

    `limit` is the mean over seeds of each seed's intercept of the line `a + c/ℓ` fitted
    to its `ℓ ≥ 2` values, `slope` the mean `c`; `diff = m(1) − limit` with its standard
    error over seeds (paired) and the Student-t interval `[lower, upper]` at the level
    asked for. A `_se` is the standard error of the mean over seeds.
    """

    sgd: float
    sgd_se: float
    limit: float
    limit_se: float
    slope: float
    diff: float
    diff_se: float
    lower: float
    upper: float


def compare_with_limit(
    ells: Sequence[int], values: np.ndarray, *, level: float = 0.95
) -> LimitComparison:
    """Extrapolate a metric linearly in `1/ℓ` to `1/ℓ = 0` and compare `ℓ = 1` with it.

    Args:
      ells: the amplifications, one of them 1 and at least two `≥ 2`.
      values: `(S, len(ells))`, the metric of seed `s` at `ells[j]`.
      level: the confidence level of the interval of `m(1) − m_∞`.

    Returns:
      A `LimitComparison`; non-finite when a value is.

    Example:
      >>> import numpy as np
      >>> ells = (1, 2, 4)
      >>> v = np.array([[3.0, 2.0, 1.5], [3.2, 2.1, 1.6]])  # 1 + 2/ℓ, seed offsets
      >>> c = compare_with_limit(ells, v)
      >>> round(c.limit, 6), round(c.slope, 6), round(c.diff, 6)
      (1.05, 2.0, 2.05)
    """
    ells = np.asarray(ells, np.float64)
    v = np.asarray(values, np.float64)
    if v.ndim != 2 or v.shape[1] != ells.size or v.shape[0] < 2:
        raise ValueError(f"values must be (seeds >= 2, {ells.size}), got shape {v.shape}")
    one = np.flatnonzero(ells == 1)
    fit = ells >= 2
    if one.size != 1 or fit.sum() < 2:
        raise ValueError(f"ells must hold 1 once and two values >= 2, got {ells.tolist()}")
    design = np.stack([np.ones(fit.sum()), 1.0 / ells[fit]], axis=1)
    coef = np.linalg.pinv(design) @ v[:, fit].T  # (2, S): intercept, slope per seed
    sgd = v[:, one[0]]
    diffs = sgd - coef[0]
    s = v.shape[0]
    t = float(sps.t.ppf(0.5 + level / 2, s - 1))

    def se(x):
        return float(np.std(x, ddof=1) / math.sqrt(s))

    d, d_se = float(diffs.mean()), se(diffs)
    return LimitComparison(
        float(sgd.mean()),
        se(sgd),
        float(coef[0].mean()),
        se(coef[0]),
        float(coef[1].mean()),
        d,
        d_se,
        d - t * d_se,
        d + t * d_se,
    )


def agreement_verdict(lower: float, upper: float, tolerance: float) -> tuple[str, str]:
    """Verdict on "`ℓ = 1` agrees with the SDE limit" from the interval of `m(1) − m_∞`.

    Not supported when the interval excludes 0 (SGD departs from its SDE); supported when
    it lies within `±tolerance` (no departure of the size that matters); inconclusive at
    this size when it holds both 0 and `±tolerance` (the run lacks the power). The logic
    of `effect_verdict`, for a claim of no effect.

    Example:
      >>> agreement_verdict(-0.5, 0.5, 1.0)[0], agreement_verdict(0.2, 0.9, 1.0)[0]
      (<Verdict.SUPPORTED: 'supported'>, <Verdict.NOT_SUPPORTED: 'not supported'>)
    """
    if not all(math.isfinite(x) for x in (lower, upper, tolerance)):
        return INCONCLUSIVE, "not measurable in this run (a non-finite estimate)"
    band = f"the interval [{lower:.3g}, {upper:.3g}]"
    if lower > 0 or upper < 0:
        mid = (lower + upper) / 2
        size = "beyond" if abs(mid) >= tolerance else "within"
        return NOT_SUPPORTED, f"{band} excludes 0 (estimate {mid:+.3g}, {size} ±{tolerance:.3g})"
    if -tolerance < lower and upper < tolerance:
        return SUPPORTED, f"{band} lies within ±{tolerance:.3g}"
    return INCONCLUSIVE, f"{band} holds both 0 and a departure of ±{tolerance:.3g}"


# --------------------------------------------------------------------------- the runs


def seed_keys(seeds: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """Per-seed (initialization, minibatch) keys, split from ``jax.random.key(seed)`` as
    `sdn.train.train` splits them."""
    keys = jax.vmap(lambda k: jax.random.split(k, 3))(jnp.stack([jax.random.key(s) for s in seeds]))
    return keys[:, 0], keys[:, 1]


def _tx(ell: int, learning_rate) -> optax.GradientTransformation:
    return optax.chain(
        optim.svag(float(ell)), optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate)
    )


def run_ell(cfg: SdeRegimeConfig, data: Dataset, ell: int, *, noise_scale: bool = False) -> dict:
    """Train every (learning rate, seed) pair at amplification `ℓ` for `ℓK` steps.

    Replica `(i, s)` starts from seed `s`'s initialization and draws seed `s`'s minibatches
    (`B` with replacement per step, split into halves; a step key split off the seed's
    minibatch key each step), with ``chain(svag(ℓ), sgd(η_i))``.

    Returns:
      A dict of `(E, S)` arrays (`E` learning rates, `S` seeds): ``test_accuracy``,
      ``test_loss``, ``train_accuracy``, ``train_loss`` at the end, ``steps`` (the
      optimizer's own count), the final ``params`` (leaves `(E, S, …)`), and with
      `noise_scale` ``trace`` and ``grad_norm_sq``, `(E, S, ℓK)` per step.
    """
    lrs = jnp.asarray(cfg.learning_rates, jnp.float32)
    n_e, seeds = lrs.size, tuple(range(cfg.seeds))
    k_init, k_data = seed_keys(seeds)
    in_features = int(np.prod(data.input_shape))
    graphdef, params = init_params(
        lambda rngs: MLP(in_features, cfg.hidden, data.n_classes, rngs=rngs), k_init
    )
    apply = functional_apply(graphdef)

    def tile(a):  # (S, …) → (E·S, …): every learning rate from every seed's start
        return jnp.broadcast_to(a[None], (n_e, *a.shape)).reshape(n_e * a.shape[0], *a.shape[1:])

    params = jax.tree.map(tile, params)
    keys = tile(k_data)
    rates = jnp.repeat(lrs, cfg.seeds)
    opt_state = jax.vmap(lambda lr, p: _tx(ell, lr).init(p))(rates, params)
    step = make_train_step(
        apply,
        _tx(ell, 1.0),  # the rate itself is read from each replica's state
        cfg.batch_size,
        microbatches=2,
        extra_args=("grad_fluctuation",),
        with_noise_scale=noise_scale,
    )
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xt, yt = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    n_steps = ell * cfg.sde_steps

    def one(p, s, key):
        def body(carry, _):
            p, s, key = carry
            key, k = jax.random.split(key)
            out = step(p, s, k, x, y)
            scale = (out[3].trace, out[3].grad_norm_sq) if noise_scale else ()
            return (out[0], out[1], key), scale

        (p, s, _), scale = jax.lax.scan(body, (p, s, key), None, length=n_steps)
        metrics = (*evaluate(apply, p, x, y), *evaluate(apply, p, xt, yt))
        return p, s[1].count, metrics, scale

    p, count, metrics, scale = jax.jit(jax.vmap(one))(params, opt_state, keys)

    def grid(a):
        a = np.asarray(a)
        return a.reshape(n_e, cfg.seeds, *a.shape[1:])

    out = dict(
        train_loss=grid(metrics[0]),
        train_accuracy=grid(metrics[1]),
        test_loss=grid(metrics[2]),
        test_accuracy=grid(metrics[3]),
        steps=grid(count),
        params=jax.tree.map(grid, p),
    )
    if noise_scale:
        out["trace"], out["grad_norm_sq"] = grid(scale[0]), grid(scale[1])
    return out


@dataclass(frozen=True)
class SdeRegimeResult:
    """Per run (`runs`: one row per `η`, `ℓ`, seed), per `η` and metric (`comparisons`),
    and per `η` the noise scale of the `ℓ = 1` runs (`noise`)."""

    config: SdeRegimeConfig
    runs: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    noise: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        cfg = self.config
        lines = [
            f"ℓ = {', '.join(map(str, cfg.ells))} at SDE time Kη (K = {cfg.sde_steps}), "
            f"B = {cfg.batch_size} in halves of {cfg.batch_size // 2}, {cfg.seeds} seeds; "
            f"limit: line in 1/ℓ over ℓ ≥ 2; {100 * cfg.level:g}% intervals over seeds",
            f"{'η':>6} {'metric':14} {'ℓ = 1':>16} {'ℓ → ∞':>16} {'difference [interval]':>30}",
        ]
        for c in self.comparisons:
            k = 100 if c["metric"] == "test_accuracy" else 1
            lines.append(
                f"{c['learning_rate']:6g} {c['metric']:14} "
                f"{k * c['sgd']:8.3f} ± {k * c['sgd_se']:5.3f} "
                f"{k * c['limit']:8.3f} ± {k * c['limit_se']:5.3f} "
                f"{k * c['diff']:+8.3f} [{k * c['lower']:+.3f}, {k * c['upper']:+.3f}]"
            )
        lines.append(f"{'η':>6} {'B_simple':>24} {'(B/2)/B_simple':>24}")
        for n in self.noise:
            lines.append(
                f"{n['learning_rate']:6g} {n['b_simple']:9.1f} "
                f"[{n['b_simple_lower']:.1f}, {n['b_simple_upper']:.1f}] "
                f"{n['ratio']:9.3f} [{n['ratio_lower']:.3f}, {n['ratio_upper']:.3f}]"
            )
        return "\n".join(lines)


def run_sde_regime(config: SdeRegimeConfig | None = None) -> SdeRegimeResult:
    """Li et al.'s test (docs/theory.md §5): every `η` at every `ℓ`, the limits, `B_simple`."""
    cfg = config or SdeRegimeConfig()
    check_config(cfg)
    t0 = time.perf_counter()
    data = load_mnist1d(cfg.n_train, cfg.n_test, seed=cfg.data_seed)
    ells = sorted(cfg.ells)
    by_ell = {ell: run_ell(cfg, data, ell, noise_scale=ell == 1) for ell in ells}
    runs = []
    for i, lr in enumerate(cfg.learning_rates):
        for ell in ells:
            r = by_ell[ell]
            for s in range(cfg.seeds):
                runs.append(
                    dict(
                        learning_rate=lr,
                        ell=ell,
                        seed=s,
                        steps=int(r["steps"][i, s]),
                        sde_time=int(r["steps"][i, s]) * lr / ell,
                        **{m: float(r[m][i, s]) for m in (*METRICS, "train_accuracy", "test_loss")},
                    )
                )
    comparisons = []
    for i, lr in enumerate(cfg.learning_rates):
        for m in METRICS:
            v = np.stack([by_ell[ell][m][i] for ell in ells], axis=1)
            c = compare_with_limit(ells, v, level=cfg.level)
            comparisons.append(
                dict(
                    learning_rate=lr, metric=m, **c._asdict(), diverged=int((~np.isfinite(v)).sum())
                )
            )
    noise = noise_scale_rows(cfg, by_ell[1]["trace"], by_ell[1]["grad_norm_sq"])
    return SdeRegimeResult(cfg, runs, comparisons, noise, time.perf_counter() - t0)


def noise_scale_rows(cfg: SdeRegimeConfig, trace: np.ndarray, grad_norm_sq: np.ndarray) -> list:
    """Per `η`: `B_simple = Σ_t tr C / Σ_t ‖∇L‖²` over the run, per seed, averaged over
    seeds with a Student-t interval, and `(B/2)/B_simple` (its interval from B_simple's).

    `trace`, `grad_norm_sq`: `(E, S, T)` unbiased one-batch estimates per step."""
    simple = np.sum(trace, -1, dtype=np.float64) / np.sum(grad_norm_sq, -1, dtype=np.float64)
    s = simple.shape[1]
    t = float(sps.t.ppf(0.5 + cfg.level / 2, s - 1))
    half = cfg.batch_size // 2
    rows = []
    for i, lr in enumerate(cfg.learning_rates):
        mean = float(simple[i].mean())
        se = float(simple[i].std(ddof=1) / math.sqrt(s))
        lo, hi = mean - t * se, mean + t * se
        rows.append(
            dict(
                learning_rate=lr,
                b_simple=mean,
                b_simple_lower=lo,
                b_simple_upper=hi,
                ratio=half / mean,
                ratio_lower=half / hi if hi > 0 else math.nan,
                ratio_upper=half / lo if lo > 0 else math.inf,
            )
        )
    return rows


# --------------------------------------------------------------------------- the section


def regime_verdicts(res: SdeRegimeResult) -> dict[float, tuple[str, str]]:
    """Per `η`: "`ℓ = 1` agrees with the limit" for test accuracy and training loss
    together (`combine_verdicts`): a departure of either one refutes it."""
    cfg = res.config
    out = {}
    for lr in cfg.learning_rates:
        parts = []
        for c in (c for c in res.comparisons if c["learning_rate"] == lr):
            if c["metric"] == "test_accuracy":  # in points, as the report prints it
                k, tol = 100.0, 100.0 * cfg.acc_tolerance
            else:
                k, tol = 1.0, cfg.loss_tolerance * abs(c["limit"])
            v, why = agreement_verdict(k * c["lower"], k * c["upper"], tol)
            parts.append((v, f"{c['metric'].replace('_', ' ')}: {why}"))
        out[lr] = combine_verdicts(parts)
    return out


def transition_verdict(verdicts: dict[float, tuple[str, str]]) -> tuple[str, str]:
    """Li et al.'s finding: in the regime at the smallest `η`, out of it at the largest."""
    lrs = sorted(verdicts)
    small, large = verdicts[lrs[0]][0], verdicts[lrs[-1]][0]
    if small == NOT_SUPPORTED:
        return NOT_SUPPORTED, f"SGD departs from its SDE already at η = {lrs[0]:g}"
    if large == SUPPORTED:
        return NOT_SUPPORTED, f"SGD agrees with its SDE even at η = {lrs[-1]:g}"
    if small == SUPPORTED and large == NOT_SUPPORTED:
        return SUPPORTED, f"agrees at η = {lrs[0]:g}, departs at η = {lrs[-1]:g}"
    return INCONCLUSIVE, (
        f"η = {lrs[0]:g}: {small.value}, η = {lrs[-1]:g}: {large.value} at this size"
    )


def _interval(c: dict, k: float = 1.0, unit: str = "") -> str:
    return f"{k * c['diff']:+.3g}{unit} [{k * c['lower']:+.3g}, {k * c['upper']:+.3g}]"


def sde_regime_section(out: Path, mode: str, config=None) -> Section:
    """§6.9: does SGD at each learning rate follow its SDE? (Li et al.'s SVAG test)."""
    cfg = config or (SdeRegimeConfig.quick() if mode == "quick" else SdeRegimeConfig.full())
    res = run_sde_regime(cfg)
    sec = Section("sde_regime", "§6.9 Is SGD in the SDE regime?")
    sec.config = asdict(cfg)
    csvs = {
        "sde_regime_runs": res.runs,
        "sde_regime": res.comparisons,
        "sde_regime_noise": res.noise,
    }
    outputs(sec, out, res, plot_sde_regime, csvs)
    if mode == "quick":
        sec.table = "quick sizes: a smoke run; the numbers of docs/results.md need `--full`\n\n" + (
            sec.table
        )
    verdicts = regime_verdicts(res)
    noise = {n["learning_rate"]: n for n in res.noise}
    for lr, verdict in verdicts.items():
        acc, loss = (
            next(c for c in res.comparisons if c["learning_rate"] == lr and c["metric"] == m)
            for m in METRICS
        )
        sec.claims.append(
            Claim(
                "6.9",
                f"At η = {lr:g} SGD (ℓ = 1) lies within the interval of its SDE limit (ℓ → ∞)",
                f"test acc {100 * acc['sgd']:.1f}% vs limit {100 * acc['limit']:.1f}%: "
                f"{_interval(acc, 100, ' pt')}; train loss {loss['sgd']:.3g} vs "
                f"{loss['limit']:.3g}: {_interval(loss)}; (B/2)/B_simple "
                f"{noise[lr]['ratio']:.2g}",
                f"a difference within ±{100 * cfg.acc_tolerance:.3g} pt and "
                f"±{100 * cfg.loss_tolerance:.3g}% (Li et al.: holds at small η)",
                *verdict,
            )
        )
    sec.claims.append(
        Claim(
            "6.9",
            "SGD follows its SDE at small learning rates and leaves it at large ones",
            ", ".join(f"η {lr:g}: {v[0].value}" for lr, v in verdicts.items()),
            "Li et al. (NeurIPS 2021): the SDE fails at large η",
            *transition_verdict(verdicts),
        )
    )
    sec.claims.append(
        Claim(
            "6.9",
            "SGD's batch against the noise scale measured along its run",
            ", ".join(
                f"η {n['learning_rate']:g}: {n['ratio']:.2g} [{n['ratio_lower']:.2g}, "
                f"{n['ratio_upper']:.2g}]"
                for n in res.noise
            ),
            "the linear scaling rule needs B ≲ B_simple (Li et al.)",
            REPORTED,
            "(B/2)/B_simple, B_simple = Σ tr C / Σ ‖∇L‖² over the ℓ = 1 run",
        )
    )
    return sec


def plot_sde_regime(res: SdeRegimeResult, path) -> None:
    """Per learning rate (columns) each metric (rows) against `1/ℓ`: mean ± se over seeds,
    the fitted line over `ℓ ≥ 2` and its limit at `1/ℓ = 0` with the interval."""
    from sdn.experiments.plots import _save, subplots

    cfg = res.config
    lrs = cfg.learning_rates
    fig, axes = subplots(2, len(lrs), figsize=(3.2 * len(lrs), 5.6), squeeze=False)
    for j, lr in enumerate(lrs):
        for i, m in enumerate(METRICS):
            ax = axes[i][j]
            k = 100 if m == "test_accuracy" else 1
            rows = [r for r in res.runs if r["learning_rate"] == lr]
            inv, mean, se = [], [], []
            for ell in sorted(cfg.ells):
                v = np.array([r[m] for r in rows if r["ell"] == ell])
                inv.append(1 / ell)
                mean.append(k * v.mean())
                se.append(k * v.std(ddof=1) / math.sqrt(v.size))
            ax.errorbar(inv, mean, yerr=se, fmt="o", color="C0", label="mean ± se")
            c = next(c for c in res.comparisons if c["learning_rate"] == lr and c["metric"] == m)
            grid = np.linspace(0, 0.5, 20)
            ax.plot(grid, k * (c["limit"] + c["slope"] * grid), "C1--", label="fit, ℓ ≥ 2")
            half = k * c["limit_se"] * sps.t.ppf(0.5 + cfg.level / 2, cfg.seeds - 1)
            ax.errorbar(
                [0], [k * c["limit"]], yerr=[half], fmt="s", color="C1", capsize=3,
                label=f"ℓ → ∞, {100 * cfg.level:g}% interval",
            )  # fmt: skip
            ax.set_xlabel("1/ℓ")
            if j == 0:
                ax.set_ylabel("test accuracy %" if k == 100 else "training loss")
            if i == 0:
                ax.set_title(f"η = {lr:g}")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)
