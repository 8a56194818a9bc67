#!/usr/bin/env bash
# The reproduction study of docs/reproduction.md, as run (issue 11). Run directories (with
# checkpoints) go to $RUNS; the small outputs are copied into docs/study/<name>/.
set -u
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-/tmp/srm_study_runs}
mkdir -p "$RUNS"
run() {
  name=$1; shift
  start=$(date +%s)
  echo "=== $name: python -m train.study $* (started $(date -u +%H:%M:%S))"
  nice -n 10 python -m train.study "$@" --out "$RUNS/$name" --no-progress \
    > "$RUNS/$name.log" 2>&1
  rc=$?
  end=$(date +%s)
  echo "=== $name: exit $rc, wall $((end - start)) s"
  mkdir -p "docs/study/$name"
  cp "$RUNS/$name"/study.{json,md,png} "docs/study/$name/" 2>/dev/null
  for d in "$RUNS/$name"/*/*/; do
    rel=${d#"$RUNS/$name/"}
    mkdir -p "docs/study/$name/$rel"
    cp "$d"summary.json "docs/study/$name/$rel" 2>/dev/null
  done
  echo "$name $rc $((end - start))" >> "$RUNS/walltimes.txt"
}
if [ "${1:-}" != "--skip-first" ]; then
  run fig1_mnist5k fig1 --dataset mnist5k --seeds 8 --epochs 100 --vary bias_init=zero,torch
fi
run fig2_mnist5k fig2 --dataset mnist5k --seeds 8 --epochs 100
run fig7_mnist5k fig7 --dataset mnist5k --seeds 8 --epochs 100
run fig7_digits fig7 --dataset digits --seeds 8 --epochs 100
run fig1_sigma_z_mnist5k fig1 --dataset mnist5k --seeds 4 --epochs 100 --vary measure_tensor=sigma_z
run fig1_widths_mnist5k fig1 --dataset mnist5k --seeds 4 --epochs 100 --vary "hidden_widths=none;512"
run fig6_mnist5k fig6 --dataset mnist5k --seeds 4 --epochs 50
run fig8_mnist5k fig8 --dataset mnist5k --seeds 4 --epochs 50
run fig1_seeds8to15_mnist5k fig1 --dataset mnist5k --seeds 8,9,10,11,12,13,14,15 --epochs 100
# Issue 18 (2026-12-02): Fig. 9, the one claim not run before; 50 epochs as fig6 and fig8.
run fig9_mnist5k fig9 --dataset mnist5k --seeds 4 --epochs 50
run fig9_seeds4to7_mnist5k fig9 --dataset mnist5k --seeds 4,5,6,7 --epochs 50
