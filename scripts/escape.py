"""docs/theory.md §6.3: escape times against sharpness and barrier height, with quadrature.

    python scripts/escape.py [--quick] [--out DIR]

Writes escape.csv (one row per dynamic and point) and escape.png to DIR.
"""

import argparse
from pathlib import Path

from sdn.experiments.escape import EscapeConfig, run_escape
from sdn.experiments.plots import plot_escape
from sdn.report import write_csv


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_escape(EscapeConfig.tiny() if args.quick else EscapeConfig(), progress=True)
    write_csv(result.rows, args.out / "escape.csv")
    plot_escape(result, args.out / "escape.png")
    print(result.table())
    print(f"files in {args.out}")


if __name__ == "__main__":
    main()
