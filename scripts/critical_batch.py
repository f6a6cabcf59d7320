"""docs/theory.md §6.8: the critical batch size of MNIST-1D training, and B_simple beside it.

    python scripts/critical_batch.py [--quick | --full] [--model mlp|cnn ...] [--seeds K]
                                     [--target LOSS] [--batch-sizes B ...] [--max-lr ETA]
                                     [--first-eval-every N] [--out DIR]

Writes critical_batch_runs.csv (one row per model, batch size and seed: steps and examples
to the target, B_simple there), critical_batch.csv (per model and batch size),
critical_batch_fits.csv (per model: S_min, E_min, B_crit and B_simple with 95% intervals)
and critical_batch.png to DIR.
"""

import argparse
import dataclasses
from pathlib import Path

from sdn.experiments.critical_batch import MODELS, CriticalBatchConfig, run_critical_batch
from sdn.experiments.plots import plot_critical_batch
from sdn.report import write_csv


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke sizes (seconds)")
    size.add_argument("--full", action="store_true", help="docs/theory.md sizes (the default)")
    parser.add_argument("--model", nargs="+", choices=MODELS, help="mlp and/or cnn")
    parser.add_argument("--seeds", type=int, help="override the number of seeds")
    parser.add_argument("--target", type=float, help="override the target training loss")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="at least 3, increasing")
    parser.add_argument(
        "--max-lr", type=float, help="override every model's learning-rate cap (η_max)"
    )
    parser.add_argument(
        "--first-eval-every", type=int, help="the smallest batch's evaluation interval"
    )
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = CriticalBatchConfig.quick() if args.quick else CriticalBatchConfig.full()
    changes = {"seeds": args.seeds, "target_loss": args.target}
    changes |= {"mlp_max_lr": args.max_lr, "cnn_max_lr": args.max_lr}
    changes["first_eval_every"] = args.first_eval_every
    if args.model:
        changes["models"] = tuple(args.model)
    if args.batch_sizes:
        changes["batch_sizes"] = tuple(args.batch_sizes)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    result = run_critical_batch(cfg, progress=True)
    write_csv(result.rows, args.out / "critical_batch_runs.csv")
    write_csv(result.summary, args.out / "critical_batch.csv")
    write_csv(result.model_rows(), args.out / "critical_batch_fits.csv")
    plot_critical_batch(result, args.out / "critical_batch.png")
    print(cfg)
    print(result.table())
    print(f"{result.seconds:.1f} s; files in {args.out}")


if __name__ == "__main__":
    main()
