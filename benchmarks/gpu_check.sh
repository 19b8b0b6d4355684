#!/usr/bin/env bash
# The GPU checks, in one call of a GPU machine that has python, torch, triton and JAX but no package registry:
#   1. the CUDA tests (skipped on CPU): eager CUDA update = CPU update, compiled and CUDA-graph update = eager,
#      a recipe run on CUDA (eager and CUDA graphs) resumed on the CPU;
#   2. benchmarks/speed.py on CUDA: eager, compiled, CUDA graphs, device-resident batches, plain PyTorch, JAX.
# Missing packages travel as wheels in .whl/ (torchrl, tensordict, hydra-core, omegaconf, antlr4, gymnasium,
# gymnasium-robotics, mujoco, ..., and this project's own wheel: `pip wheel --no-deps -w .whl .`).
# Logs and the JSON report go to $OUT (default /tmp/gpu_check). Each stage has its own time limit, so a failing
# stage leaves the others' results.
set -uo pipefail
# python3 -P: the repository root must not shadow the installed package (its objectives/ folder installs as
# ppl_torchrl.objectives, which a plain checkout on sys.path does not provide).
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 RL_WARNINGS=False WANDB_MODE=disabled MUJOCO_GL=disable PPL_TORCHRL_DATA=/tmp/ppl_data
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # JAX and torch share the GPU in the speed run
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  lscpu | grep -E "Model name|^CPU\(s\)"
  python3 -c "import sys, torch, torchrl, tensordict, jax; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'torchrl', torchrl.__version__, 'tensordict', tensordict.__version__, 'jax', jax.__version__, jax.devices())"
  python3 -P -c "import ppl_torchrl, ppl_torchrl.objectives as o; print(ppl_torchrl.__file__, o.__file__)"
} 2>&1 | tee "$OUT/machine.txt"

echo "== 1. CUDA tests"
timeout "${TESTS_S:-240}" python3 -P -m pytest -q -p no:cacheprovider -rs tests/test_update.py tests/test_recipes.py \
  -k "cuda" 2>&1 | tee "$OUT/pytest_cuda.log" | tail -25

echo "== 2. speed on CUDA"
timeout "${SPEED_S:-300}" python3 benchmarks/speed.py --device cuda --shape "${SHAPE:-both}" --steps "${STEPS:-100}" \
  --repeats "${REPEATS:-3}" --per-call 1 --no-progress --json "$OUT/speed_cuda.json" 2>&1 | tee "$OUT/speed_cuda.log" \
  | grep -v Warning | tail -40
