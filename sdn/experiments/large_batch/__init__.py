"""Large-batch training with added gradient noise on MNIST-1D (docs/theory.md §5, §6.4).

At an equal number of steps and an equal learning rate, compare over seeds (vmapped):

- ``small_batch``: SGD with batch `b_s`;
- ``large_batch``: SGD with batch `b_l`;
- ``linear_scaling``: batch `b_l` with the learning rate times ``linear_scaling``;
- ``diagonal``: batch `b_l` plus Gaussian noise of per-coordinate variance
  `C_jj (1/b_s − 1/b_l)`, `C_jj` the per-sample variance of each batch
  (`sdn.optim.from_gradient_variance`: the model
  ``sdn.noise.gradient_variance``);
- ``isotropic``: the same, but every coordinate gets the mean of those variances (an
  isotropic noise of equal mean size);
- ``power_law``: batch `b_l` plus the diagonal power-law noise
  `diag(α_g + α_H (w − w̄)²)` with an EMA anchor (`sdn.optim.power_law_sgd`; `α` are
  the added noise's own coefficients, not per-sample moments);
- ``power_law_fitted``: the same power law, calibrated instead of hand-set: the
  per-coordinate `C_jj(w) ≈ σ_g,j + 2σ_gH,j x_j + σ_H,j x_j²` is fitted at the
  large-batch minimum (`sdn.train.fit_network_power_law`, seed 0 of ``large_batch``),
  and `α_g = σ_g r`, `α_H = σ_H r` with `r = 1/b_s − 1/b_l` (estimates clipped at 0);
- ``empirical_fitted``: batch `b_l` plus constant Gaussian noise with the *structure* of
  the per-sample gradient covariance at the large-batch minimum, measured once: the
  sample covariance `S` of `fit_samples` per-sample gradients at seed 0's large-batch
  minimum (`sdn.train.fit_network_empirical`, the model ``sdn.noise.empirical``) times
  `r = 1/b_s − 1/b_l`, so `Cov ζ = r S`, the small-batch noise the large batch lacks
  (Zhu et al.'s anisotropic noise, measured at the minimum rather than refreshed from
  each batch as ``fluctuation`` does);
- ``fluctuation``: batch `b_l` plus `k (g_A − g_B)/2` from the two halves of the batch,
  `k = sqrt(b_l/b_s − 1)`, so the total noise has the covariance of batch `b_s`
  (the model ``sdn.noise.fluctuation``, ``source="grad_fluctuation"``).

Reports test accuracy (mean ± sd over seeds) and the top Hessian eigenvalue of the
training loss at the end (sharpness).

The default testbed is docs/theory.md §5's: an MLP on MNIST-1D, generated offline. With
``data`` set to a user's MNIST or CIFAR-10 files (``sdn.train.load_npz``) and
``model="cnn"`` the same comparison runs on images with a small ConvNet (docs/theory.md
§6.4 asks for CIFAR-10 or MNIST when a user supplies them).

The package: `experiment` (the methods, the configuration, the runs) and `section` (the
report's claims on them).
"""

from sdn.experiments.large_batch.experiment import (
    METHODS,
    MODELS,
    LargeBatchConfig,
    LargeBatchResult,
    method_setup,
    run_large_batch,
)
from sdn.experiments.large_batch.section import (
    PAPER_GAP,
    large_batch_section,
    large_batch_verdicts,
)

__all__ = [
    "METHODS",
    "MODELS",
    "PAPER_GAP",
    "LargeBatchConfig",
    "LargeBatchResult",
    "large_batch_section",
    "large_batch_verdicts",
    "method_setup",
    "run_large_batch",
]
