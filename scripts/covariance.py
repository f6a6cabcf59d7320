"""docs/theory.md §6.1: is the gradient-noise covariance quadratic near a minimum?

    python scripts/covariance.py [--quick] [--out DIR]

Writes covariance_profiles.csv, covariance_fits.csv and covariance.png to DIR.
"""

import argparse
from pathlib import Path

from sdn.experiments.covariance import CovarianceConfig, run_covariance
from sdn.experiments.plots import plot_covariance
from sdn.report import write_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = CovarianceConfig.quick() if args.quick else CovarianceConfig()
    result = run_covariance(cfg, progress=True)
    write_csv(result.profiles, args.out / "covariance_profiles.csv")
    write_csv(result.fits, args.out / "covariance_fits.csv")
    plot_covariance(result, args.out / "covariance.png")
    print(
        f"digits MLP {cfg.hidden}: train acc {result.train_accuracy:.3f}, test acc "
        f"{result.test_accuracy:.3f}, top Hessian eigenvalue {result.top_eigenvalue:.3g}"
    )
    print(result.table())
    print(f"{result.seconds:.1f} s; files in {args.out}")


if __name__ == "__main__":
    main()
