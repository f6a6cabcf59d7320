"""Shared test settings.

JAX's persistent compilation cache is switched on for the test session and every
process it starts (notebook kernels, CLI subprocesses, the fresh-venv check), so a
program compiled once — say the escape experiment's exit loop — is not compiled again
in the notebook that runs the same experiment.
"""

import os
import tempfile

os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "sdn-test-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("MPLBACKEND", "Agg")
