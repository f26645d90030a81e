#!/usr/bin/env bash
# The prepared plan for a session that is lent a GPU (one call of at most 10 minutes).
#
# What it runs, in this order, and why there:
#   1. `aeclust bench --speed --datasets mnist_test --phases cluster --device cuda`, alone on the
#      GPU (issue 33: the CUDA throughput table with every method; nothing may share the GPU
#      while it times);
#   2. VCC's ablation tables at the full protocol (issue 28: Tables 3 and 4, MNIST-test, 30
#      epochs), one stream per (table, seed) sharing the GPU: a VCC step is launch-bound on a GPU,
#      so six streams cost little more than one. A CPU cell takes 10-30 minutes.
# Every stage has its own time limit, so that a slow stage cannot eat the next one's time, and
# every database lands under OUT as soon as its stream ends (a cut-off call keeps what finished).
#
# Usage: on this machine, commit, then `mkdir -p tools_tmp/gpu_data && cp
# ../shared/datasets/mnist.npz tools_tmp/gpu_data/` (every stage reads MNIST's test set only;
# 11.5 MB, carried as a git-ignored folder: carry = ["tools_tmp/gpu_data"]); the device command,
# from the repository root there (benchmarks/notes/16-gpu-mnist-70k.md: how the last GPU
# session ran):
#   AECLUST_GIT_COMMIT=<the commit> AECLUST_DATA=tools_tmp/gpu_data \
#       bash benchmarks/scripts/gpu_session.sh "$OUT"
# with timeout_s = 600 (the defaults below leave a minute for the start and the copy back).
# Afterwards, on this machine, for each OUT/*.db and OUT/*/*.db:
#   aeclust results export F.jsonl --db F.db && aeclust results import F.jsonl
# Fit times of the streams of stage 2 ran beside each other: say so when they are reported.
set -u
out=${1:?usage: $0 OUTDIR}
python=${PYTHON:-python3}
speed_limit=${SPEED_LIMIT_S:-240}
streams_limit=${STREAMS_LIMIT_S:-300}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv 2>&1 | tee "$out/gpu.txt"
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    2>&1 | tee -a "$out/gpu.txt"

# 1. the throughput table, alone
timeout "$speed_limit" "$python" -m aeclust.cli bench --speed --datasets mnist_test \
    --phases cluster --device cuda --db "$out/speed.db" >"$out/speed.log" 2>&1
echo "speed exit $?" >>"$out/speed.log"

# 2. VCC Tables 3-4, one stream per table and seed
streams=()
for seed in 0 1 2; do
    streams+=("t3s$seed|vcc-table3 --first-seed $seed --seeds 1 --device cuda")
    streams+=("t4s$seed|vcc-table4 --methods vcc-dim10,vcc-dim20,vcc-dim50,vcc-dim100 --first-seed $seed --seeds 1 --device cuda")
done
PYTHON=$python timeout "$streams_limit" bash benchmarks/scripts/parallel_bench.sh "$out/vcc" \
    "${streams[@]}"
echo "streams exit $? (124: the time limit; the cells finished before it are in their databases)"
ls -la "$out" "$out"/vcc/*/ 2>/dev/null
