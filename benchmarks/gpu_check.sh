#!/usr/bin/env bash
# The GPU benchmark in one go, within about 9 minutes on one H100 / H200:
#   1. PST900 paper settings (Hiera base-plus, crop 1280, batch 8): the default (bf16, fused
#      AdamW, torch.compile) beside the same without compile, with channels_last, and the fp32
#      eager baseline; a profile of the default step; memory at batch 2 and 8; evaluation (single
#      scale, multi-scale + flip); data loading per worker count. Compiling takes about 3 minutes.
#   2. MFNet paper settings (crop 800, batch 8) without compile beside the baseline, and memory
#      at batch 2, 4, 8 (each batch size would compile anew).
# Random weights (no checkpoint needed), synthetic data for the loading measurement.
# Results: one JSON + log per run in $OUT when set, else results/benchmarks/.
# Usage, from the repository root:  bash benchmarks/gpu_check.sh
# A dry run of the same commands on a CPU with the small demo model:
#   PRESET=demo DEVICE=cpu bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# the GPU machine's image has torch but not sam2 & co.: they travel as wheels in .whl/
if compgen -G ".whl/*.whl" >/dev/null && ! "$PY" -c "import sam2" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl ||
        exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
PRESET=${PRESET:-paper}
DEVICE=${DEVICE:-cuda}
DEST=${OUT:-results/benchmarks}
mkdir -p "$DEST"
HOST=$(hostname -s 2>/dev/null || hostname)

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" ||
        exit 1
fi

COMMON=(--preset "$PRESET" --set "train.device=$DEVICE" --set train.batch_size=8
    --steps 5 --warmup 2 --ms-steps 1)
# the paper's crops; the demo preset keeps its own small crop for a quick dry run
if [ "$PRESET" = paper ]; then BIG=(--set data.crop_size=1280) MID=(--set data.crop_size=800); else
    BIG=() MID=(); fi
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

bench 360 pst900-1280 --dataset pst900 "${BIG[@]}" --compare-baseline \
    --variant eager:train.compile=false \
    --variant channels_last:train.compile=false,train.channels_last=true --profile 2 \
    --what train,memory,eval,data --memory-batches 2,8
bench 150 mfnet-800 --dataset mfnet "${MID[@]}" --set train.compile=false --compare-baseline \
    --what train,memory --memory-batches 2,4,8
ls -l "$DEST"
exit $status
