"""The critical batch size, predicted and measured, on MNIST-1D (docs/theory.md §6.8).

For each model (the MLP of §6.4 and a 1-D CNN) and each batch size `B`, `seeds` runs of
SGD with the learning rate of the linear scaling rule, capped at the largest stable
step, `η(B) = min(η₀ B/B₀, η_max)`, train until the full training loss reaches
`target_loss`. Per run: the steps `S` to the target (the first evaluation at or below
it, interpolated linearly in log loss from the evaluation before) and the examples
`E = B S`. `sdn.stats.fit_critical_batch` fits McCandlish et al.'s trade-off
`(S/S_min − 1)(E/E_min − 1) = 1` to the runs, giving `S_min`, `E_min` and
`B_crit = E_min/S_min` with intervals.

The same runs measure the simple noise scale `B_simple = tr C/‖G‖²`, the predictor of
`B_crit` (`sdn.train.NoiseScaleMonitor`: moving averages of the unbiased one-batch
estimates of `tr C` and `‖G‖²` from the training batches' per-sample gradients). It
changes over training, so it is read at the evaluation where each run reaches the
target; the model's value pools the runs (numerator and denominator averaged over the
runs, weighted by `B`, the examples behind each run's estimates), and its range over
training is that of the largest batch's runs (the most precise readings).

Batch sizes run in increasing order, each with the evaluation interval and the step cap
set from the one before: `S` does not grow with `B` (the cap is 4 times the previous
batch's slowest run) and `E = B S` does not shrink (so about `evals` evaluations fall
before the target). A run that does not reach the target within its cap is reported and
left out of the fit, never dropped silently.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import optax

from sdn import stats
from sdn.experiments.claims import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    REPORTED,
    SUPPORTED,
    Claim,
    Section,
    fmt,
    outputs,
)
from sdn.train import CNN, MLP, NoiseScaleMonitor, load_mnist1d, train

MODELS = ("mlp", "cnn")
CAP_FACTOR = 4
"""A batch's step cap is this many times the previous (smaller) batch's slowest run."""


@dataclass(frozen=True)
class CriticalBatchConfig:
    """Sizes of §6.8 (defaults: the full, CPU sizes)."""

    models: tuple[str, ...] = MODELS
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
    seeds: int = 5
    target_loss: float = 0.5
    base_lr: float = 0.05  # η₀ at the batch base_batch
    base_batch: int = 16
    mlp_max_lr: float = 1.6  # η_max, the cap of the linear scaling rule, per model
    cnn_max_lr: float = 0.8
    hidden: tuple[int, ...] = (128, 128)
    cnn_channels: tuple[int, ...] = (8, 16)
    cnn_hidden: int = 32
    n_train: int = 4000
    n_test: int = 100  # only the training loss is used; train() evaluates both sets
    max_steps: int = 20000  # the cap of the smallest batch
    first_eval_every: int = 100  # the smallest batch's evaluation interval
    evals: int = 40  # evaluations before the target, about, for the later batches
    monitor_decay: float = 0.9
    data_seed: int = 42

    def __post_init__(self):
        for m in self.models:
            if m not in MODELS:
                raise ValueError(f"models entries must be in {MODELS}, got {m!r}")
        sizes = self.batch_sizes
        if len(sizes) < 3 or any(b < 2 for b in sizes) or list(sizes) != sorted(set(sizes)):
            raise ValueError(f"batch_sizes must be at least 3 increasing sizes >= 2, got {sizes!r}")
        if not self.target_loss > 0:
            raise ValueError(f"target_loss must be positive, got {self.target_loss!r}")
        for name in ("base_lr", "mlp_max_lr", "cnn_max_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    @classmethod
    def quick(cls) -> CriticalBatchConfig:
        """The report's smoke size: the MLP only, 3 batch sizes, 2 seeds (seconds)."""
        return cls(
            models=("mlp",),
            batch_sizes=(32, 128, 512),
            seeds=2,
            target_loss=1.4,
            hidden=(32,),
            n_train=1000,
            max_steps=2000,
            first_eval_every=25,
            evals=15,
        )

    @classmethod
    def full(cls) -> CriticalBatchConfig:
        return cls()

    def learning_rate(self, model: str, batch_size: int) -> float:
        """`η(B) = min(η₀ B/B₀, η_max)`: the linear scaling rule, capped."""
        cap = self.mlp_max_lr if model == "mlp" else self.cnn_max_lr
        return min(self.base_lr * batch_size / self.base_batch, cap)


def steps_to_target(steps, loss, target: float) -> float:
    """The steps at which a loss curve first reaches `target` (`inf` if it never does).

    `steps` and `loss` are one run's evaluations, in order. Between the first evaluation
    at or below `target` and the one before it, the crossing is interpolated linearly in
    `log loss` (a curve already at the target at its first evaluation gives that step).

    Example:
      >>> steps_to_target([0, 10, 20, 30], [2.0, 1.0, 0.5, 0.25], 0.5)
      20.0
      >>> round(steps_to_target([0, 10, 20], [2.0, 1.0, 0.25], 0.5), 6)
      15.0
      >>> steps_to_target([0, 10], [2.0, 1.0], 0.5)
      inf
    """
    s = np.asarray(steps, float).reshape(-1)
    ell = np.asarray(loss, float).reshape(-1)
    if s.size != ell.size or s.size == 0:
        raise ValueError(
            f"steps and loss must be equal, non-empty 1-D, got {s.size} and {ell.size}"
        )
    if not target > 0:
        raise ValueError(f"target must be positive, got {target!r}")
    hit = np.flatnonzero(ell <= target)  # NaN (a diverged run) never counts as reached
    if hit.size == 0:
        return math.inf
    j = int(hit[0])
    if j == 0:
        return float(s[0])
    l0, l1 = math.log(ell[j - 1]), math.log(ell[j])
    frac = (l0 - math.log(target)) / (l0 - l1)
    return float(s[j - 1] + frac * (s[j] - s[j - 1]))


@dataclass(frozen=True)
class CriticalBatchResult:
    """Per run (`rows`), per model and batch size (`summary`), per model (`models`: the fit
    and `B_simple`), and the `B_simple` histories (`history[model, B]`: steps, `(K, E)`)."""

    config: CriticalBatchConfig
    rows: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    models: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    seconds: float = 0.0

    def model_rows(self) -> list[dict]:
        """One row per model: the fit, `B_simple` and their intervals (for a CSV file)."""
        out = []
        for name, m in self.models.items():
            fit = m["fit"]
            row = dict(model=name, runs=m["runs"], reached=m["reached"])
            if fit is not None:
                row |= dict(
                    s_min=fit.s_min,
                    s_min_lo=fit.s_min_ci[0],
                    s_min_hi=fit.s_min_ci[1],
                    e_min=fit.e_min,
                    e_min_lo=fit.e_min_ci[0],
                    e_min_hi=fit.e_min_ci[1],
                    b_crit=fit.b_crit,
                    b_crit_lo=fit.b_crit_ci[0],
                    b_crit_hi=fit.b_crit_ci[1],
                    rel_rms=fit.rel_rms,
                    lack_of_fit_p=m["lack_of_fit_p"],
                )
            row |= {k: m[k] for k in ("b_simple", "b_simple_lo", "b_simple_hi")}
            row |= {k: m[k] for k in ("b_simple_train_min", "b_simple_train_max")}
            out.append(row)
        return out

    def table(self) -> str:
        lines = [
            f"{'model':5} {'B':>5} {'lr':>6} {'reached':>7} {'S (mean ± se)':>17} "
            f"{'E = B·S':>9} {'B_simple at target':>19}"
        ]
        for r in self.summary:
            lines.append(
                f"{r['model']:5} {r['batch_size']:5d} {r['learning_rate']:6.3g} "
                f"{r['reached']:>3d}/{r['runs']:<3d} "
                f"{r['steps_mean']:9.1f} ± {r['steps_sem']:5.1f} "
                f"{r['examples_mean']:9.0f} {r['b_simple_mean']:19.1f}"
            )
        for name, m in self.models.items():
            fit = m["fit"]
            lines.append("")
            if fit is None:
                lines.append(f"{name}: no fit ({m['note']})")
            else:
                lines.append(
                    f"{name}: S_min {fit.s_min:.1f} ({_ci(fit.s_min_ci)}), E_min {fit.e_min:.0f} "
                    f"({_ci(fit.e_min_ci)}), B_crit {fit.b_crit:.1f} ({_ci(fit.b_crit_ci)}); "
                    f"rms rel. residual {fit.rel_rms:.3f}, lack-of-fit p {m['lack_of_fit_p']:.2g}"
                )
            lines.append(
                f"{name}: B_simple at the target {m['b_simple']:.1f} "
                f"({m['b_simple_lo']:.1f}–{m['b_simple_hi']:.1f}); over training "
                f"{m['b_simple_train_min']:.1f}–{m['b_simple_train_max']:.1f}"
            )
            if m["note"] and fit is not None:
                lines.append(f"{name}: {m['note']}")
        return "\n".join(lines)


def _ci(ci) -> str:
    return f"95% CI {fmt(ci[0])}–{fmt(ci[1])}"


def _model_fn(cfg: CriticalBatchConfig, model: str):
    if model == "mlp":
        return lambda rngs: MLP(40, cfg.hidden, 10, rngs=rngs)
    return lambda rngs: CNN((40,), 10, channels=cfg.cnn_channels, hidden=cfg.cnn_hidden, rngs=rngs)


def _pooled_b_simple(rows: list[dict]) -> tuple[float, float, float]:
    """`Σ B tr C / Σ B ‖G‖²` over the runs' readings at the target, with a 95% interval
    (delta method for a ratio of sums over independent runs, on the log scale)."""
    w = np.array([r["batch_size"] for r in rows], float)
    t = np.array([r["trace_at_target"] for r in rows], float)
    g = np.array([r["grad_norm_sq_at_target"] for r in rows], float)
    ratio = float(np.sum(w * t) / np.sum(w * g))
    if not (np.sum(w * g) > 0 and ratio > 0):
        return math.nan, math.nan, math.nan
    n = len(rows)
    if n < 2:
        return ratio, math.nan, math.nan
    z = w * (t - ratio * g)
    se = math.sqrt(n / (n - 1) * float(np.sum(z**2))) / float(np.sum(w * g))
    half = 1.96 * se / ratio
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def _lack_of_fit_p(rows: list[dict], fit) -> float:
    """The F test of the law against the replicates' pure error, on relative residuals."""
    from scipy import stats as sps

    b = np.array([r["batch_size"] for r in rows], float)
    s = np.array([r["steps"] for r in rows], float)
    rel = s / fit.steps_at(b) - 1
    groups = [rel[b == v] for v in np.unique(b)]
    pure = sum(float(np.sum((x - x.mean()) ** 2)) for x in groups)
    dof_pure = len(rel) - len(groups)
    dof_lack = len(groups) - 2
    if dof_pure < 1 or dof_lack < 1 or pure <= 0:
        return math.nan
    lack = float(np.sum(rel**2)) - pure
    return float(sps.f.sf((lack / dof_lack) / (pure / dof_pure), dof_lack, dof_pure))


# Long on purpose: the batch sizes' runs in order, each sized from the one before.
def _run_model(cfg: CriticalBatchConfig, model: str, data, progress: bool):
    rows, summary, history = [], [], {}
    prev_steps = prev_max = prev_batch = None
    for b in cfg.batch_sizes:
        if prev_steps is None:
            cap, every = cfg.max_steps, cfg.first_eval_every
        else:
            cap = min(cfg.max_steps, max(int(math.ceil(CAP_FACTOR * prev_max)), 1))
            every = max(1, int(prev_steps * prev_batch / b / cfg.evals))
        every = min(every, cap)
        lr = cfg.learning_rate(model, b)
        res = train(
            _model_fn(cfg, model),
            data,
            optax.sgd(lr),
            steps=cap,
            batch_size=b,
            seeds=cfg.seeds,
            eval_every=every,
            noise_scale=NoiseScaleMonitor(every=max(1, every // 2), decay=cfg.monitor_decay),
            stop_below=cfg.target_loss,
            progress=progress,
        )
        ns = res.noise_scale
        history[model, b] = (res.steps, np.asarray(ns.simple, float))
        runs = []
        for k, seed in enumerate(res.seeds):
            s = steps_to_target(res.steps, res.train_loss[k], cfg.target_loss)
            reached = math.isfinite(s)
            hit = int(np.argmax(res.train_loss[k] <= cfg.target_loss)) if reached else -1
            runs.append(
                dict(
                    model=model,
                    batch_size=b,
                    seed=seed,
                    learning_rate=lr,
                    reached=reached,
                    steps=s,
                    examples=b * s,
                    step_cap=cap,
                    eval_every=every,
                    final_train_loss=float(res.train_loss[k, -1]),
                    b_simple_at_target=float(ns.simple[k, hit]),
                    trace_at_target=float(ns.trace[k, hit]),
                    grad_norm_sq_at_target=float(ns.grad_norm_sq[k, hit]),
                    seconds=res.seconds,
                )
            )
        rows += runs
        ok = [r for r in runs if r["reached"]]
        s_ok = np.array([r["steps"] for r in ok], float)
        summary.append(
            dict(
                model=model,
                batch_size=b,
                learning_rate=lr,
                runs=len(runs),
                reached=len(ok),
                steps_mean=float(s_ok.mean()) if ok else math.inf,
                steps_sem=float(s_ok.std(ddof=1) / math.sqrt(len(ok))) if len(ok) > 1 else math.nan,
                examples_mean=float(b * s_ok.mean()) if ok else math.inf,
                b_simple_mean=float(np.mean([r["b_simple_at_target"] for r in ok]))
                if ok
                else math.nan,
                step_cap=cap,
                seconds=res.seconds,
            )
        )
        if ok:
            prev_steps, prev_max, prev_batch = float(s_ok.mean()), float(s_ok.max()), b
    return rows, summary, history


def _model_summary(cfg, model, rows, history) -> dict:
    ok = [r for r in rows if r["reached"]]
    missed = [r for r in rows if not r["reached"]]
    note = ""
    if missed:
        note = "not reached within the step cap, left out of the fit: " + ", ".join(
            f"B={r['batch_size']} seed {r['seed']} (cap {r['step_cap']}, loss "
            f"{r['final_train_loss']:.3g})"
            for r in missed
        )
    fit, lof = None, math.nan
    if len({r["batch_size"] for r in ok}) >= 3:
        fit = stats.fit_critical_batch([r["batch_size"] for r in ok], [r["steps"] for r in ok])
        lof = _lack_of_fit_p(ok, fit)
    else:
        note = (note + "; " if note else "") + "fewer than 3 batch sizes reached the target"
    bs, lo, hi = _pooled_b_simple(ok) if ok else (math.nan,) * 3
    # B_simple over training: the seed mean of the largest reached batch's readings
    tmin = tmax = math.nan
    if ok:
        b_top = max(r["batch_size"] for r in ok)
        steps, simple = history[model, b_top]
        with warnings.catch_warnings():  # an all-NaN column (no reading yet) stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            seed_mean = np.nanmean(simple[:, 1:], axis=0) if simple.shape[1] > 1 else np.array([])
        if seed_mean.size and np.any(np.isfinite(seed_mean)):
            tmin, tmax = float(np.nanmin(seed_mean)), float(np.nanmax(seed_mean))
    return dict(
        fit=fit,
        lack_of_fit_p=lof,
        runs=len(rows),
        reached=len(ok),
        b_simple=bs,
        b_simple_lo=lo,
        b_simple_hi=hi,
        b_simple_train_min=tmin,
        b_simple_train_max=tmax,
        note=note,
    )


def run_critical_batch(
    config: CriticalBatchConfig | None = None, *, progress: bool = False
) -> CriticalBatchResult:
    """Steps and examples to the target over batch sizes, the fitted trade-off and
    `B_simple`, per model (docs/theory.md §6.8)."""
    cfg = config or CriticalBatchConfig()
    t0 = time.perf_counter()
    data = load_mnist1d(cfg.n_train, cfg.n_test, seed=cfg.data_seed)
    rows, summary, models, history = [], [], {}, {}
    for model in cfg.models:
        r, s, h = _run_model(cfg, model, data, progress)
        rows += r
        summary += s
        history |= h
        models[model] = _model_summary(cfg, model, r, h)
    return CriticalBatchResult(cfg, rows, summary, models, history, time.perf_counter() - t0)


# --------------------------------------------------------------------------- the section


def trade_off_verdict(model_summary: dict, batch_sizes) -> tuple[str, str]:
    """Is there a critical batch size: does `S(B)` fall as `1/B` and then level off?

    The two nearest wrong answers are the ends of the law: perfect scaling `S ∝ 1/B`
    (`B_crit = ∞`, `S_min = 0`) and no gain from batch size (`B_crit = 0`). Supported
    when `B_crit`'s interval excludes both; inconclusive when it holds one (the run
    cannot tell); the fit's shape is judged apart (`law_fit_verdict`).
    """
    fit = model_summary["fit"]
    if fit is None:
        return INCONCLUSIVE, model_summary["note"]
    lo, hi = fit.b_crit_ci
    if not math.isfinite(hi):
        return INCONCLUSIVE, (
            f"S_min's interval holds 0: S ∝ 1/B (perfect scaling) fits up to B = {max(batch_sizes)}"
        )
    if lo <= 0:
        return INCONCLUSIVE, "B_crit's interval holds 0 (no gain from larger batches)"
    return SUPPORTED, f"B_crit's {_ci(fit.b_crit_ci)} excludes both 0 and ∞"


def law_fit_verdict(model_summary: dict) -> tuple[str, str]:
    """Does the hyperbola `S = S_min + E_min/B` fit within the seed-to-seed noise?

    The lack-of-fit F test of the law against the replicates' pure error: not supported
    when `p < 0.01`; supported when `p ≥ 0.05` over at least 5 batch sizes; inconclusive
    otherwise, and where there are no replicates to test against.
    """
    fit, p = model_summary["fit"], model_summary["lack_of_fit_p"]
    if fit is None or not math.isfinite(p):
        return INCONCLUSIVE, "no replicates to test the law's shape against"
    text = f"lack-of-fit p {p:.2g}, rms relative residual {fit.rel_rms:.3g}"
    if p < 0.01:
        return NOT_SUPPORTED, f"{text}: the runs depart from the hyperbola beyond their noise"
    if fit.n_batch_sizes < 5:
        return INCONCLUSIVE, (
            f"{text}, but {fit.n_batch_sizes} batch sizes leave {fit.n_batch_sizes - 2} "
            "degree(s) of freedom for the shape: too few to call it a fit"
        )
    if p >= 0.05:
        return SUPPORTED, f"{text}: within the seed-to-seed noise"
    return INCONCLUSIVE, text


def agreement_verdict(model_summary: dict, factor: float = 10.0) -> tuple[str, str]:
    """Do `B_crit` and `B_simple` agree within a `factor` (an order of magnitude)?

    The ratio's interval is taken conservatively from the two 95% intervals,
    `[B_crit,lo/B_simple,hi, B_crit,hi/B_simple,lo]`: supported when it lies inside
    `[1/factor, factor]`, not supported when it lies wholly outside, inconclusive when
    it straddles an end.
    """
    fit = model_summary["fit"]
    bs_lo, bs_hi = model_summary["b_simple_lo"], model_summary["b_simple_hi"]
    if fit is None or not (math.isfinite(bs_lo) and bs_lo > 0):
        return INCONCLUSIVE, "not measurable in this run (no fit or no B_simple interval)"
    lo, hi = fit.b_crit_ci[0] / bs_hi, fit.b_crit_ci[1] / bs_lo
    band = f"B_crit/B_simple in [{fmt(lo)}, {fmt(hi)}]"
    if 1 / factor <= lo and hi <= factor:
        return SUPPORTED, f"{band}, within a factor {factor:g}"
    if hi < 1 / factor or lo > factor:
        return NOT_SUPPORTED, f"{band}, beyond a factor {factor:g}"
    return INCONCLUSIVE, f"{band} reaches beyond a factor {factor:g}"


def critical_batch_section(out: Path, mode: str, config=None) -> Section:
    """§6.8: the critical batch size of the steps–examples trade-off, and `B_simple`."""
    from sdn.experiments import plots

    cfg = config or (CriticalBatchConfig.quick() if mode == "quick" else CriticalBatchConfig.full())
    res = run_critical_batch(cfg)
    sec = Section("critical_batch", "§6.8 The critical batch size, predicted and measured")
    sec.config = asdict(cfg)
    csvs = {
        "critical_batch_runs": res.rows,
        "critical_batch": res.summary,
        "critical_batch_fits": res.model_rows(),
    }
    outputs(sec, out, res, plots.plot_critical_batch, csvs)
    if mode == "quick":
        sec.table = (
            "quick sizes: the MLP only, 3 batch sizes, 2 seeds, a high target loss; the "
            "full run fits both models over 7 batch sizes (`--full`)\n\n" + sec.table
        )
    for name, m in res.models.items():
        fit = m["fit"]
        label = "MLP" if name == "mlp" else "1-D CNN"
        reached = f"{m['reached']}/{m['runs']} runs reached the target"
        if fit is None:
            measured = f"no fit; {reached}"
        else:
            measured = (
                f"S_min {fmt(fit.s_min)} ({_ci(fit.s_min_ci)}), B_crit {fmt(fit.b_crit)} "
                f"({_ci(fit.b_crit_ci)}); {reached}"
            )
        sec.claims.append(
            Claim(
                "6.8",
                f"{label}: there is a critical batch size (S ∝ 1/B below it, S ≈ S_min above)",
                measured,
                "B_crit between the perfect-scaling (∞) and no-gain (0) ends "
                "(McCandlish et al. 2018)",
                *trade_off_verdict(m, cfg.batch_sizes),
            )
        )
        sec.claims.append(
            Claim(
                "6.8",
                f"{label}: steps and examples trade off as (S/S_min − 1)(E/E_min − 1) = 1",
                "no fit" if fit is None else f"rms relative residual {fmt(fit.rel_rms)}",
                "the hyperbola within the seed-to-seed noise",
                *law_fit_verdict(m),
            )
        )
        bsim = (
            f"B_simple {fmt(m['b_simple'])} (95% CI {fmt(m['b_simple_lo'])}–"
            f"{fmt(m['b_simple_hi'])}) at the target"
        )
        sec.claims.append(
            Claim(
                "6.8",
                f"{label}: B_crit and B_simple agree within an order of magnitude",
                (f"B_crit {fmt(fit.b_crit)}, " if fit is not None else "") + bsim,
                "the same order of magnitude (McCandlish et al. 2018)",
                *agreement_verdict(m),
            )
        )
        sec.claims.append(
            Claim(
                "6.8",
                f"{label}: B_simple changes over training",
                f"{fmt(m['b_simple_train_min'])}–{fmt(m['b_simple_train_max'])} over the "
                f"largest batch's runs, up to the target",
                "it grows as the loss falls (McCandlish et al. 2018)",
                REPORTED,
                m["note"],
            )
        )
    return sec
