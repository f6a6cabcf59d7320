"""Step time of the state-dependent noise transform against plain SGD and optax.add_noise.

One jitted train step (forward, backward, optimizer, apply) of a ReLU MLP 64→512→512→10
on scikit-learn's digits, for each optimizer and batch size, all measured in one run:
the optimizers take turns in rounds (so that load drifts hit all alike), every step
ends with ``block_until_ready``, and the median step time is reported. Params and
state are donated, as in a real training loop. A last block times the optimizer
update alone (the transform's own cost, without the network). The MLP is
written here in plain JAX so the benchmark does not depend on ``sdn.train``.

Target (docs/benchmarks.md, amended): our overhead over plain ``sgd`` is at most
1.1× the overhead of ``chain(optax.add_noise, sgd)`` for the power-law model, and at
most 10% at batch 4096; with ``increments="two_point"`` (one random bit per parameter)
at most 0.3× ``add_noise``'s. Every model of ``sdn.noise`` is timed (the empirical one
with `m = 64` factors), and the
structured-fluctuation method's whole step (``value_grad_and_fluctuation`` plus the
transform) against a plain large-batch ``sgd`` step.

    python benchmarks/optim.py [--rounds 20 --per-round 10]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from sdn import noise
from sdn.optim import (
    add_state_dependent_noise,
    periodic_anchor,
    power_law_sgd,
    value_grad_and_fluctuation,
)
from sdn.train.probes import gradient_moments, per_sample_grads

LR = 0.05
SIZES = (64, 512, 512, 10)


def noisy(key, model, **kwargs):
    """``chain(add_state_dependent_noise(key, model), sgd)``."""
    return optax.chain(add_state_dependent_noise(key, model, **kwargs), optax.sgd(LR))


def init_mlp(key: jax.Array) -> dict:
    params = {}
    for i, (m, n) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        key, sub = jax.random.split(key)
        params[f"w{i}"] = jax.random.normal(sub, (m, n)) * np.sqrt(2.0 / m)
        params[f"b{i}"] = jnp.zeros(n)
    return params


def loss_fn(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    h = x
    for i in range(len(SIZES) - 1):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < len(SIZES) - 2:
            h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


def empirical_model(params: dict, m: int) -> noise.Empirical:
    """`noise.empirical` of `m` random gradient samples: a draw is `Fᵀz/√m`, `O(m P)`."""
    keys = jax.random.split(jax.random.key(2), len(jax.tree.leaves(params)))
    leaves, treedef = jax.tree.flatten(params)
    samples = [1e-2 * jax.random.normal(k, (m, *p.shape)) for k, p in zip(keys, leaves)]
    return noise.empirical(jax.tree.unflatten(treedef, samples))


def make_step(tx: optax.GradientTransformation, extra: str | None = None):
    """A donated, jitted train step; ``extra`` names the statistic a measured model needs.

    ``"grad_fluctuation"``: loss, gradient and `g_A − g_B` from
    `sdn.optim.value_grad_and_fluctuation` (one vmapped pass over the two halves), so the
    step's cost is the whole structured-noise method. ``"grad_variance"``: a fixed
    variance pytree (the model's own cost; measuring `v` is the training loop's).
    """
    fluct = value_grad_and_fluctuation(loss_fn)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, x, y):
        if extra == "grad_fluctuation":
            _, grads, f = fluct(params, x, y)
            updates, state = tx.update(grads, state, params, grad_fluctuation=f)
        else:
            grads = jax.grad(loss_fn)(params, x, y)
            kwargs = {}
            if extra == "grad_variance":
                kwargs["grad_variance"] = jax.tree.map(jnp.ones_like, grads)
            updates, state = tx.update(grads, state, params, **kwargs)
        return optax.apply_updates(params, updates), state

    return step


def make_update_only(tx: optax.GradientTransformation, extra: str | None = None):
    @functools.partial(jax.jit, donate_argnums=(1,))
    def update(grads, state, params):
        kwargs = {extra: jax.tree.map(jnp.ones_like, grads)} if extra else {}
        return tx.update(grads, state, params, **kwargs)  # the updates too, or XLA drops the noise

    return update


def interleaved_medians(runners: dict, rounds: int, per_round: int) -> dict:
    """Per round, the median seconds per call of each runner; the runners take turns.

    Overheads are then taken within a round (paired) and their median over rounds
    reported, so that load drifts on a shared machine hit every runner alike.
    """
    times = {name: [] for name in runners}
    for run in runners.values():  # compile and warm up
        for _ in range(3):
            run()
    for _ in range(rounds):
        for name, run in runners.items():
            one = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                run()
                one.append(time.perf_counter() - t0)
            times[name].append(np.median(one))
    return {name: np.asarray(t) for name, t in times.items()}


def train_runner(tx, params, x, y, extra=None):
    step = make_step(tx, extra)
    carry = [jax.tree.map(jnp.copy, params), tx.init(params)]

    def run():
        carry[0], carry[1] = step(carry[0], carry[1], x, y)
        jax.block_until_ready(carry)

    return run


def update_runner(tx, params, extra=None):
    update = make_update_only(tx, extra)
    grads = jax.tree.map(jnp.ones_like, params)
    carry = [tx.init(jax.tree.map(jnp.copy, params))]

    def run():
        updates, carry[0] = update(grads, carry[0], params)
        jax.block_until_ready((updates, carry))

    return run


def table(times: dict, label: str) -> list[str]:
    base = times["sgd"]
    ref = np.median(times["add_noise+sgd"] - base)
    lines = []
    for name, t in times.items():
        extra = np.median(t - base)  # paired within rounds
        over = extra / np.median(base)
        vs = "" if name == "sgd" else f"{extra / ref:.2f}" if ref > 0 else "n/a"
        lines.append(f"| {label} | {name} | {np.median(t) * 1e3:.3f} | {over * 100:+.1f}% | {vs} |")
    return lines


def probe_throughput(params: dict, x: jax.Array, y: jax.Array, repeats: int = 3) -> list[str]:
    """Samples/s of the per-sample gradient probes against a Python loop of ``grad``.

    All three compute the per-coordinate mean and variance of the per-sample gradients
    over the same samples (`C_jj(w)`, docs/theory.md §1); the results are checked to agree.
    """

    def sample_loss(p, datum):
        xi, yi = datum
        return loss_fn(p, xi[None], yi[None])

    n = x.shape[0]
    moments = jax.jit(lambda p: gradient_moments(sample_loss, p, (x, y)))
    moments_256 = jax.jit(lambda p: gradient_moments(sample_loss, p, (x, y), chunk_size=256))
    grads = jax.jit(lambda p: per_sample_grads(sample_loss, p, (x, y)))
    one = jax.jit(jax.grad(sample_loss))

    @jax.jit
    def welford(acc, g):
        count, mean, m2 = acc
        count = count + 1
        delta = jax.tree.map(jnp.subtract, g, mean)
        mean = jax.tree.map(lambda m, d: m + d / count, mean, delta)
        m2 = jax.tree.map(lambda s, d, gi, m: s + d * (gi - m), m2, delta, g, mean)
        return count, mean, m2

    def loop():
        zeros = jax.tree.map(jnp.zeros_like, params)
        acc = (jnp.zeros((), jnp.float32), zeros, zeros)
        for i in range(n):
            acc = welford(acc, one(params, (x[i], y[i])))
        count, mean, m2 = acc
        return mean, jax.tree.map(lambda s: s / count, m2)

    def from_grads():
        g = grads(params)
        return jax.tree.map(lambda a: a.mean(0), g), jax.tree.map(lambda a: a.var(0), g)

    chunk = 1 if jax.default_backend() == "cpu" else 256
    runs = {
        f"sdn gradient_moments (default chunk: {chunk}, jit)": lambda: moments(params),
        "sdn gradient_moments (chunks of 256, jit)": lambda: moments_256(params),
        f"sdn per_sample_grads (default chunk: {chunk}, jit) + moments": from_grads,
        "Python loop: jitted grad per sample + jitted Welford update": loop,
    }
    best, results = {}, {}
    for name, fn in runs.items():
        results[name] = jax.block_until_ready(fn())  # compile
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    ref = results["Python loop: jitted grad per sample + jitted Welford update"]
    for mean, var in results.values():
        for a, b in zip(jax.tree.leaves((mean, var)), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-7)
    loop_time = best["Python loop: jitted grad per sample + jitted Welford update"]
    lines = [f"| probe ({n} digits samples) | seconds | samples/s | speed-up over the loop |"]
    lines.append("|---|---|---|---|")
    for name, t in best.items():
        lines.append(f"| {name} | {t:.3f} | {n / t:,.0f} | {loop_time / t:.1f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--probe-samples", type=int, default=1024)
    args = parser.parse_args()

    digits = load_digits()
    data_x = jnp.asarray(digits.data / 16.0, jnp.float32)
    data_y = jnp.asarray(digits.target, jnp.int32)
    params = init_mlp(jax.random.key(0))
    n_params = sum(p.size for p in jax.tree.leaves(params))
    # Factories: optax.add_noise keeps the caller's key in its state, which a donated
    # step deletes, so every runner gets a fresh key.
    pl = dict(alpha_g=1e-4, alpha_h=1e-2)
    # name: (factory, extra argument). Every model of sdn.noise, and the two-point mode.
    optimizers = {
        "sgd": (lambda key: optax.sgd(LR), None),
        "add_noise+sgd": (
            lambda key: optax.chain(optax.add_noise(1e-4, 0.0, key), optax.sgd(LR)),
            None,
        ),
        "sdn power_law ema+sgd": (lambda key: power_law_sgd(key, LR, **pl), None),
        "sdn power_law periodic+sgd": (
            lambda key: power_law_sgd(key, LR, **pl, anchor=periodic_anchor(every=100)),
            None,
        ),
        "sdn power_law ema two_point+sgd": (
            lambda key: power_law_sgd(key, LR, **pl, increments="two_point"),
            None,
        ),
        "sdn isotropic+sgd": (lambda key: noisy(key, noise.isotropic(1e-4)), None),
        "sdn isotropic two_point+sgd": (
            lambda key: noisy(key, noise.isotropic(1e-4), increments="two_point"),
            None,
        ),
        "sdn diagonal (pytree)+sgd": (
            lambda key: noisy(key, noise.diagonal(jax.tree.map(lambda p: 1e-4 + 0 * p, params))),
            None,
        ),
        "sdn alpha_stable+sgd": (lambda key: noisy(key, noise.alpha_stable(1.5, 1e-3)), None),
        "sdn empirical m=64+sgd": (lambda key: noisy(key, empirical_model(params, 64)), None),
        "sdn gradient_variance+sgd": (
            lambda key: noisy(key, noise.gradient_variance(1e-2)),
            "grad_variance",
        ),
        "fluctuation step (value_grad_and_fluctuation)+sgd": (
            lambda key: noisy(key, noise.fluctuation(31.0)),
            "grad_fluctuation",
        ),
    }
    print(
        f"# {datetime.date.today()}  {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {jax.devices()[0].platform}, jax {jax.__version__}, "
        f"optax {optax.__version__}; MLP {'→'.join(map(str, SIZES))} ({n_params} params), "
        f"{args.rounds} interleaved rounds of {args.per_round} steps, medians"
    )
    lines = []
    for batch in args.batches:
        idx = np.random.default_rng(0).integers(0, data_x.shape[0], batch)
        x, y = data_x[idx], data_y[idx]
        runners = {
            name: train_runner(make(jax.random.key(1)), params, x, y, extra)
            for name, (make, extra) in optimizers.items()
        }
        lines += table(interleaved_medians(runners, args.rounds, args.per_round), f"{batch}")
    runners = {
        name: update_runner(make(jax.random.key(1)), params, extra)
        for name, (make, extra) in optimizers.items()
        if extra != "grad_fluctuation"
    }
    lines += table(interleaved_medians(runners, args.rounds, args.per_round), "update only")
    print("| batch | optimizer | step (ms) | overhead over sgd | overhead / add_noise's |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))
    print()
    print(
        "\n".join(
            probe_throughput(params, data_x[: args.probe_samples], data_y[: args.probe_samples])
        )
    )


if __name__ == "__main__":
    main()
