"""docs/theory.md §6.7 on the network: the rival escape laws ranked on SGD's escapes from
the rescaled family of §6.5's digits MLP, over several scales and barriers.

    python scripts/network_laws.py [--quick | --full] [--scales S ...] [--barriers DL ...]
                                   [--dynamics D ...] [--chains K] [--steps N] [--out DIR]

Writes network_laws.csv (one row per dynamic, scale and barrier), network_laws_fits.csv
(each law's fit per dynamic) and network_laws.png to DIR, and prints the table.
"""

import argparse
import dataclasses
from pathlib import Path

from sdn.experiments.network_escape import DYNAMICS
from sdn.experiments.network_escape.laws import NetworkLawsConfig, run_network_laws
from sdn.experiments.plots import plot_escape_laws
from sdn.report import write_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke sizes (a few minutes)")
    size.add_argument("--full", action="store_true", help="the documented sizes (the default)")
    parser.add_argument("--scales", type=float, nargs="+", help="layer rescalings s of w*")
    parser.add_argument("--barriers", type=float, nargs="+", help="barriers ΔL along v")
    parser.add_argument("--dynamics", nargs="+", help=f"a subset of {', '.join(DYNAMICS)}")
    parser.add_argument("--chains", type=int, help="chains per scale and dynamic")
    parser.add_argument("--steps", type=int, help="steps per chain")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    cfg = NetworkLawsConfig.quick() if args.quick else NetworkLawsConfig.full()
    changes = {
        "scales": tuple(args.scales) if args.scales else None,
        "barriers": tuple(args.barriers) if args.barriers else None,
        "dynamics": tuple(args.dynamics) if args.dynamics else None,
        "n_chains": args.chains,
        "n_steps": args.steps,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    args.out.mkdir(parents=True, exist_ok=True)
    res = run_network_laws(cfg, progress=True)
    print(res.table(), flush=True)
    write_csv(res.rows, args.out / "network_laws.csv")
    write_csv(res.fit_rows(), args.out / "network_laws_fits.csv")
    if res.rankings:
        plot_escape_laws(res, args.out / "network_laws.png")


if __name__ == "__main__":
    main()
