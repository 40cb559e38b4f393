#!/usr/bin/env bash
# Six 600-step runs (1.92 M characters) of LSTM2-64 on War and Peace, lr 0.1, seed 0; from the
# repository root: bash reports/lstm2x64_warpeace_fp_vs_rpu/diagnostics/run.sh  (about 6 minutes)
set -euo pipefail
D=reports/lstm2x64_warpeace_fp_vs_rpu/diagnostics
COMMON="--data ../shared/data/warpeace_input.txt --max-chars 1920000 --lr 0.1 --seed 0 --no-progress --json"
run() { name=$1; shift; archsim train "$@" $COMMON --out "$D/out/$name" > "$D/$name.json"; rm -f "$D/out/$name/checkpoint.pt" "$D/out/$name/checkpoint.json"; }
run fp                workloads/lstm2x64.yaml --device ideal
run rpu_baseline      workloads/lstm2x64.yaml --device rpu_baseline
run rpu_symmetric     workloads/lstm2x64.yaml --device rpu_symmetric
run rpu_no_variation  workloads/lstm2x64.yaml --device $D/rpu_no_variation.yaml
run rpu_wide_bounds   workloads/lstm2x64.yaml --device $D/rpu_wide_bounds.yaml
run rpu_fp_output     $D/lstm2x64_fp_output.yaml --device rpu_baseline
