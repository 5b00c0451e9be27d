#!/bin/bash
# Everything this project measures on a lent GPU, in one command that fits one lease:
# the performance table (benchmarks/run.py, torch on the same GPU: every update method,
# low-rank Λ, dense Λ and projected Adam, side by side) in TF32 and in float32,
# the statistics again at batches of 500 (an accelerator's batch), where a statistics batch's
# and the 512-channel edit's iteration's time goes, and the golden parity tests on the GPU.
#
#   bash benchmarks/gpu_lease.sh OUTDIR SECONDS [GOLDEN_DIR]
#
# OUTDIR gets run_gpu*.json and logs.tgz; SECONDS is the wall-time budget of the whole
# script. GOLDEN_DIR (a copy of ../shared/golden) is linked to ../shared/golden when that is
# missing, as on the device machine, where only the checkout travels.
set -u
OUT=$1; BUDGET=$2; GOLDEN=${3:-}
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
mkdir -p "$OUT/logs"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if [ -n "$GOLDEN" ] && [ ! -e ../shared/golden ]; then mkdir -p ../shared && ln -s "$PWD/$GOLDEN" ../shared/golden; fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, flax, optax, chex, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'chex', chex.__version__, 'torch', torch.__version__, jax.devices())"
} > "$OUT/logs/env.txt" 2>&1
cat "$OUT/logs/env.txt"

# 1. the performance table
timeout $(( $(left) * 40 / 100 )) python3 benchmarks/run.py --out "$OUT/run_gpu.json" 2>&1 | tee "$OUT/logs/run.log" | grep -v "^{"
# ... in float32 (XLA's GPU default is TF32), edits and statistics only
JAX_DEFAULT_MATMUL_PRECISION=highest timeout $(( $(left) * 30 / 100 )) python3 benchmarks/run.py --stages edits,stats \
    --out "$OUT/run_gpu_highest.json" 2>&1 | tee "$OUT/logs/run_highest.log" | grep -v "^{"
# ... and the statistics at batches of 500, both loops
timeout $(( $(left) * 25 / 100 )) python3 benchmarks/run.py --stages stats --stats-batch 500 \
    --out "$OUT/run_gpu_stats500.json" 2>&1 | tee "$OUT/logs/run_stats500.log" | grep -v "^{"

# 2. golden parity on the GPU (~140 s)
timeout $(( $(left) > 100 ? $(left) - 90 : 10 )) python3 -m pytest -q -p no:cacheprovider tests/test_rewrite_golden.py tests/test_golden_parity.py \
    tests/test_update.py > "$OUT/logs/parity.log" 2>&1
tail -n 3 "$OUT/logs/parity.log"

# 3. with what is left: where a statistics batch's time goes (host share vs compute), and the
# 512-channel edit's iteration in both precisions
cap() { local l=$(( $(left) - 10 )); [ $l -lt $1 ] && echo $(( l > 1 ? l : 1 )) || echo $1; }
timeout $(cap 90) python3 benchmarks/profile_stats.py --out "$OUT/logs/profile_stats.json" | tee -a "$OUT/logs/run.log"
# ... the upsampling convolutions' phase forms against the forms they replaced (CPU gains)
timeout $(cap 60) python3 benchmarks/bench_ops.py --out "$OUT/logs/ops_gpu.json" | tee -a "$OUT/logs/run.log"
timeout $(cap 45) python3 benchmarks/profile_step.py --case stylegan2_512 --out "$OUT/logs/profile_512_tf32.json" | tee -a "$OUT/logs/run.log"
JAX_DEFAULT_MATMUL_PRECISION=highest timeout $(cap 45) python3 benchmarks/profile_step.py --case stylegan2_512 \
    --out "$OUT/logs/profile_512_float32.json" | tee -a "$OUT/logs/run.log"
# ... and with the whole loop as CUDA graphs (XLA command buffers including while loops):
# the small layers' iterations are ~20 dependent kernels, launch latency rather than arithmetic
XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL \
    timeout $(cap 45) python3 benchmarks/profile_step.py --case proggan --out "$OUT/logs/profile_proggan_graphs.json" | tee -a "$OUT/logs/run.log"
timeout $(cap 45) python3 benchmarks/profile_step.py --case proggan --out "$OUT/logs/profile_proggan.json" | tee -a "$OUT/logs/run.log"
tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -r "$OUT/logs"
ls -la "$OUT"
