#!/usr/bin/env bash
# The one prepared script for a session that is lent a GPU (issue 13, item 6). Stages, each under
# its own time limit so that a hang leaves the others' results (all four took 219 s on an H200,
# well under the device tool's 600 s per command):
#   1. populations of K = 1, 4, 8, 16, 32, 64 models per step per model against cuDNN's
#      floating-point step, measured in the same run (the item's target: <= 3x cuDNN at 2x512);
#   2. the functional simulator's step per mode (fp, ideal, fast, exact);
#   3. one profiled step at 2x512, K = 1 and K = 16: GPU busy time against wall time, kernel
#      launches and host waits per step (what a CUDA-graph version would have to remove);
#   4. the CUDA tests.
# Raw JSON, profiles and the log go to $OUT (the device tool's output folder; default
# /tmp/archsim_device_session, so that a dry run cannot overwrite the committed GPU data in
# reports/functional_step_benchmark/device_session*/, where a run's files are copied by hand).
#
# The GPU machine's image has torch but not pydantic, ruamel.yaml or simpy: download their wheels
# for Python 3.12 into an ignored .whl/ here (the device tool's README says how), carry .whl, and
# start the command with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1;
# (run on 2026-11-30: pydantic 2.14.4, pydantic-core 2.50.5, annotated-types 0.8.0,
# typing-inspection 0.4.5, typing_extensions 4.16.0, ruamel.yaml 0.19.1, simpy 4.1.2).
#
#   bash benchmarks/device_session.sh                       # on the GPU machine
#   TORCH_DEVICE=cpu SIZES=64 MEMBERS=1,2 STEPS=1 bash benchmarks/device_session.sh   # a dry run
#   STAGES="populations tests" ROUNDS=2 STEPS=5 bash benchmarks/device_session.sh      # a subset
set -u -o pipefail
OUT=${OUT:-/tmp/archsim_device_session}
PY=${PYTHON:-python3}
DEV=${TORCH_DEVICE:-cuda}
SIZES=${SIZES:-64,512}
MEMBERS=${MEMBERS:-1,4,8,16,32,64}
STEPS=${STEPS:-3}
ROUNDS=${ROUNDS:-1}
STAGES=${STAGES:-populations modes profiles tests}
PROFILE_MEMBERS=${PROFILE_MEMBERS:-1 16}
PROFILE_SIZE=${PROFILE_SIZE:-512}
LOG="$OUT/device_session.log"
mkdir -p "$OUT"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$LOG"
nvidia-smi --query-gpu=name,driver_version,power.draw,clocks.sm,memory.used --format=csv >> "$LOG" 2>&1 || true
stage() { echo "== $1 ($(date +%T))" | tee -a "$LOG"; }
wanted() { [[ " $STAGES " == *" $1 "* ]]; }
stage "populations"
wanted populations && timeout "${POP_LIMIT:-220}" $PY benchmarks/functional_step.py --torch-device "$DEV" --sizes "$SIZES" --rounds "$ROUNDS" \
    --steps "$STEPS" --members "$MEMBERS" --json "$OUT/population_$DEV.json" 2>&1 | tee -a "$LOG"
stage "modes"
wanted modes && timeout 120 $PY benchmarks/functional_step.py --torch-device "$DEV" --sizes "$SIZES" --rounds "$ROUNDS" \
    --steps "$STEPS" --json "$OUT/functional_$DEV.json" 2>&1 | tee -a "$LOG"
stage "profiles"
wanted profiles && for K in $PROFILE_MEMBERS; do
    timeout 40 $PY benchmarks/functional_step.py --worker --mode fast --hidden "$PROFILE_SIZE" \
        --population "$K" --torch-device "$DEV" --steps 1 \
        --profile "$OUT/profile_${PROFILE_SIZE}_K$K.txt" 2>&1 | tail -1 | tee -a "$LOG"
    head -3 "$OUT/profile_${PROFILE_SIZE}_K$K.txt" 2>/dev/null | tee -a "$LOG"
done
stage "CUDA tests"
wanted tests && timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_population.py tests/test_functional_lstm.py \
    tests/test_functional_tile.py tests/test_functional_update.py tests/test_train_cli.py \
    tests/test_population_periphery.py -k cuda 2>&1 \
    | tail -15 | tee -a "$LOG"
nvidia-smi --query-gpu=name,power.draw,clocks.sm,memory.used --format=csv >> "$LOG" 2>&1 || true
stage "done"
