"""docs/theory.md §6.4: large-batch SGD with added gradient noise on MNIST-1D.

    python scripts/large_batch.py [--quick | --full] [--steps N] [--seeds K] [--methods M ...]
                                 [--data mnist1d|FILE] [--model mlp|cnn] [--increments LAW]
                                 [--out DIR] [--fresh]

Writes large_batch_runs.csv (one row per method and seed), large_batch_summary.csv and
large_batch.png to DIR. Each finished method is also kept in DIR/large_batch_<method>.json;
rerunning with the same settings and DIR loads those instead of training again (so an
interrupted run resumes at the method it was in); --fresh trains everything anew.
"""

import argparse
import dataclasses
from pathlib import Path

from sdn.experiments.large_batch import METHODS, MODELS, LargeBatchConfig, run_large_batch
from sdn.experiments.plots import plot_large_batch
from sdn.report import write_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke sizes (about a minute)")
    size.add_argument("--full", action="store_true", help="docs/theory.md sizes (the default)")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--seeds", type=int, help="override the number of seeds")
    parser.add_argument("--hidden", type=int, nargs="+", help="override the hidden widths")
    parser.add_argument("--methods", nargs="+", help=f"a subset of {', '.join(METHODS)}")
    parser.add_argument(
        "--data",
        help="mnist1d (default, generated) or the path of your MNIST/CIFAR-10 .npz file or "
        "folder (x_train, y_train, x_test, y_test; see sdn.train.load_npz)",
    )
    parser.add_argument("--model", choices=MODELS, help="mlp (default) or cnn")
    parser.add_argument("--n-train", type=int, help="training examples (drawn from --data)")
    parser.add_argument(
        "--increments",
        choices=("gaussian", "two_point"),
        help="the power_law method's noise draws: gaussian (default) or two_point (one random "
        "sign per parameter: the same covariance, not Gaussian)",
    )
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--fresh", action="store_true", help="ignore finished methods in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = LargeBatchConfig.quick() if args.quick else LargeBatchConfig.full()
    changes = {"steps": args.steps, "seeds": args.seeds}
    if args.hidden:
        changes["hidden"] = tuple(args.hidden)
    if args.methods:
        changes["methods"] = tuple(args.methods)
    changes.update(data=args.data, model=args.model, n_train=args.n_train)
    changes["pld_increments"] = args.increments
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    if args.fresh:
        for name in cfg.methods:
            (args.out / f"large_batch_{name}.json").unlink(missing_ok=True)
    result = run_large_batch(cfg, progress=True, save_dir=args.out)
    write_csv(result.rows, args.out / "large_batch_runs.csv")
    write_csv(result.summary, args.out / "large_batch_summary.csv")
    plot_large_batch(result, args.out / "large_batch.png")
    print(cfg)
    print(result.table())
    print(f"{result.seconds:.1f} s; files in {args.out}")


if __name__ == "__main__":
    main()
