#!/usr/bin/env bash
# The one script run on a lent GPU machine (see the device tool): CUDA smoke checks, the throughput
# table (issue 12: engine UDA step vs a hand-written floor, CIFAR shapes on random uint8 data, no
# dataset needed), a 2-process DDP smoke run on the one GPU, then the MNIST-100 benchmark
# (BENCH=0 skips it). Expects MNIST and FSDD copied to .gpu/data and the wheels the GPU image lacks
# (pydantic and its deps) in .gpu/whl. Results land in $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 POLYMODAL_DATA=$PWD/.gpu/data
OUT=${OUT:-/tmp/out}
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
t0=$(date +%s)
# 1. CUDA paths: bf16 image UDA, resume, eval; the audio pipeline (waveform ops, log-mel, SpecAugment)
python3 -m polymodal.cli train configs/mnist_uda.yaml --set train.device=cuda --set train.precision=bf16 \
  --set train.steps=60 --set train.checkpoint_every=30 --set train.log_every=30 --out /tmp/smoke --quiet
python3 -m polymodal.cli train --resume /tmp/smoke --set train.steps=90 --quiet
python3 -m polymodal.cli eval /tmp/smoke
python3 -m polymodal.cli train configs/fsdd_uda.yaml --set train.device=cuda --set train.steps=300 \
  --set train.log_every=100 --out /tmp/smoke_audio 2>&1 | tail -3
echo "smoke checks: $(( $(date +%s) - t0 ))s"
# 2. Throughput at the floor's shapes (64 labeled + 448 unlabeled, WRN-28-2), bf16 + channels_last
#    (train.precision auto on cuda), eager then compiled; then 2 DDP processes sharing the GPU (nccl)
python3 benchmarks/throughput.py --device cuda --precision auto --batch 64 --mu 7 --rounds 5 --steps 20 \
  --workloads cifar mnist --out "$OUT"/throughput_eager.md
python3 benchmarks/throughput.py --device cuda --precision auto --batch 64 --mu 7 --rounds 5 --steps 20 \
  --workloads cifar --compile --out "$OUT"/throughput_compiled.md
cat "$OUT"/throughput_eager.md "$OUT"/throughput_compiled.md > benchmarks/results/throughput_gpu.md
python3 -m torch.distributed.run --nproc-per-node 2 -m polymodal train configs/mnist_uda.yaml \
  --set train.device=cuda --set train.steps=100 --set train.log_every=50 --out /tmp/ddp_smoke 2>&1 | tail -3
echo "throughput + ddp: $(( $(date +%s) - t0 ))s"
[ "${BENCH:-1}" = 0 ] && exit 0
# 3. The benchmark: 3 seeds x {UDA, supervised}, all six runs at once on the one GPU
python3 benchmarks/ssl_mnist.py --seeds 0 1 2 --parallel 6 --device cuda --runs /tmp/bench
cp benchmarks/results/ssl_mnist.md benchmarks/results/ssl_mnist.json "$OUT"/
for f in /tmp/bench/*.log; do tail -2 "$f"; done > "$OUT"/bench_tails.txt
