#!/usr/bin/env bash
# The one prepared script for a session that is lent a GPU (issue 13, item 6): the functional
# simulator's CUDA step per mode, then populations of K = 1, 4, 8, 16 models per step per model,
# against cuDNN's floating-point step measured in the same run; raw JSON into $OUT (the device
# tool's output folder; default reports/functional_step_benchmark/), logs beside it. Then the
# CUDA tests (population on CUDA included). About 6-8 minutes on an H200; the stages' time limits
# (200 + 260 + 100 s) add up to under the device tool's 600 s per command, so a hang leaves the
# others' results.
#
#   bash benchmarks/device_session.sh                       # on the GPU machine
#   TORCH_DEVICE=cpu SIZES=64 MEMBERS=1,2 STEPS=1 bash benchmarks/device_session.sh   # a dry run
set -u -o pipefail
OUT=${OUT:-reports/functional_step_benchmark}
DEV=${TORCH_DEVICE:-cuda}
SIZES=${SIZES:-64,512}
MEMBERS=${MEMBERS:-1,4,8,16}
STEPS=${STEPS:-3}
mkdir -p "$OUT"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/device_session.log"
nvidia-smi --query-gpu=name,power.draw,memory.used --format=csv >> "$OUT/device_session.log" 2>&1 || true
timeout 200 python benchmarks/functional_step.py --torch-device "$DEV" --sizes "$SIZES" --rounds 1 \
    --steps "$STEPS" --json "$OUT/functional_$DEV.json" 2>&1 | tee -a "$OUT/device_session.log"
timeout 260 python benchmarks/functional_step.py --torch-device "$DEV" --sizes "$SIZES" --rounds 1 \
    --steps "$STEPS" --members "$MEMBERS" --json "$OUT/population_$DEV.json" 2>&1 | tee -a "$OUT/device_session.log"
timeout 100 python -m pytest -q -p no:cacheprovider tests -k "cuda or population" 2>&1 | tail -5 | tee -a "$OUT/device_session.log"
