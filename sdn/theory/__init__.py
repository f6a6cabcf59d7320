"""Closed forms and exact quadratures for the dynamics of docs/theory.md §3–4.

* `power_law_stationary`, `gaussian_stationary`: stationary laws of the power-law dynamic
  (a scaled Student-t) and of constant-noise Langevin (a Gaussian), docs/theory.md §3.
* `mean_first_passage_time`: the exact mean exit time of a 1-D diffusion from an
  interval, by log-space quadrature on a grid; jittable and vmappable (docs/theory.md §4).
* `kramers_escape_time`, `power_law_escape_time`: the Laplace asymptotics of docs/theory.md §4
  for the landscapes of `sdn.landscapes`; `walled_basin_escape_times`: the exact
  "sharp versus flat" escape times.
* `stable_exit_time`, `stable_escape_time_asymptotic`: the Lévy-flight rival, mean exit
  times of symmetric α-stable dynamics (exact without drift; small-noise with one),
  docs/theory.md §6.7.

Conventions: SGD with learning rate `η` and batch size `b` near a minimum is
`dx = −L'(x) dt + sqrt(2 D(x)) dB` with `D(x) = (η / 2b) C(x)` (docs/theory.md §2–3), so the
diffusion coefficient of the generator `σ² = 2 D = η C / b`.
"""

from sdn.theory.escape import (
    WalledBasinEscapeTimes,
    kramers_escape_time,
    power_law_escape_time,
    walled_basin_escape_times,
)
from sdn.theory.levy import (
    stable_escape_time_asymptotic,
    stable_exit_time,
    stable_levy_density,
    stable_levy_tail,
)
from sdn.theory.quadrature import log_mean_first_passage_time, mean_first_passage_time
from sdn.theory.stationary import (
    GaussianStationary,
    StudentTStationary,
    gaussian_stationary,
    power_law_stationary,
)

__all__ = [
    "GaussianStationary",
    "StudentTStationary",
    "WalledBasinEscapeTimes",
    "gaussian_stationary",
    "kramers_escape_time",
    "log_mean_first_passage_time",
    "mean_first_passage_time",
    "power_law_escape_time",
    "power_law_stationary",
    "stable_escape_time_asymptotic",
    "stable_exit_time",
    "stable_levy_density",
    "stable_levy_tail",
    "walled_basin_escape_times",
]
