"""§6.4 itself: the methods, their configuration, the vmapped runs and the fits they use."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sdn import noise, optim
from sdn._io import write_atomic
from sdn.train import (
    CNN,
    MLP,
    Dataset,
    NoiseFit,
    fit_network_empirical,
    fit_network_power_law,
    functional_apply,
    load_mnist1d,
    load_npz,
    per_sample_grads,
    sample_loss,
    split_model,
    top_hessian_eigenvalue,
    train,
)

METHODS = (
    "small_batch",
    "large_batch",
    "linear_scaling",
    "diagonal",
    "isotropic",
    "power_law",
    "power_law_fitted",
    "empirical_fitted",
    "fluctuation",
    "empirical_refit",
    "diagonal_refit",
)
REFIT_METHODS = ("empirical_refit", "diagonal_refit")
"""The methods whose noise model is measured again at the current parameters before every
chunk of `eval_every` steps (noise that follows the state, docs/theory.md §5)."""


@dataclass(frozen=True)
class LargeBatchConfig:
    """Sizes of the §6.4 comparison; the defaults are docs/theory.md §5's MNIST-1D setup."""

    hidden: tuple[int, ...] = (512, 512)
    n_train: int = 4000
    n_test: int = 1000
    small_batch: int = 32
    large_batch: int = 1024
    learning_rate: float = 0.05
    steps: int = 6000
    seeds: int = 5
    linear_scaling: float = 8.0  # lr factor; the batch ratio 32 (lr 1.6) is unstable here
    pld_alpha_g: float = 1e-4  # α_g, α_H: the added noise's own coefficients (not moments)
    pld_alpha_h: float = 1.0
    pld_increments: str = "gaussian"  # or "two_point": one random sign per parameter
    ema_decay: float = 0.99
    fit_step: float = 0.1  # power_law_fitted: |x_j| up to fit_step · rms of w*'s leaf
    fit_groups: int = 8  # batches per displaced point; their spread gives the errors
    fit_samples: int = 256  # empirical_fitted: m per-sample gradients, the rank of S
    eval_every: int = 500
    power_iters: int = 20
    data_seed: int = 42
    methods: tuple[str, ...] = METHODS
    data: str = "mnist1d"  # or the path of a user's .npz file / folder (sdn.train.load_npz)
    model: str = "mlp"  # or "cnn": conv blocks `cnn_channels`, then a dense layer hidden[0]
    cnn_channels: tuple[int, ...] = (16, 32)

    @classmethod
    def quick(cls) -> LargeBatchConfig:
        """A smoke run, about a minute on two CPU cores (far from converged)."""
        return cls(
            hidden=(64, 64),
            n_train=1000,
            n_test=500,
            small_batch=16,
            large_batch=256,
            learning_rate=0.1,
            steps=400,
            linear_scaling=4.0,
            eval_every=100,
            power_iters=10,
            # the refitted methods cost fit_samples per-sample gradients per refit: --full
            methods=tuple(m for m in METHODS if m not in REFIT_METHODS),
        )

    @classmethod
    def full(cls) -> LargeBatchConfig:
        return cls()


@dataclass(frozen=True)
class LargeBatchResult:
    """Per seed (`rows`) and per method (`summary`) outcomes, and accuracy histories."""

    config: LargeBatchConfig
    rows: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    history: dict = field(default_factory=dict)  # method -> (steps, test_accuracy (K, E))
    seconds: float = 0.0

    def table(self) -> str:
        head = (
            f"{'method':15} {'test acc %':>14} {'train acc %':>12} {'train loss':>10} "
            f"{'top eig':>14} {'seconds':>8}"
        )
        lines = [head]
        for s in self.summary:
            lines.append(
                f"{s['method']:15} {100 * s['test_acc_mean']:6.1f} ± "
                f"{100 * s['test_acc_std']:4.1f} "
                f"{100 * s['train_acc_mean']:12.1f} {s['train_loss_mean']:10.4f} "
                f"{s['top_eig_mean']:7.2f} ± {s['top_eig_std']:4.2f} {s['seconds']:8.1f}"
            )
        return "\n".join(lines)


def _isotropic_variance(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """`tx` given, in place of ``grad_variance``, its mean over all coordinates."""
    tx = optax.with_extra_args_support(tx)

    def update(updates, state, params=None, **extra):
        var = extra.get("grad_variance")
        if var is not None:
            leaves = jax.tree.leaves(var)
            mean = sum(jnp.sum(v) for v in leaves) / sum(v.size for v in leaves)
            extra["grad_variance"] = jax.tree.map(lambda v: jnp.full_like(v, mean), var)
        return tx.update(updates, state, params, **extra)

    return optax.GradientTransformationExtraArgs(tx.init, update)


# Long on purpose: one branch per method, each that method's recipe read on its own.
def method_setup(name: str, cfg: LargeBatchConfig, fit: NoiseFit | None = None) -> dict:
    """Batch size, transform factory (key → transform) and extra arguments of a method.

    ``power_law_fitted`` and ``empirical_fitted`` need `fit`, the `NoiseFit` at the
    large-batch minimum (`fit_network_power_law`'s and `fit_network_empirical`'s)."""
    lr, bs, bl = cfg.learning_rate, cfg.small_batch, cfg.large_batch
    if name == "small_batch":
        return dict(batch_size=bs, tx=optax.sgd(lr))
    if name == "large_batch":
        return dict(batch_size=bl, tx=optax.sgd(lr))
    if name == "linear_scaling":
        return dict(batch_size=bl, tx=optax.sgd(lr * cfg.linear_scaling))
    if name in ("diagonal", "isotropic"):

        def tx(key):
            noise = optim.from_gradient_variance(key, bs, bl)
            if name == "isotropic":
                noise = _isotropic_variance(noise)
            return optax.chain(noise, optax.sgd(lr))

        return dict(batch_size=bl, tx=tx, extra_args=("grad_variance",))
    if name == "power_law":
        return dict(
            batch_size=bl,
            tx=lambda key: optim.power_law_sgd(
                key,
                lr,
                alpha_g=cfg.pld_alpha_g,
                alpha_h=cfg.pld_alpha_h,
                increments=cfg.pld_increments,
                anchor=optim.ema_anchor(cfg.ema_decay),
            ),
        )
    if name == "power_law_fitted":
        if fit is None:
            raise ValueError("power_law_fitted needs the fit at the large-batch minimum")
        sg, sh = (jax.tree.map(lambda a: np.maximum(a, 0.0), v) for v in (fit.sigma_g, fit.sigma_h))

        def tx(key):
            noise = optim.from_moments(
                key, bs, bl, sigma_g=sg, sigma_h=sh, anchor=optim.ema_anchor(cfg.ema_decay)
            )
            return optax.chain(noise, optax.sgd(lr))

        return dict(batch_size=bl, tx=tx)
    if name == "empirical_fitted":
        if fit is None or not isinstance(fit.model, noise.Empirical):
            raise ValueError(
                "empirical_fitted needs the empirical fit at the large-batch minimum "
                "(sdn.train.fit_network_empirical), got "
                f"{None if fit is None else type(fit.model).__name__}"
            )
        # Cov ζ = r S: the per-sample covariance at w*, times the variance the large
        # batch lacks per sample (docs/theory.md §5). Constant in w: no anchor.
        model = fit.model.scaled(1.0 / bs - 1.0 / bl)

        def tx(key):
            return optax.chain(optim.add_state_dependent_noise(key, model), optax.sgd(lr))

        return dict(batch_size=bl, tx=tx)
    if name in REFIT_METHODS:
        # Cov ζ = r C(w_t): the per-sample covariance measured from `fit_samples` gradients
        # at the current params before every chunk, times the variance the large batch
        # lacks per sample; empirical keeps its cross terms, diagonal only its variances.
        r = 1.0 / bs - 1.0 / bl
        m = cfg.fit_samples

        def measured(grads):
            if name == "empirical_refit":
                return noise.empirical(grads, alpha_g=r)
            return noise.diagonal(jax.tree.map(lambda g: r * jnp.var(g, axis=0, ddof=1), grads))

        def placeholder(params):  # zero noise of the right shapes until the first refit
            return measured(jax.tree.map(lambda p: jnp.zeros((m, *p.shape), p.dtype), params))

        def tx(key):
            return optax.chain(optim.add_refitted_noise(key, placeholder), optax.sgd(lr))

        return dict(batch_size=bl, tx=tx, refit_model=measured)
    if name == "fluctuation":

        def tx(key):
            noise = optim.from_fluctuation(bs, bl)
            return optax.chain(noise, optax.sgd(lr))

        return dict(batch_size=bl, tx=tx, microbatches=2, extra_args=("grad_fluctuation",))
    raise ValueError(f"method must be one of {METHODS}, got {name!r}")


def _method_record_path(save_dir: Path, name: str) -> Path:
    return Path(save_dir) / f"large_batch_{name}.json"


def _config_key(cfg: LargeBatchConfig) -> dict:
    """The settings a method's outcome depends on (everything but the method list)."""
    key = dataclasses.asdict(cfg)
    key.pop("methods")
    return json.loads(json.dumps(key))  # tuples as lists, as they come back from a file


def _load_method(save_dir: Path | None, name: str, cfg: LargeBatchConfig):
    """A finished method's (rows, summary, history) from `save_dir`, or None."""
    if save_dir is None:
        return None
    path = _method_record_path(save_dir, name)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("config") != _config_key(cfg):
        return None  # another configuration: train again and overwrite
    steps, acc = record["history"]
    return record["rows"], record["summary"], (np.asarray(steps), np.asarray(acc))


def _save_method(save_dir: Path, name: str, cfg: LargeBatchConfig, rows, summary, hist):
    """Write a method's outcome atomically (temporary file, then rename)."""
    path = _method_record_path(save_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = dict(
        config=_config_key(cfg),
        rows=rows,
        summary=summary,
        history=[np.asarray(hist[0]).tolist(), np.asarray(hist[1]).tolist()],
    )
    write_atomic(path, json.dumps(record))


MODELS = ("mlp", "cnn")


def _load_data(cfg: LargeBatchConfig) -> Dataset:
    """MNIST-1D, or `n_train`/`n_test` examples drawn (seed `data_seed`) from user files."""
    if cfg.data == "mnist1d":
        return load_mnist1d(cfg.n_train, cfg.n_test, seed=cfg.data_seed)
    path = Path(cfg.data).expanduser()
    full = load_npz(path, path.stem or "mnist")
    rng = np.random.default_rng(cfg.data_seed)
    tr = rng.permutation(full.x_train.shape[0])[: cfg.n_train]
    te = rng.permutation(full.x_test.shape[0])[: cfg.n_test]
    return Dataset(full.x_train[tr], full.y_train[tr], full.x_test[te], full.y_test[te])


def _model_fn(cfg: LargeBatchConfig, data: Dataset):
    """`rngs -> model` for the configured architecture and the data's input shape."""
    shape, n_out = data.input_shape, data.n_classes
    if cfg.model == "mlp":
        return lambda rngs: MLP(math.prod(shape), cfg.hidden, n_out, rngs=rngs)
    # Images stored channels-last (n, H, W, C) keep their channels; others get one.
    spatial, c_in = (shape[:2], shape[2]) if len(shape) == 3 else (shape, 1)
    return lambda rngs: CNN(
        spatial,
        n_out,
        channels=cfg.cnn_channels,
        hidden=cfg.hidden[0],
        in_channels=c_in,
        rngs=rngs,
    )


def _large_batch_minimum(cfg, data, model_fn, large_params, progress):
    """`(graphdef, w*)`: seed 0's large-batch minimum, trained here unless ``large_batch``
    (or another fitted method) trained it before in this run."""
    if large_params is not None:
        return large_params
    res = train(
        model_fn,
        data,
        optax.sgd(cfg.learning_rate),
        steps=cfg.steps,
        batch_size=cfg.large_batch,
        seeds=[0],
        eval_every=cfg.eval_every,
        progress=progress,
    )
    return res.graphdef, res.seed_params(0)


def _fit_power_law_at(cfg, data, large_params) -> NoiseFit:
    """Fit the per-coordinate power law at the large-batch minimum `large_params`."""
    graphdef, w_star = large_params
    key = jax.random.key(cfg.data_seed)
    leaves, treedef = jax.tree.flatten(w_star)
    keys = jax.random.split(key, len(leaves) + 1)
    # x_j = ±fit_step · rms(leaf): one size per leaf, random signs per coordinate.
    d = [
        cfg.fit_step
        * jnp.sqrt(jnp.mean(jnp.square(a)))
        * jax.random.rademacher(k, a.shape, a.dtype)
        for k, a in zip(keys[1:], leaves)
    ]
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    return fit_network_power_law(
        keys[0],
        nnx.merge(graphdef, w_star),
        x,
        y,
        jax.tree.unflatten(treedef, d),
        groups=cfg.fit_groups,
    )


def _fit_empirical_at(cfg, data, large_params) -> NoiseFit:
    """Fit the empirical model (`fit_samples` per-sample gradients) at `large_params`."""
    graphdef, w_star = large_params
    return fit_network_empirical(
        jax.random.fold_in(jax.random.key(cfg.data_seed), 1),
        nnx.merge(graphdef, w_star),
        jnp.asarray(data.x_train),
        jnp.asarray(data.y_train),
        batch_size=cfg.fit_samples,
        n_directions=0,
    )


def _fit_summary(fit: NoiseFit, cfg: LargeBatchConfig) -> dict:
    """What the injected noise is made of.

    Power law: mean calibrated α and the median relative standard error of σ_g and σ_H.
    Empirical: the rank `m`, the mean, top eigenvalue and trace share of the top
    eigenvalue of the injected covariance `r S` (from the `m × m` Gram matrix of the
    factors: `FᵀF/m` and `FFᵀ/m` share their non-zero eigenvalues), and the median
    relative standard error of its diagonal."""
    r = 1.0 / cfg.small_batch - 1.0 / cfg.large_batch
    out = {}
    if isinstance(fit.model, noise.Empirical):
        m = fit.model.rank
        f = np.asarray(fit.model.ravel().factors, np.float64)  # (m, P)
        eig = np.linalg.eigvalsh(f @ f.T / m)
        e = np.concatenate([np.ravel(a) for a in jax.tree.leaves(fit.sigma_g)])
        se = np.concatenate([np.ravel(a) for a in jax.tree.leaves(fit.stderr[0])])
        return dict(
            fit_rank=m,
            noise_var_mean=float(r * eig.sum() / f.shape[1]),
            noise_top_eig=float(r * eig[-1]),
            noise_top_eig_share=float(eig[-1] / eig.sum()),
            diag_rel_se_median=float(np.median(se / np.maximum(np.abs(e), 1e-30))),
        )
    for name, est, se in (("g", fit.sigma_g, fit.stderr[0]), ("h", fit.sigma_h, fit.stderr[2])):
        e = np.concatenate([np.ravel(a) for a in jax.tree.leaves(est)])
        s = np.concatenate([np.ravel(a) for a in jax.tree.leaves(se)])
        out[f"alpha_{name}_mean"] = float(r * np.maximum(e, 0).mean())
        out[f"sigma_{name}_rel_se_median"] = float(np.median(s / np.maximum(np.abs(e), 1e-30)))
    return out


# Long on purpose: the experiment's steps in order (data, minimum, fits, each method, sharpness).
def _refit_function(cfg, model_fn, x, y, measured):
    """`(key, params, opt_state) -> opt_state` for `train(refit=...)`: the per-sample
    gradients of `fit_samples` training examples drawn afresh (without replacement) at the
    current params, made a noise model by `measured` and put into the optimizer."""
    graphdef, _ = split_model(model_fn(nnx.Rngs(0)))
    ell = sample_loss(functional_apply(graphdef))
    m = cfg.fit_samples

    def refit(key, params, opt_state):
        idx = jax.random.choice(key, x.shape[0], (m,), replace=False)
        grads = per_sample_grads(ell, params, (x[idx], y[idx]))
        return optim.refit_noise(opt_state, measured(grads))

    return refit


# Long on purpose: the resumable loop over methods, each step (fit, train, sharpness, rows)
# in the order docs/theory.md §6.4 gives them.
def run_large_batch(
    config: LargeBatchConfig | None = None,
    *,
    progress: bool = False,
    save_dir: str | os.PathLike | None = None,
) -> LargeBatchResult:
    """Train every method of `config.methods` for `config.seeds` seeds (docs/theory.md §6.4).

    With `save_dir`, each finished method is written there (``large_batch_<method>.json``,
    atomically) and a rerun with the same configuration loads it instead of training
    again, so a long run that is interrupted loses at most the method in progress.
    """
    cfg = config or LargeBatchConfig()
    save_dir = None if save_dir is None else Path(save_dir)
    if cfg.model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {cfg.model!r}")
    if cfg.model == "cnn" and not cfg.hidden:
        raise ValueError("hidden must give the CNN's dense width, e.g. (64,), got ()")
    for m in cfg.methods:
        if m not in METHODS:
            raise ValueError(f"methods entries must be in {METHODS}, got {m!r}")
    if cfg.large_batch <= cfg.small_batch:
        raise ValueError(
            f"large_batch must exceed small_batch, got {cfg.large_batch} <= {cfg.small_batch}"
        )
    t0 = time.perf_counter()
    data = _load_data(cfg)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    model_fn = _model_fn(cfg, data)

    rows, summary, history = [], [], {}
    large_params, fit, fit_seconds = None, None, 0.0
    for name in cfg.methods:
        saved = _load_method(save_dir, name, cfg)
        if saved is not None:
            method_rows, method_summary, history[name] = saved
            rows += method_rows
            summary += method_summary
            continue
        t_m = time.perf_counter()
        if name in ("power_law_fitted", "empirical_fitted"):
            large_params = _large_batch_minimum(cfg, data, model_fn, large_params, progress)
            t_fit = time.perf_counter()
            fitter = _fit_power_law_at if name == "power_law_fitted" else _fit_empirical_at
            fit = fitter(cfg, data, large_params)
            jax.block_until_ready(fit.model)
            fit_seconds = time.perf_counter() - t_fit
        setup = method_setup(name, cfg, fit)
        refit = None
        if "refit_model" in setup:
            refit = _refit_function(cfg, model_fn, x, y, setup["refit_model"])
        res = train(
            model_fn,
            data,
            setup["tx"],
            steps=cfg.steps,
            batch_size=setup["batch_size"],
            seeds=cfg.seeds,
            eval_every=cfg.eval_every,
            microbatches=setup.get("microbatches", 1),
            extra_args=setup.get("extra_args", ()),
            refit=refit,
            progress=progress,
        )
        if name == "large_batch":
            large_params = (res.graphdef, res.seed_params(0))
        ell = sample_loss(res.apply)

        def full_loss(p, ell=ell):
            return jnp.mean(jax.vmap(ell, (None, 0))(p, (x, y)))

        keys = jax.random.split(jax.random.key(0), len(res.seeds))
        eig = jax.jit(
            jax.vmap(
                lambda p, k, f=full_loss: (
                    top_hessian_eigenvalue(k, f, p, num_iters=cfg.power_iters).value
                )
            )
        )(res.params, keys)
        eig = np.asarray(eig, np.float64)
        seconds = time.perf_counter() - t_m
        method_rows = []
        for k, seed in enumerate(res.seeds):
            method_rows.append(
                dict(
                    method=name,
                    seed=seed,
                    batch_size=setup["batch_size"],
                    test_accuracy=float(res.test_accuracy[k, -1]),
                    train_accuracy=float(res.train_accuracy[k, -1]),
                    train_loss=float(res.train_loss[k, -1]),
                    test_loss=float(res.test_loss[k, -1]),
                    top_eigenvalue=float(eig[k]),
                )
            )
        acc = res.test_accuracy[:, -1].astype(np.float64)
        method_summary = [
            dict(
                method=name,
                n_seeds=len(res.seeds),
                test_acc_mean=float(acc.mean()),
                test_acc_std=float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
                train_acc_mean=float(res.train_accuracy[:, -1].mean()),
                train_loss_mean=float(res.train_loss[:, -1].mean()),
                top_eig_mean=float(eig.mean()),
                top_eig_std=float(eig.std(ddof=1)) if eig.size > 1 else 0.0,
                diverged=int(np.sum(~np.isfinite(res.train_loss[:, -1]))),
                seconds=seconds,
            )
        ]
        if name in ("power_law_fitted", "empirical_fitted"):
            method_summary[0] |= _fit_summary(fit, cfg) | dict(fit_seconds=fit_seconds)
        history[name] = (res.steps, res.test_accuracy)
        rows += method_rows
        summary += method_summary
        if save_dir is not None:
            _save_method(save_dir, name, cfg, method_rows, method_summary, history[name])
    return LargeBatchResult(cfg, rows, summary, history, time.perf_counter() - t0)
