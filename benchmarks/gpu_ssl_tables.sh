#!/usr/bin/env bash
# Issue 4's tables on one lent GPU machine: augmentation x supervision (MNIST, FSDD), the methods
# table (MNIST-100, BANKING77, UDA vs seven baselines) with its learning curves, and the RandAugment
# speed check on the GPU. Expects MNIST, FSDD and BANKING77 (text/) copied to .gpu/data and the
# wheels the GPU image lacks in .gpu/whl, as benchmarks/gpu_session.sh. Results land in $OUT.
#
# Size: at the configs' full budgets (MNIST 12k steps, FSDD 1.5k, BANKING77 3k) x 3 seeds this is
# ~90 runs, more than one 15-minute device session; STEPS (every config) and SEEDS shrink it, and
# TABLES picks which tables run, e.g. TABLES=methods STEPS=3000 SEEDS="0 1 2" bash benchmarks/gpu_ssl_tables.sh
set -euo pipefail
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 POLYMODAL_DATA=${POLYMODAL_DATA:-$PWD/.gpu/data}
OUT=${OUT:-/tmp/out}
SEEDS=${SEEDS:-"0 1 2"}
PARALLEL=${PARALLEL:-9}
TABLES=${TABLES:-"speed augment methods"}
STEPS_ARG=()
[ -n "${STEPS:-}" ] && STEPS_ARG=(--steps "$STEPS")
mkdir -p "$OUT"
nvidia-smi -L || true
t0=$(date +%s)
for table in $TABLES; do
  case $table in
    speed) # the acceptance is on 2 CPU cores: pin to two idle cores of this machine, then the GPU
           taskset -c 0,1 python3 benchmarks/randaugment_speed.py --threads 1 2 \
             --out benchmarks/results/randaugment_speed.md
           python3 benchmarks/randaugment_speed.py --device cuda --threads 2 \
             --out benchmarks/results/randaugment_speed_cuda.md ;;
    augment) python3 benchmarks/ssl_augment_table.py --seeds $SEEDS --parallel "$PARALLEL" --device cuda \
               --runs /tmp/bench_augment "${STEPS_ARG[@]}" ;;
    methods) python3 benchmarks/ssl_methods_table.py --seeds $SEEDS --parallel "$PARALLEL" --device cuda \
               --runs /tmp/bench_methods "${STEPS_ARG[@]}" ;;
    *) echo "unknown table '$table' (speed, augment, methods)"; exit 2 ;;
  esac
  echo "$table done after $(( $(date +%s) - t0 ))s"
done
cp benchmarks/results/randaugment_speed*.md benchmarks/results/ssl_*table.* \
   benchmarks/results/ssl_learning_curve.png "$OUT"/ 2>/dev/null || true
for f in /tmp/bench_*/*.log; do [ -f "$f" ] && { echo "== $f"; tail -2 "$f"; }; done > "$OUT"/bench_tails.txt || true
