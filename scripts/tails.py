"""docs/theory.md §6.2: stationary tails of real SGD, the power-law dynamic and Langevin.

    python scripts/tails.py [--quick] [--out DIR]

Writes tails.csv (quantiles and Hill indices beside the theory) and tails.png to DIR.
"""

import argparse
from pathlib import Path

from sdn.experiments.plots import plot_tails
from sdn.experiments.tails import TailsConfig, run_tails
from sdn.report import write_csv


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_tails(TailsConfig.quick() if args.quick else TailsConfig())
    write_csv(result.rows, args.out / "tails.csv")
    plot_tails(result, args.out / "tails.png")
    print(result.table())
    print(f"files in {args.out}")


if __name__ == "__main__":
    main()
