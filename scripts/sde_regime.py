"""docs/theory.md §5 (Li et al.'s test): is SGD on MNIST-1D in the SDE regime?

    python scripts/sde_regime.py [--quick | --full] [--sde-steps K] [--seeds S]
                                 [--learning-rates η ...] [--ells ℓ ...] [--out DIR]

Trains SGD on half batches (ℓ = 1) and SVAG at ℓ = 2, 4, 8 at equal SDE time for each
learning rate, extrapolates test accuracy and training loss linearly in 1/ℓ to the SDE
limit and compares ℓ = 1 with it. Writes sde_regime_runs.csv (one row per learning rate,
ℓ and seed), sde_regime.csv (per learning rate and metric: ℓ = 1, the limit, their
difference and its interval), sde_regime_noise.csv (B_simple of the ℓ = 1 runs) and
sde_regime.png to DIR.
"""

import argparse
import dataclasses
from pathlib import Path

from sdn.experiments.claims import write_csv
from sdn.experiments.sde_regime import (
    SdeRegimeConfig,
    plot_sde_regime,
    regime_verdicts,
    run_sde_regime,
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke sizes (seconds)")
    size.add_argument("--full", action="store_true", help="the docs' sizes (the default)")
    parser.add_argument("--sde-steps", type=int, help="override K (ℓ runs ℓK steps)")
    parser.add_argument("--seeds", type=int, help="override the number of seeds")
    parser.add_argument("--learning-rates", type=float, nargs="+", help="override the η")
    parser.add_argument("--ells", type=int, nargs="+", help="override the ℓ (1 and two ≥ 2)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = SdeRegimeConfig.quick() if args.quick else SdeRegimeConfig.full()
    changes = dict(sde_steps=args.sde_steps, seeds=args.seeds)
    if args.learning_rates:
        changes["learning_rates"] = tuple(args.learning_rates)
    if args.ells:
        changes["ells"] = tuple(args.ells)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    result = run_sde_regime(cfg)
    write_csv(result.runs, args.out / "sde_regime_runs.csv")
    write_csv(result.comparisons, args.out / "sde_regime.csv")
    write_csv(result.noise, args.out / "sde_regime_noise.csv")
    plot_sde_regime(result, args.out / "sde_regime.png")
    print(cfg)
    print(result.table())
    for lr, (verdict, reason) in regime_verdicts(result).items():
        print(f"η = {lr:g}: {verdict.value}: {reason}")
    print(f"{result.seconds:.1f} s; files in {args.out}")


if __name__ == "__main__":
    main()
