#!/usr/bin/env bash
# The update's step size (the number of device states) against the weight range, LSTM2-64 on War
# and Peace, seed 0, with the current code; one folder per learning rate:
#   lr0.1/  600 steps (1.92 M characters), as ../run.sh: fp, rpu_baseline, 4x and 1/4 the step,
#           bounds +-2, both (1-2 minutes per run)
#   lr0.01/ 1,800 steps (5.76 M characters, 2 epochs): fp, rpu_baseline, 4x and 1/4 the step
#           (about 5 minutes per run)
# From the repository root: bash reports/lstm2x64_warpeace_fp_vs_rpu/diagnostics/states/run.sh
# (KEEP_CHECKPOINTS=1 keeps each run's --out folder under out/, for
# reports/lstm2x512_linux_fp_vs_rpu/weight_stats.py; not committed)
set -euo pipefail
D=reports/lstm2x64_warpeace_fp_vs_rpu/diagnostics
S=$D/states
run() {  # run LR CHARS NAME --device DEVICE
  lr=$1; chars=$2; name=$3; shift 3; mkdir -p "$S/lr$lr"
  archsim train workloads/lstm2x64.yaml "$@" --data ../shared/data/warpeace_input.txt \
    --max-chars "$chars" --lr "$lr" --seed 0 --threads 1 --no-progress --json \
    --out "$S/out/$name" > "$S/lr$lr/$name.json"
  [ "${KEEP_CHECKPOINTS:-0}" = 1 ] || rm -rf "$S/out/$name"
}
for name_device in fp:ideal rpu_baseline:rpu_baseline rpu_coarse_steps:$S/rpu_coarse_steps.yaml \
                   rpu_fine_steps:$S/rpu_fine_steps.yaml rpu_wide_bounds:$D/rpu_wide_bounds.yaml \
                   rpu_fine_steps_wide_bounds:$S/rpu_fine_steps_wide_bounds.yaml; do
  run 0.1 1920000 "${name_device%%:*}" --device "${name_device#*:}"
done
for name_device in fp:ideal rpu_baseline:rpu_baseline rpu_coarse_steps:$S/rpu_coarse_steps.yaml \
                   rpu_fine_steps:$S/rpu_fine_steps.yaml; do
  run 0.01 5760000 "${name_device%%:*}" --device "${name_device#*:}"
done
[ "${KEEP_CHECKPOINTS:-0}" = 1 ] || rmdir "$S/out" 2>/dev/null || true
