"""Sweep throughput and memory: one vmapped sweep against a Python loop over points.

One run measures, on the escape experiment (SGD's SDE on `L = h x²/2` with PLD noise
`C = σ_g + σ_H x²`, mean first exit time from `(−wall, wall)`, docs/theory.md §4):

1. 256 points (curvature × σ_H, 16 × 16), a few hundred paths each, as one `sdn.sweep`
   run (chunks of points as one jitted vmapped program) against a Python loop that
   calls one jitted function per point; both are compiled before timing and must give
   the same numbers. Target: the sweep ≥ 5× faster.
2. 10⁶ first-exit paths through the sweep runner (64 points × 15 625 paths, 4 points
   per chunk), in a fresh process, with its peak memory (`getrusage` max RSS) beside
   that of a process that only runs a tiny sweep. Target: < 1 GiB.

Run: `python benchmarks/sweep.py [--paths 256 --chunk 256 --repeats 5]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from sdn import sweep

WALL, DT, MAX_STEPS = 0.5, 0.01, 5000


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def compare(f, design, chunk: int, repeats: int, stat: str):
    """Best times of one sweep run and of a loop of per-point jitted calls (same numbers),
    the results, and the median times."""
    n = len(design)
    one_point = jax.jit(f)
    key = jax.random.key(0)
    dtype = jnp.result_type(float)

    def run_sweep():
        return sweep.run(f, design, seed=0, chunk_size=chunk, progress=False)

    def run_loop():
        out = []
        for i in range(n):
            p = {k: jnp.asarray(v, dtype) for k, v in design.point(i).items()}
            out.append(float(one_point(jax.random.fold_in(key, i), p)[stat]))
        return np.asarray(out)

    swept, looped = run_sweep(), run_loop()  # compile both
    np.testing.assert_allclose(swept.values(stat), looped, rtol=1e-4, atol=1e-6)
    # Taking turns, so that a slow spell of the machine hits both alike.
    times = np.array([(_timed(run_sweep), _timed(run_loop)) for _ in range(repeats)])
    t_sweep, t_loop = times.min(0)
    return t_sweep, t_loop, swept, np.median(times, 0)


def _row(label: str, n: int, t: float) -> str:
    return f"{label:<50}{t:>9.2f}{n / t:>10.1f}"


def many_points(n_paths: int, chunk: int, repeats: int, stationary_chunk: int) -> None:
    escape = sweep.escape.bind(n_paths=n_paths, dt=DT, max_steps=MAX_STEPS)
    design = sweep.grid(
        curvature=np.geomspace(0.25, 2.0, 16).tolist(),
        sigma_h=np.geomspace(1.0, 16.0, 16).tolist(),
        wall=WALL,
    )
    n = len(design)
    t_sweep, t_loop, swept, med = compare(escape, design, chunk, repeats, "mean_time")
    inside = int(swept.values("inside").sum())
    times = swept.values("mean_time")
    print(
        f"escape: {n} points (curvature 0.25-2 x sigma_h 1-16, wall {WALL}), {n_paths} paths "
        f"each, dt {DT}, max {MAX_STEPS} steps, PLD; best of {repeats}, compiled beforehand\n"
        f"mean exit times {np.nanmin(times):.2f}-{np.nanmax(times):.2f}; {inside} of "
        f"{n * n_paths} paths still inside at max_steps\n"
    )
    print(f"{'method':<50}{'seconds':>9}{'points/s':>10}")
    print(_row(f"sdn.sweep.run, chunks of {chunk} points (vmap+jit)", n, t_sweep))
    print(_row("Python loop over a jitted per-point function", n, t_loop))
    print(f"sweep speed-up {t_loop / t_sweep:.2f}x (target >= 5x); same numbers (rtol 1e-4)")
    print(f"medians: sweep {med[0]:.2f} s, loop {med[1]:.2f} s, ratio {med[1] / med[0]:.2f}x\n")

    stationary = sweep.stationary.bind(n_paths=n_paths, dt=DT, n_steps=500)
    design = sweep.grid(
        **{k: sorted(set(design.points[k].tolist())) for k in ("curvature", "sigma_h")}
    )
    t_sweep, t_loop, _, med = compare(stationary, design, stationary_chunk, repeats, "q0.99")
    print(
        f"stationary (fixed length, no stragglers): the same {n} points, {n_paths} paths x "
        f"500 steps each\n"
    )
    label = f"sdn.sweep.run, chunks of {stationary_chunk} points (vmap+jit)"
    print(_row(label, n, t_sweep))
    print(_row("Python loop over a jitted per-point function", n, t_loop))
    print(f"sweep speed-up {t_loop / t_sweep:.2f}x; same numbers (rtol 1e-4)")
    print(f"medians: sweep {med[0]:.2f} s, loop {med[1]:.2f} s, ratio {med[1] / med[0]:.2f}x\n")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def million_paths(out: str, n_points: int, n_paths: int, chunk: int) -> None:
    """Child process: 10⁶ first-exit paths through the runner, peak RSS at the end."""
    f = sweep.escape.bind(n_paths=n_paths, dt=DT, max_steps=MAX_STEPS)
    curvature = np.linspace(0.25, 0.5, n_points).tolist()
    design = sweep.grid(curvature=curvature, sigma_h=16.0, wall=WALL)
    assert len(design) == n_points
    t = time.perf_counter()
    r = sweep.run(f, design, seed=1, chunk_size=chunk, out=out, progress=False)
    seconds = time.perf_counter() - t
    exited = int(r.values("exited").sum())
    print(f"{n_points * n_paths} {seconds:.2f} {exited} {_max_rss_mib():.0f}")


def tiny_sweep() -> None:
    """Child process: the memory floor (JAX runtime plus one small compiled sweep)."""
    f = sweep.escape.bind(n_paths=16, dt=DT, max_steps=MAX_STEPS)
    sweep.run(f, sweep.grid(curvature=[0.5], wall=WALL), progress=False)
    print(f"{_max_rss_mib():.0f}")


def memory(n_points: int, n_paths: int, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        me = [sys.executable, os.path.abspath(__file__)]
        args = ["--child", "million", "--out", os.path.join(tmp, "m"), "--points",
                str(n_points), "--paths", str(n_paths), "--chunk", str(chunk)]  # fmt: skip
        line = subprocess.run([*me, *args], check=True, capture_output=True, text=True).stdout
        total, seconds, exited, rss = line.split()
        floor = subprocess.run([*me, "--child", "tiny"], check=True, capture_output=True, text=True)
    total, rss, floor_rss = int(total), float(rss), float(floor.stdout)
    print(
        f"first exits through the runner: {total} paths ({n_points} points x {n_paths} paths, "
        f"{chunk} points = {chunk * n_paths} paths per chunk), curvature 0.25-0.5, "
        f"sigma_h 16, wall {WALL}\n"
        f"{float(seconds):.1f} s ({total / float(seconds) / 1e3:.0f} k paths/s), "
        f"{int(exited)} exited\n"
        f"peak RSS {rss:.0f} MiB (target < 1024 MiB); a process running only a tiny "
        f"sweep peaks at {floor_rss:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=256, help="paths per point (part 1)")
    parser.add_argument("--chunk", type=int, default=256, help="points per chunk (part 1)")
    parser.add_argument(
        "--stationary-chunk",
        type=int,
        default=64,
        help="points per chunk for the fixed-length sweep (its whole batch runs every step)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=["million", "tiny"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "million":
        return million_paths(args.out, args.points, args.paths, args.chunk)
    if args.child == "tiny":
        return tiny_sweep()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"{jnp.result_type(float)}\n"
    )
    many_points(args.paths, args.chunk, args.repeats, args.stationary_chunk)
    memory(n_points=64, n_paths=15_625, chunk=4)


if __name__ == "__main__":
    main()
