"""Ensemble throughput: sdn against diffrax, numpy and the random-number roofline.

One run measures, on the same problem (1-D power-law SDE `dx = −h x dt +
sqrt(η/b (σ_g + σ_H x²)) dB`, float32):

- sdn Euler–Maruyama (`sdn.simulate`), in path-steps per second, with Gaussian
  increments and in the weak mode (`increments="two_point"`);
- JAX drawing the same normals alone, one key per step for all paths (the roofline);
- a plain numpy loop;
- diffrax `Euler` with `UnsafeBrownianPath`, vmapped (its fastest setting);

first-exit times on 10⁴ paths: `sdn.first_exit_time` in both modes against diffrax with
an `Event`; and the ensemble problem of DiffEqGPU.jl (Utkarsh et al., 2024): the 3-D
linear SDE `dX = 1.5 X dt + 0.01 X dW` (diagonal noise), `X0 = 0.1`, Euler–Maruyama,
`dt = 2⁻⁸`, 256 steps, float32, final states only, in both modes. `--parts tune` searches
the engine's speed knobs (`sdn.EngineConfig`: block unrolling, chunk size, the lanes'
smallest batch; and the key implementation, which is not one) on the machine it runs on
and writes the fastest config (`--tune-out`, default `engine_config.json`; load it with
`sdn.EngineConfig.load`), so a new device is tuned once. Run:
`python benchmarks/ensemble.py [--paths 100000 --steps 1000]` (needs the `bench` extra:
`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import sdn
from sdn import domains, noise

H, ETA, B, SG, SH, DT = 1.0, 0.1, 1, 1.0, 2.0, 0.01


def best_time(fn, repeats=3, clock=time.perf_counter):
    fn()  # compile and warm up
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def cpu_time(fn, repeats=3):
    """Best CPU seconds of this process (all its threads): robust to other jobs on the
    machine, which stretch wall time but not the work done."""
    return best_time(fn, repeats, time.process_time)


def _drift(w):
    return H * w


PLD = sdn.sgd_sde(_drift, noise.power_law(SG, SH), ETA, B)


def sdn_simulate(n_paths, n_steps, increments="gaussian", key=1, config=None):
    return lambda: sdn.simulate(
        key, PLD, 0.0, dt=DT, n_steps=n_steps, n_paths=n_paths, progress=False,
        increments=increments, config=config,
    ).block_until_ready()  # fmt: skip


def sdn_weak(n_paths, n_steps, config=None):
    return sdn_simulate(n_paths, n_steps, "two_point", config=config)


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


def sdn_exits(n_paths, n_steps, increments="gaussian", corrected=False, config=None):
    dom = domains.interval(-0.5, 0.5)
    return lambda: sdn.first_exit_time(
        2, PLD, 0.0, dom, dt=DT, n_steps=n_steps, n_paths=n_paths,
        boundary_correction=corrected, increments=increments, config=config,
    ).time.block_until_ready()  # fmt: skip


def diffrax_exits(n_paths, max_steps):
    import diffrax

    event = diffrax.Event(lambda t, y, args, **kw: jnp.abs(y) >= 0.5)
    return diffrax_ensemble(n_paths, max_steps, lambda sol: sol.ts[-1], event=event)


# DiffEqGPU.jl's SDE ensemble benchmark: dX = 1.5 X dt + 0.01 X dW, diagonal noise.
LINEAR = sdn.SDE(lambda w: 1.5 * w, noise.power_law(0.0, 0.01**2), 1.0)
LINEAR_DT, LINEAR_STEPS = 2.0**-8, 256
# Their published times (Utkarsh et al. 2024, benchmark data): GPU Float32, CPU threads Float64.
DIFFEQGPU_MS = {2**17: (14.1, 43.1), 2**21: (181.7, 696.8), 2**23: (715.9, 6702.0)}


def linear_ensemble(n_paths, increments, chunk_size=None, key=3):
    def run():
        return sdn.simulate(
            key, LINEAR, jnp.full(3, 0.1, jnp.float32), dt=LINEAR_DT, n_steps=LINEAR_STEPS,
            n_paths=n_paths, increments=increments, chunk_size=chunk_size, progress=False,
        ).block_until_ready()  # fmt: skip

    return run


def diffeqgpu(sizes, repeats):
    print(
        f"\nDiffEqGPU.jl's ensemble problem: 3-D dX = 1.5 X dt + 0.01 X dW, X0 = 0.1, EM, "
        f"dt = 2^-8, {LINEAR_STEPS} steps, float32, final states (best of {repeats})"
    )
    print(f"{'paths':>9} {'increments':>10} {'ms':>10} {'path-steps/s':>13} {'DiffEqGPU GPU':>14}")
    exact_mean = 0.1 * math.exp(1.5)
    for n in sizes:
        for inc in ("gaussian", "two_point"):
            run = linear_ensemble(n, inc)
            t = best_time(run, repeats)
            x = np.asarray(run(), np.float64)
            theirs = DIFFEQGPU_MS.get(n)
            ref = f"{n * LINEAR_STEPS / (theirs[0] / 1e3):14.2e}" if theirs else f"{'':>14}"
            print(f"{n:>9} {inc:>10} {t * 1e3:10.1f} {n * LINEAR_STEPS / t:13.2e} {ref}")
            # a check that the right problem ran: E X(1) = 0.1 e^1.5 (EM: 0.1 (1 + 1.5 dt)^256)
            em_mean = 0.1 * (1 + 1.5 * LINEAR_DT) ** LINEAR_STEPS
            sem = x.std() / math.sqrt(x.size)
            assert abs(x.mean() - em_mean) < 5 * sem + 1e-6, (x.mean(), em_mean, exact_mean)
        sys.stdout.flush()
    print(
        "DiffEqGPU.jl reports 3.0e9 path-steps/s on one GPU (Float32) and 7.7e8 on a "
        "multi-threaded CPU (Float64) at 2^21 paths"
    )


def tune(n_paths, n_steps, exit_paths, repeats, out):
    """Search the engine's speed knobs (`sdn.EngineConfig`) on this machine, one at a time
    from the backend's defaults, and write the fastest config to `out`.

    None of the knobs searched changes a number (each field's docstring says so, and the
    tests check it), so the fastest is simply the best. The key implementation is timed
    too, for information: it changes every number, so it is no engine knob.
    """
    best = sdn.EngineConfig.for_backend()
    print(
        f"\ntuning on {jax.default_backend()}: PLD {n_paths} paths x {n_steps} steps "
        f"(M path-steps/s), first exits of {exit_paths} paths (s); from {best}"
    )

    def speed(config):
        """Path-steps per µs of simulate (both modes) plus exits per second (both modes)."""
        g = n_paths * n_steps / best_time(sdn_simulate(n_paths, n_steps, config=config), repeats)
        w = n_paths * n_steps / best_time(sdn_weak(n_paths, n_steps, config=config), repeats)
        eg = best_time(sdn_exits(exit_paths, 20_000, config=config), repeats)
        ew = best_time(sdn_exits(exit_paths, 20_000, "two_point", config=config), repeats)
        print(
            f"  simulate gaussian {g / 1e6:9.1f}  two_point {w / 1e6:9.1f}   "
            f"exits gaussian {eg:8.3f} s  two_point {ew:8.3f} s"
        )
        # one score per config: the geometric mean of the four speeds
        return (g * w / (eg * ew)) ** 0.25

    score = speed(best)
    search = {
        "unroll": (False, True),
        "chunk_size": (1 << 16, 1 << 18, 1 << 20, 1 << 22),
        "smallest_bucket": (256, 4096, 1 << 14, 1 << 16),
    }
    for field, values in search.items():
        for value in values:
            if getattr(best, field) == value:
                continue
            candidate = best.replace(**{field: value})
            print(f"  {field} = {value}:")
            s = speed(candidate)
            if s > score:
                best, score = candidate, s
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
        key = jax.random.key(1, impl=impl)
        g = n_paths * n_steps / best_time(sdn_simulate(n_paths, n_steps, key=key), repeats)
        w = (
            n_paths
            * n_steps
            / best_time(sdn_simulate(n_paths, n_steps, increments="two_point", key=key), repeats)
        )
        print(f"  keys {impl:13}    gaussian {g / 1e6:9.1f}   two_point {w / 1e6:9.1f}")
    best.save(out)
    print(f"fastest: {best}\nwritten to {out} (sdn.EngineConfig.load({str(out)!r}))")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--exit-paths", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--diffeqgpu",
        type=int,
        nargs="*",
        default=None,
        help="log2 of the path counts for DiffEqGPU's problem (default: 17 on the CPU; "
        "17 21 23 on an accelerator); none to skip",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["numpy", "diffrax"], help="peers to leave out"
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["table", "exits", "diffeqgpu"],
        choices=["table", "exits", "diffeqgpu", "tune"],
        help="what to run (tune: search sdn.EngineConfig on this machine, write the best)",
    )
    parser.add_argument(
        "--tune-out", default="engine_config.json", help="where --parts tune writes its config"
    )
    args = parser.parse_args()
    n, s, reps = args.paths, args.steps, args.repeats
    print(
        f"jax {jax.__version__}, {platform.processor() or platform.machine()}, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s) "
        f"({jax.devices()[0].device_kind})"
    )
    if "table" in args.parts:
        table(n, s, reps, args.skip)
    if "exits" in args.parts:
        exits(args.exit_paths, reps, args.skip)
    sizes = args.diffeqgpu
    if sizes is None:
        sizes = [17] if jax.default_backend() == "cpu" else [17, 21, 23]
    if "diffeqgpu" in args.parts and sizes:
        diffeqgpu([1 << k for k in sizes], reps)
    if "tune" in args.parts:
        tune(n, s, args.exit_paths, reps, args.tune_out)


def table(n, s, reps, skip):
    print(f"1-D power-law SDE, {n} paths x {s} steps, float32 (best of {reps})\n")
    rows = {}
    makers = [
        ("JAX normal draws alone (roofline)", roofline),
        ("sdn.simulate, Euler-Maruyama", sdn_simulate),
        ("sdn.simulate, EM, two-point (weak)", sdn_weak),
    ]
    if "numpy" not in skip:
        makers.append(("numpy loop", numpy_loop))
    if "diffrax" not in skip:
        makers.append(("diffrax Euler + UnsafeBrownianPath, vmap", diffrax_simulate))
    cpu = {}
    for name, make in makers:
        try:
            rows[name] = n * s / best_time(make(n, s), reps)
            cpu[name] = n * s / cpu_time(make(n, s), reps)
        except ImportError:
            rows[name] = cpu[name] = float("nan")
    ours = rows["sdn.simulate, Euler-Maruyama"]
    roof = rows["JAX normal draws alone (roofline)"]
    croof = cpu["JAX normal draws alone (roofline)"]
    # Wall time counts what a user waits for; CPU time (this process, all its threads)
    # counts the work done, which other jobs on the machine do not stretch.
    print(f"{'':44} {'---------- wall time ----------':>39} {'------ CPU time ------':>23}")
    print(
        f"{'method':44} {'M path-steps/s':>15} {'sdn / this':>11} {'/ roofline':>11} "
        f"{'M per CPU s':>11} {'/ roofline':>11}"
    )
    for name, rate in rows.items():
        print(
            f"{name:44} {rate / 1e6:15.1f} {ours / rate:11.2f} {rate / roof:11.2f} "
            f"{cpu[name] / 1e6:11.1f} {cpu[name] / croof:11.2f}"
        )
    weak = rows["sdn.simulate, EM, two-point (weak)"]
    cweak = cpu["sdn.simulate, EM, two-point (weak)"]
    print(
        f"weak mode: {weak / roof:.1f}x the normal-draw roofline in wall time, "
        f"{cweak / croof:.1f}x in CPU time (target >= 10x); {weak / ours:.1f}x sdn's "
        f"Gaussian mode"
    )
    sys.stdout.flush()


def exits(m, reps, skip):
    n_steps = 20_000
    print(
        f"\nfirst exit from (-0.5, 0.5), {m} paths, dt {DT}, max {n_steps} steps (best of {reps})"
    )
    times, cpu = {}, {}
    for label, inc, corrected in [
        ("sdn.first_exit_time, Gaussian", "gaussian", False),
        ("sdn.first_exit_time, two-point (weak)", "two_point", False),
        ("sdn.first_exit_time, Gaussian + bridge", "gaussian", True),
        ("sdn.first_exit_time, two-point + shift", "two_point", True),
    ]:
        times[label] = best_time(sdn_exits(m, n_steps, inc, corrected), reps)
        cpu[label] = cpu_time(sdn_exits(m, n_steps, inc, corrected), reps)
        print(f"{label:44} {times[label]:10.3f} s   {cpu[label]:8.3f} CPU s")
    names = [
        "sdn.first_exit_time, Gaussian",
        "sdn.first_exit_time, two-point (weak)",
        "sdn.first_exit_time, Gaussian + bridge",
        "sdn.first_exit_time, two-point + shift",
    ]
    g, w, gb, ws = (times[k] for k in names)
    cg, cw, cgb, cws = (cpu[k] for k in names)
    print(
        f"weak mode speed-up over Gaussian (target >= 5x): wall {g / w:.1f}x monitored, "
        f"{gb / ws:.1f}x with their boundary corrections; CPU time {cg / cw:.1f}x, {cgb / cws:.1f}x"
    )
    if "diffrax" not in skip:
        try:
            t_dfx = best_time(diffrax_exits(m, n_steps), reps)
            name = "diffrax Euler + Event, vmap"
            print(f"{name:44} {t_dfx:10.3f} s   sdn speed-up {t_dfx / g:.1f}x (Gaussian)")
        except ImportError:
            print("diffrax not installed: pip install -e '.[bench]'")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
