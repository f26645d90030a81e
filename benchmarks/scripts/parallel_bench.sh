#!/usr/bin/env bash
# Run several `aeclust bench` invocations at once, each into its own database.
#
# Meant for a machine with room for several jobs (a GPU machine with many cores: the MLPs of
# these methods leave one GPU mostly idle, so a few processes share it well). Each stream is
# "NAME|ARGS": ARGS are `aeclust bench` arguments; the stream writes OUTDIR/NAME/NAME.db (its
# pretraining cache beside it), logs to OUTDIR/NAME.log and touches OUTDIR/NAME.done when it
# ends. Split one protocol by seed with --first-seed S --seeds 1 so that no two streams need the
# same pretrained network. Merge afterwards with `aeclust results export` / `results import`.
# Fit times of cells that ran beside other streams are not the method's alone: say so.
#
# Usage (from the repository root):
#   PYTHON=python3 benchmarks/scripts/parallel_bench.sh OUTDIR \
#       "b0|baselines --datasets mnist --first-seed 0 --seeds 1" \
#       "b1|baselines --datasets mnist --first-seed 1 --seeds 1"
set -u
if [ $# -lt 2 ]; then
    echo "usage: $0 OUTDIR 'NAME|bench args' ..." >&2
    exit 2
fi
out=$1
shift
python=${PYTHON:-python3}
mkdir -p "$out"
pids=()
for stream in "$@"; do
    name=${stream%%|*}
    args=${stream#*|}
    mkdir -p "$out/$name"
    # shellcheck disable=SC2086  # ARGS is a word list on purpose
    (
        "$python" -m aeclust.cli bench $args --db "$out/$name/$name.db" --no-plots \
            >"$out/$name.log" 2>&1
        echo "exit $?" >>"$out/$name.log"
        touch "$out/$name.done"
    ) &
    pids+=($!)
    echo "started $name (pid $!): aeclust bench $args"
done
wait "${pids[@]}"
echo "all streams done"
