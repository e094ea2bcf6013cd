#!/usr/bin/env bash
# The GPU benchmark in one go, within about 9 minutes on one H100 / H200:
#   1. PST900 paper settings (Hiera base-plus, crop 1280, batch 8) beside the fp32 eager baseline
#   2. MFNet paper settings (crop 800, batch 8) beside the fp32 eager baseline
#   3. PST900 once more, training only, with torch.compile on (is it worth making the default?)
# Random weights (no checkpoint needed), synthetic data for the loading measurement.
# Results: one JSON + log per run in $OUT when set, else results/benchmarks/.
# Usage, from the repository root:  bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
PY=${PYTHON:-python3}
DEST=${OUT:-results/benchmarks}
mkdir -p "$DEST"
HOST=$(hostname -s 2>/dev/null || hostname)

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" ||
    exit 1

COMMON=(--preset paper --set train.device=cuda --set train.batch_size=8
    --steps 5 --warmup 2 --ms-steps 1)
status=0
bench() { # bench SECONDS NAME ARGS...: one benchmark run, stopped after SECONDS
    local limit=$1 name=$2
    shift 2
    echo "== $name ($(date +%T), limit ${limit}s)"
    timeout "$limit" "$PY" -m benchmarks.run "${COMMON[@]}" "$@" \
        --out "$DEST/$HOST-$name.json" >"$DEST/$HOST-$name.log" 2>&1
    local rc=$?
    sed -n '/^sartm benchmark/,$p' "$DEST/$HOST-$name.log"
    if [ "$rc" -ne 0 ]; then
        echo "!! $name exited with $rc (124: time limit); end of its log:"
        tail -n 15 "$DEST/$HOST-$name.log"
        status=1
    fi
}

bench 190 pst900-1280 --dataset pst900 --set data.crop_size=1280 --compare-baseline \
    --what train,eval,data
bench 150 mfnet-800 --dataset mfnet --set data.crop_size=800 --compare-baseline \
    --what train,eval,data
bench 170 pst900-1280-compile --dataset pst900 --set data.crop_size=1280 \
    --set train.compile=true --what train
ls -l "$DEST"
exit $status
