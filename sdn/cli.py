"""The `sdn` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from sdn.experiments.demo import plot_demo, run_demo

    result = run_demo(n_paths=args.paths, seed=args.seed)
    print(
        f"Stationary law of x = w − w* on L = x²/2, η = 0.1, b = 1, σ_g = 1, σ_H = 5 "
        f"({args.paths} paths each)\n"
        f"PLD predicted: Student-t with ν = {result.df:.3f}, scale {result.scale:.4f}; "
        f"Langevin predicted: Gaussian, sd {result.gaussian_sd:.4f}\n"
    )
    print(result.table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "demo_tails.png"
    plot_demo(result, png)
    print(f"\nwrote {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn", description="State-dependent gradient noise: simulate, measure, reproduce."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="PLD vs Langevin ensembles: measured vs predicted tail quantiles, and a PNG"
    )
    demo.add_argument("--paths", type=int, default=20_000, help="paths per ensemble")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="sdn-out", help="folder for the figure")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"sdn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
