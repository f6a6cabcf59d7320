"""Ensemble throughput: sdn against diffrax, numpy and the random-number roofline.

One run measures, on the same problem (1-D power-law SDE `dx = −h x dt +
sqrt(η/b (σ_g + σ_H x²)) dB`, float32):

- sdn Euler–Maruyama (`sdn.simulate`), in path-steps per second;
- JAX drawing the same normals alone, one key per step for all paths (the roofline);
- a plain numpy loop;
- diffrax `Euler` with `UnsafeBrownianPath`, vmapped (its fastest setting);

and first-exit times on 10⁴ paths: `sdn.first_exit_time` against diffrax with an
`Event`. Run: `python benchmarks/ensemble.py [--paths 100000 --steps 1000]`
(needs the `bench` extra: `pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import sdn
from sdn import domains, noise

H, ETA, B, SG, SH, DT = 1.0, 0.1, 1, 1.0, 2.0, 0.01


def best_time(fn, repeats=3):
    fn()  # compile and warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def sdn_simulate(n_paths, n_steps):
    sde = sdn.sgd_sde(lambda w: H * w, noise.power_law(SG, SH), ETA, B)
    return lambda: sdn.simulate(
        1, sde, 0.0, dt=DT, n_steps=n_steps, n_paths=n_paths, progress=False
    ).block_until_ready()


def roofline(n_paths, n_steps):
    @jax.jit
    def draws(key):
        def body(acc, k):
            return acc + jax.random.normal(k, (n_paths,)), None

        return jax.lax.scan(body, jnp.zeros(n_paths), jax.random.split(key, n_steps))[0]

    return lambda: draws(jax.random.key(0)).block_until_ready()


def numpy_loop(n_paths, n_steps):
    def run():
        rng = np.random.default_rng(0)
        x = np.zeros(n_paths, np.float32)
        scale = np.float32(np.sqrt(ETA / B * DT))
        for _ in range(n_steps):
            z = rng.standard_normal(n_paths, dtype=np.float32)
            x = x - np.float32(H * DT) * x + scale * np.sqrt(SG + SH * x * x) * z
        return x

    return run


def diffrax_ensemble(n_paths, n_steps, read, **solve_kw):
    """A jitted, vmapped diffrax Euler solve of the benchmark SDE (its fastest setting)."""
    import diffrax

    drift = diffrax.ODETerm(lambda t, y, args: -H * y)

    def diffusion(t, y, args):
        return jnp.sqrt(ETA / B * (SG + SH * y * y))

    @jax.jit
    def run(keys):
        def one(key):
            bm = diffrax.UnsafeBrownianPath(shape=(), key=key)
            terms = diffrax.MultiTerm(drift, diffrax.ControlTerm(diffusion, bm))
            sol = diffrax.diffeqsolve(
                terms,
                diffrax.Euler(),
                0.0,
                n_steps * DT,
                DT,
                jnp.float32(0.0),
                max_steps=n_steps + 1,
                adjoint=diffrax.ForwardMode(),
                **solve_kw,
            )
            return read(sol)

        return jax.vmap(one)(keys)

    keys = jax.random.split(jax.random.key(0), n_paths)
    return lambda: run(keys).block_until_ready()


def diffrax_simulate(n_paths, n_steps):
    import diffrax

    return diffrax_ensemble(n_paths, n_steps, lambda sol: sol.ys[0], saveat=diffrax.SaveAt(t1=True))


def sdn_exits(n_paths, max_steps):
    sde = sdn.sgd_sde(lambda w: H * w, noise.power_law(SG, SH), ETA, B)
    dom = domains.interval(-0.5, 0.5)
    return lambda: sdn.first_exit_time(
        2, sde, 0.0, dom, dt=DT, max_steps=max_steps, n_paths=n_paths, bridge=False
    ).time.block_until_ready()


def diffrax_exits(n_paths, max_steps):
    import diffrax

    event = diffrax.Event(lambda t, y, args, **kw: jnp.abs(y) >= 0.5)
    return diffrax_ensemble(n_paths, max_steps, lambda sol: sol.ts[-1], event=event)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--exit-paths", type=int, default=10_000)
    args = parser.parse_args()
    n, s = args.paths, args.steps
    print(
        f"jax {jax.__version__}, {platform.processor() or platform.machine()}, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)"
    )
    print(f"1-D power-law SDE, {n} paths x {s} steps, float32 (best of 3)\n")
    rows = {}
    for name, make in [
        ("JAX normal draws alone (roofline)", roofline),
        ("sdn.simulate, Euler-Maruyama", sdn_simulate),
        ("numpy loop", numpy_loop),
        ("diffrax Euler + UnsafeBrownianPath, vmap", diffrax_simulate),
    ]:
        try:
            rows[name] = n * s / best_time(make(n, s))
        except ImportError:
            rows[name] = float("nan")
    ours = rows["sdn.simulate, Euler-Maruyama"]
    print(f"{'method':44} {'M path-steps/s':>15} {'sdn / this':>11}")
    for name, rate in rows.items():
        print(f"{name:44} {rate / 1e6:15.1f} {ours / rate:11.2f}")

    m = args.exit_paths
    max_steps = 20_000
    print(f"\nfirst exit from (-0.5, 0.5), {m} paths, dt {DT} (best of 3)")
    t_ours = best_time(sdn_exits(m, max_steps))
    print(f"{'sdn.first_exit_time':44} {t_ours:10.3f} s")
    try:
        t_dfx = best_time(diffrax_exits(m, max_steps))
        name = "diffrax Euler + Event, vmap"
        print(f"{name:44} {t_dfx:10.3f} s   sdn speed-up {t_dfx / t_ours:.1f}x")
    except ImportError:
        print("diffrax not installed: pip install -e '.[bench]'")


if __name__ == "__main__":
    main()
