#!/usr/bin/env bash
# Install the oldest declared dependency versions into a fresh virtual environment and run
# the tests against them. Not run in CI (it downloads a few hundred MB and takes about as
# long as the suite); run it before changing a floor in pyproject.toml.
#
#   bash scripts/check_floors.sh [VENV_DIR] [pytest args...]
#
# With no pytest args it runs the tests that exercise the APIs the floors are set by
# (jax.jit as a decorator factory, nnx.List / nnx.Optimizer(wrt=), optax.safe_increment,
# jax.enable_x64, ...), and the doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-/tmp/sdn-floors}"
shift || true
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# Each floor is the oldest release the suite passed with (see CHANGELOG.md); the older
# releases fail: jax 0.8.0 has no jax.jit(static_argnames=...) decorator factory, flax
# 0.11 has no nnx.List, optax 0.2.3 has no safe_increment; jax 0.8.1 itself needs
# numpy >= 2.0 and scipy >= 1.13.
"$VENV/bin/pip" install -q \
  "jax==0.8.1" "jaxlib==0.8.1" "flax==0.12.0" "optax==0.2.4" "chex==0.1.87" \
  "numpy==2.0.2" "scipy==1.13.1" "matplotlib==3.8.4" "scikit-learn==1.4.2" \
  "tqdm==4.66.0" "mnist1d==0.0.2" \
  pytest nbclient nbformat ipykernel
"$VENV/bin/pip" install -q --no-deps -e .
if [ "$#" -eq 0 ]; then
  set -- tests/test_optim.py tests/test_train.py tests/test_probes.py tests/test_engine.py \
    tests/test_theory.py tests/test_cli.py tests/test_report.py tests/test_plots.py sdn
fi
"$VENV/bin/python" -c "import jax, flax, optax, chex, numpy, scipy; \
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, \
'chex', chex.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
