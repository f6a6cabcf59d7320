"""docs/theory.md §6.5: escape from a sharp and a flat minimum of a digits MLP.

    python scripts/network_escape.py [--quick | --full] [--chains K] [--steps N]
                                     [--barrier DL] [--dynamics D ...] [--out DIR]

Writes network_escape.csv (escape steps and final test accuracy per minimum and dynamic),
network_escape_minima.csv (the measured sharpness, noise and predictions) and
network_escape.png (the escaping efficiency E[L(w_t) − L(w*)] against steps) to DIR, and
prints the table and the verdict.
"""

import argparse
import dataclasses
from pathlib import Path

from sdn.experiments.network_escape import DYNAMICS, NetworkEscapeConfig, run_network_escape
from sdn.experiments.plots import plot_network_escape
from sdn.report import write_csv


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke sizes (about a minute)")
    size.add_argument("--full", action="store_true", help="docs/results.md sizes (the default)")
    parser.add_argument("--chains", type=int, help="override the number of chains")
    parser.add_argument("--steps", type=int, help="override the steps of each chain")
    parser.add_argument("--barrier", type=float, help="override the barrier ΔL")
    parser.add_argument("--dynamics", nargs="+", help=f"a subset of {', '.join(DYNAMICS)}")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = NetworkEscapeConfig.quick() if args.quick else NetworkEscapeConfig.full()
    changes = {"n_chains": args.chains, "n_steps": args.steps, "barrier": args.barrier}
    if args.dynamics:
        changes["dynamics"] = tuple(args.dynamics)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    result = run_network_escape(cfg, progress=True)
    write_csv(result.rows, args.out / "network_escape.csv")
    minima = [dict(minimum=k, **v) for k, v in result.minima.items()]
    write_csv(minima, args.out / "network_escape_minima.csv")
    plot_network_escape(result, args.out / "network_escape.png")
    print(cfg)
    print(result.table())
    print(" — ".join(result.verdict()))
    print(f"{result.seconds:.1f} s; files in {args.out}")


if __name__ == "__main__":
    main()
