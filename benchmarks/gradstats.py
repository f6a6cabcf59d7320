"""Cost of per-sample gradient statistics: backprop signals against per-sample gradients.

For each network and batch, all measured in one run (every call ends with
``block_until_ready``; medians reported):

- ``batch gradient``: one jitted ``grad`` of the mean loss (the unit of cost; it and
  ``gradient_statistics`` take turns in each round);
- ``gradient_statistics``: mean, per-coordinate variance and per-sample norms from the
  backprop signals (`sdn.train.gradstats.batch_gradient_statistics`);
- ``gradient_moments``: the chunked per-sample path of `sdn.train.probes` (its default
  chunk: one sample on the CPU, 256 on accelerators);
- ``vmap(grad) loop``: ``vmap(grad)`` over chunks of 256 samples in a Python loop,
  moments accumulated in float64 on the host.

The variances of the three are checked to agree. A second table compares, on one
batch of the digits MLP, the two ``grad_variance`` estimators of ``sdn.train`` — the
per-sample variance of the whole batch and `m · Var` of `m` microbatch gradients —
against the per-sample variance of the full training set.

Target (issue 15): ``gradient_statistics`` at most 2× a batch gradient and at least
100× faster than the per-sample path on the MLP at batch 1024.

    python benchmarks/gradstats.py [--rounds 5 --slow-rounds 2]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sdn.train import CNN, MLP, load_digits, sample_loss, split_model
from sdn.train.gradstats import batch_gradient_statistics
from sdn.train.loop import batch_loss, functional_apply
from sdn.train.probes import gradient_moments


def timed(fn, rounds: int) -> np.ndarray:
    """Seconds of `rounds` calls after one warm-up (compilation) call."""
    jax.block_until_ready(fn())
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        out.append(time.perf_counter() - t0)
    return np.asarray(out)


def interleaved(calls: dict, rounds: int) -> dict:
    """Median over rounds of each call's median of 3; the calls take turns every round,
    so that load drifts on a shared machine hit them alike."""
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name].append(np.median(timed(call, 3)))
    return {name: np.median(v) for name, v in times.items()}


def batch_of(data, n: int, seed: int = 0):
    idx = np.random.default_rng(seed).integers(0, data.x_train.shape[0], n)
    return jnp.asarray(data.x_train[idx]), jnp.asarray(data.y_train[idx])


def runners(model: nnx.Module, x, y):
    graphdef, params = split_model(model)
    apply = functional_apply(graphdef)
    grad = jax.jit(jax.grad(batch_loss(apply)))
    stats = jax.jit(lambda p, x, y: batch_gradient_statistics(graphdef, p, x, y).variance)
    ell = sample_loss(apply)
    moments = jax.jit(lambda p, x, y: gradient_moments(ell, p, (x, y)).variance)
    vgrad = jax.jit(jax.vmap(jax.grad(ell), (None, 0)))

    def vmap_loop():
        s1 = s2 = None
        for i in range(0, x.shape[0], 256):
            g = vgrad(params, (x[i : i + 256], y[i : i + 256]))
            g = jax.tree.map(lambda a: np.asarray(a, np.float64), g)
            a1 = jax.tree.map(lambda a: a.sum(0), g)
            a2 = jax.tree.map(lambda a: (a**2).sum(0), g)
            s1 = a1 if s1 is None else jax.tree.map(np.add, s1, a1)
            s2 = a2 if s2 is None else jax.tree.map(np.add, s2, a2)
        n = x.shape[0]
        return jax.tree.map(lambda a, b: b / n - (a / n) ** 2, s1, s2)

    fast = {
        "batch gradient": lambda: grad(params, x, y),
        "gradient_statistics": lambda: stats(params, x, y),
    }
    slow = {
        "gradient_moments": lambda: moments(params, x, y),
        "vmap(grad) loop": vmap_loop,
    }
    return fast, slow


def agree(results: dict) -> float:
    """Largest relative difference of the variances against the vmap loop's."""
    ref = jax.tree.leaves(results["vmap(grad) loop"])
    worst = 0.0
    for name in ("gradient_statistics", "gradient_moments"):
        for a, b in zip(jax.tree.leaves(results[name]), ref):
            worst = max(worst, float(np.max(np.abs(np.asarray(a) - b)) / np.max(b)))
    return worst


def cost_table(rounds: int, slow_rounds: int) -> list[str]:
    data = load_digits(seed=0)
    cases = [
        ("MLP 64→512→512→10", lambda: MLP(64, (512, 512), 10, rngs=nnx.Rngs(0)), 1024, (64,)),
        ("MLP 64→512→512→10", lambda: MLP(64, (512, 512), 10, rngs=nnx.Rngs(0)), 4096, (64,)),
        ("CNN 8×8 (16, 32), 64", lambda: CNN((8, 8), 10, rngs=nnx.Rngs(0)), 1024, (8, 8)),
    ]
    lines = [
        "| network | batch | batch gradient ms | gradient_statistics ms (× grad) | "
        "gradient_moments ms | vmap(grad) loop ms | speed-up vs moments / vmap | max rel diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, make, n, shape in cases:
        x, y = batch_of(data, n)
        x = x.reshape(n, *shape)
        fast, slow = runners(make(), x, y)
        results = {k: f() for k, f in {**fast, **slow}.items() if k != "batch gradient"}
        diff = agree(results)
        t = interleaved(fast, rounds)
        t |= {k: np.median(timed(f, slow_rounds)) for k, f in slow.items()}
        g, s = t["batch gradient"], t["gradient_statistics"]
        lines.append(
            f"| {name} | {n} | {g * 1e3:.1f} | {s * 1e3:.1f} ({s / g:.2f}×) | "
            f"{t['gradient_moments'] * 1e3:.0f} | {t['vmap(grad) loop'] * 1e3:.0f} | "
            f"{t['gradient_moments'] / s:.0f}× / {t['vmap(grad) loop'] / s:.0f}× | {diff:.1e} |"
        )
        print(lines[-1], flush=True)
    return lines


def estimator_table(batch: int = 1024, microbatches: int = 32, repeats: int = 20) -> list[str]:
    """Error of the two ``grad_variance`` estimators against the full-data `C_jj`."""
    data = load_digits(seed=0)
    model = MLP(64, (512, 512), 10, rngs=nnx.Rngs(0))
    graphdef, params = split_model(model)
    apply = functional_apply(graphdef)
    x_all, y_all = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    full = batch_gradient_statistics(graphdef, params, x_all, y_all).variance
    full = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(full)])
    live = full > 1e-12 * full.max()
    grad = jax.jit(jax.grad(batch_loss(apply)))

    @jax.jit
    def per_sample(x, y):
        v = batch_gradient_statistics(graphdef, params, x, y).variance
        return jax.tree.map(lambda a: a * batch / (batch - 1), v)

    def micro(x, y):
        m, k = microbatches, batch // microbatches
        gs = [grad(params, x[i * k : (i + 1) * k], y[i * k : (i + 1) * k]) for i in range(m)]
        return jax.tree.map(lambda *a: k * np.var(np.stack(a), 0, ddof=1), *gs)

    errs = {"per-sample (whole batch)": [], f"{microbatches} microbatches": []}
    for r in range(repeats):
        x, y = batch_of(data, batch, seed=100 + r)
        for name, fn in zip(errs, (per_sample, micro)):
            est = np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree.leaves(fn(x, y))])
            errs[name].append(np.median(np.abs(est[live] - full[live]) / full[live]))
    lines = [
        f"| estimator of C_jj (digits MLP, init, batch {batch}) | median relative error "
        f"over coordinates (mean ± sd over {repeats} batches) |",
        "|---|---|",
    ]
    for name, e in errs.items():
        lines.append(f"| {name} | {np.mean(e):.3f} ± {np.std(e):.3f} |")
        print(lines[-1], flush=True)
    return lines


def step_table(batch: int = 1024, microbatches: int = 32, rounds: int = 5) -> list[str]:
    """One jitted ``grad_variance`` train step of the digits MLP: per-sample variance of
    the batch against `microbatches` microbatch gradients (and a plain SGD step)."""
    import optax

    from sdn import optim
    from sdn.train.loop import make_train_step

    data = load_digits(seed=0)
    graphdef, params = split_model(MLP(64, (512, 512), 10, rngs=nnx.Rngs(0)))
    apply = functional_apply(graphdef)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    noise = optim.from_gradient_variance(0, 32, batch)
    tx = optax.chain(noise, optax.sgd(0.05))
    key = jax.random.key(0)
    steps = {
        "plain SGD step": make_train_step(apply, optax.sgd(0.05), batch),
        "grad_variance, per-sample": make_train_step(
            apply, tx, batch, extra_args=("grad_variance",)
        ),
        f"grad_variance, {microbatches} microbatches": make_train_step(
            lambda p, x: apply(p, x),
            tx,
            batch,
            microbatches=microbatches,
            extra_args=("grad_variance",),
        ),
    }
    state = tx.init(params)
    lines = ["| train step (digits MLP, batch 1024) | ms | × plain SGD |", "|---|---|---|"]
    calls = {}
    for name, step in steps.items():
        f = jax.jit(step)
        s0 = optax.sgd(0.05).init(params) if name == "plain SGD step" else state
        calls[name] = lambda f=f, s0=s0: f(params, s0, key, x, y)
    t = interleaved(calls, rounds)
    for name, sec in t.items():
        lines.append(f"| {name} | {sec * 1e3:.1f} | {sec / t['plain SGD step']:.2f} |")
        print(lines[-1], flush=True)
    return lines


def monitor_table(batch: int = 256, every: int = 10, steps: int = 200, rounds: int = 5):
    """Training with the noise-scale monitor measuring every `every` steps against plain
    training: `steps` jitted steps of the digits MLP in one scan each, same run."""
    import optax

    from sdn.train import NoiseScaleMonitor
    from sdn.train.loop import make_monitored_step, make_train_step

    data = load_digits(seed=0)
    graphdef, params = split_model(MLP(64, (512, 512), 10, rngs=nnx.Rngs(0)))
    apply = functional_apply(graphdef)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    tx, monitor = optax.sgd(0.05), NoiseScaleMonitor(every=every)
    plain = make_train_step(apply, tx, batch)
    monitored = make_monitored_step(apply, tx, batch, monitor)
    state = tx.init(params)

    @jax.jit
    def run_plain(p, s, key):
        def body(c, k):
            return plain(*c, k, x, y)[:2], None

        return jax.lax.scan(body, (p, s), jax.random.split(key, steps))[0]

    @jax.jit
    def run_monitored(p, s, key):
        def body(c, kt):
            p, s, ns = c
            p, s, _, ns = monitored(p, s, kt[0], x, y, ns, kt[1])
            return (p, s, ns), None

        xs = (jax.random.split(key, steps), jnp.arange(steps))
        return jax.lax.scan(body, (p, s, monitor.init()), xs)[0]

    key = jax.random.key(0)
    calls = {
        "plain training": lambda: run_plain(params, state, key),
        f"with the noise-scale monitor (N = {every})": lambda: run_monitored(params, state, key),
    }
    t = interleaved(calls, rounds)
    lines = [
        f"| {steps} steps (digits MLP 512×512, batch {batch}) | s | × plain |",
        "|---|---|---|",
    ]
    for name, sec in t.items():
        lines.append(f"| {name} | {sec:.3f} | {sec / t['plain training']:.3f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="turns of the fast methods")
    parser.add_argument("--slow-rounds", type=int, default=2, help="of the per-sample paths")
    args = parser.parse_args()
    stamp = datetime.date.today().isoformat()
    print(
        f"# {stamp}  {platform.machine()}, {jax.device_count()} device(s), "
        f"{jax.default_backend()}, jax {jax.__version__}; medians"
    )
    lines = cost_table(args.rounds, args.slow_rounds)
    lines += [""] + estimator_table()
    lines += [""] + step_table(rounds=args.rounds)
    lines += [""] + monitor_table(rounds=args.rounds)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
