#!/usr/bin/env bash
# The ensemble, first-exit, sweep and optimizer benchmarks at accelerator sizes, on
# whatever device JAX sees, in about six minutes of wall time (compilation included).
#
#   benchmarks/accelerator.sh OUTDIR
#
# Run from the repository root with the package importable (PYTHONPATH=. or installed).
# Each part prints as it goes and writes its table to OUTDIR/<part>.txt; every part has
# its own timeout and the whole run a budget (SDN_BENCH_BUDGET seconds, default 330),
# so a slow part costs only its own table. SDN_BENCH_TINY=1 runs tiny sizes (a check
# of the script itself, on a CPU in a couple of minutes).
set -u
out=${1:?usage: benchmarks/accelerator.sh OUTDIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
budget=${SDN_BENCH_BUDGET:-330}
start=$SECONDS

if [ "${SDN_BENCH_TINY:-0}" = 1 ]; then
    table=(--paths 2000 --steps 200 --repeats 1 --skip numpy)
    exits=(--exit-paths 500 --repeats 1)
    diffeq=(--diffeqgpu 10 12 --repeats 1)
    tune=(--paths 2000 --steps 200 --exit-paths 300 --repeats 1)
    sweep=(--paths 16 --chunk 16 --repeats 1)
    optim=(--rounds 2 --per-round 2 --batches 256 --probe-samples 8)
    t_table=120 t_exits=90 t_diffeq=90 t_tune=150 t_sweep=120 t_optim=120
else
    table=(--paths 1000000 --steps 1000 --repeats 3 --skip numpy)
    exits=(--exit-paths 100000 --repeats 3)
    diffeq=(--diffeqgpu 17 21 23 --repeats 3)
    tune=(--paths 1000000 --steps 500 --exit-paths 100000 --repeats 2)
    sweep=(--paths 256 --chunk 256 --repeats 3)
    optim=(--rounds 8 --per-round 10 --batches 1024 4096 --probe-samples 256)
    t_table=75 t_exits=50 t_diffeq=60 t_tune=60 t_sweep=60 t_optim=55
fi

# part NAME SECONDS COMMAND...: run with a timeout (never past the budget), tee the table.
part() {
    local name=$1 limit=$2
    shift 2
    local left=$((budget - (SECONDS - start)))
    if [ "$left" -lt 15 ]; then
        echo "== $name: skipped, ${left}s of the budget left" | tee "$out/$name.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (timeout ${limit}s): $*"
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && echo "== $name: stopped at its ${limit}s timeout" | tee -a "$out/$name.txt"
    [ "$rc" != 0 ] && [ "$rc" != 124 ] && echo "== $name: exit status $rc" | tee -a "$out/$name.txt"
    echo "== $name took $((SECONDS - start))s of the run so far"
}

{
    date -u
    nvidia-smi -L 2>/dev/null || true
    "$py" -c 'import jax, platform, os
print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())
print(platform.machine(), os.cpu_count(), "cores")
import sdn
print("engine defaults on this backend:", sdn.EngineConfig.for_backend())'
} 2>&1 | tee "$out/device.txt"

part ensemble "$t_table" "$py" "$here/ensemble.py" --parts table "${table[@]}"
part exits "$t_exits" "$py" "$here/ensemble.py" --parts exits "${exits[@]}"
part diffeqgpu "$t_diffeq" "$py" "$here/ensemble.py" --parts diffeqgpu "${diffeq[@]}"
part sweep "$t_sweep" "$py" "$here/sweep.py" "${sweep[@]}"
part optim "$t_optim" "$py" "$here/optim.py" "${optim[@]}"
part tune "$t_tune" "$py" "$here/ensemble.py" --parts tune --tune-out "$out/engine_config.json" "${tune[@]}"
echo "== done in $((SECONDS - start))s; tables in $out"
