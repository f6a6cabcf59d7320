"""Training with Flax NNX (docs/theory.md §5, §6): models, data, a vmapped-seed training
loop, and probes of the gradient noise and the curvature.

Modules: `models`, `data`, `loop` (training); `moments` (the one per-sample moment
accumulator), `persample`, `gradstats`, `profiles`, `hessian`, `fits` (probes; `probes`
gathers them). Layer 4: uses `sdn.stats` (fits) and is used by `sdn.experiments`. Optimizers are any
optax transform, e.g. those of `sdn.optim`.
"""

from sdn.train.data import (
    Dataset,
    load_digits,
    load_mnist1d,
    load_npz,
    teacher_student,
)
from sdn.train.fits import (
    NoiseFit,
    PowerLawFit,
    fit_empirical,
    fit_network_empirical,
    fit_network_power_law,
    fit_noise_along,
    fit_power_law,
    power_law_fit,
)
from sdn.train.gradstats import GradientStatistics, NoiseScale, gradient_statistics
from sdn.train.hessian import Eigenpair, hessian_vector_product, top_hessian_eigenvalue
from sdn.train.loop import (
    TrainResult,
    batch_loss,
    cross_entropy,
    evaluate,
    functional_apply,
    init_params,
    make_monitored_step,
    make_train_step,
    sample_loss,
    split_model,
    train,
)
from sdn.train.models import CNN, MLP, count_params
from sdn.train.monitor import NoiseScaleMonitor, NoiseScaleState
from sdn.train.nnx_step import nnx_train_step
from sdn.train.persample import (
    GradientMoments,
    directional_derivatives,
    gradient_moments,
    per_sample_grads,
)
from sdn.train.profiles import (
    NoiseProfile,
    TaylorCoefficients,
    network_noise_along,
    noise_along,
    random_direction,
    taylor_coefficients,
    tree_normalize,
)

__all__ = [
    "CNN",
    "MLP",
    "Dataset",
    "Eigenpair",
    "GradientMoments",
    "GradientStatistics",
    "NoiseFit",
    "NoiseProfile",
    "NoiseScale",
    "NoiseScaleMonitor",
    "NoiseScaleState",
    "PowerLawFit",
    "TaylorCoefficients",
    "TrainResult",
    "batch_loss",
    "count_params",
    "cross_entropy",
    "directional_derivatives",
    "evaluate",
    "fit_empirical",
    "fit_network_empirical",
    "fit_network_power_law",
    "fit_noise_along",
    "fit_power_law",
    "functional_apply",
    "gradient_moments",
    "gradient_statistics",
    "hessian_vector_product",
    "init_params",
    "load_digits",
    "load_mnist1d",
    "load_npz",
    "make_monitored_step",
    "make_train_step",
    "network_noise_along",
    "nnx_train_step",
    "noise_along",
    "per_sample_grads",
    "power_law_fit",
    "random_direction",
    "sample_loss",
    "split_model",
    "taylor_coefficients",
    "teacher_student",
    "top_hessian_eigenvalue",
    "train",
    "tree_normalize",
]
