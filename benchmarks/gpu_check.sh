#!/usr/bin/env bash
# The train step at the paper's size on one GPU, next to the authors' step on the same GPU:
# batch 1 (with XLA's convolutions and with the convolutions in their CPU forms: the GPU's
# default is XLA's own, layers.convolution_forms, and this checks that choice), batch 8 in
# float32, in bfloat16 (--compute_dtype) and with each rematerialisation (--remat); step time,
# compile time, XLA's memory and FLOP estimates (JSON per run under $OUT, tables on stdout).
# Sized for one call of a 15-minute device lease (at most 600 s): each run has its own time
# limit, so a slow one costs its limit and not the rest.
#
# Once, here: the authors' code travels in an ignored folder (never committed):
#     mkdir -p .ref && git -C /path/to/instagan archive HEAD models util | tar -x -C .ref
#     echo /.ref/ >> .git/info/exclude
# Then on the device machine (the `device` tool): carry [".ref"], timeout_s 590,
#     bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
size=${SIZE:-200} ngf=${NGF:-64} limit=${LIMIT_S:-80} device=${REF_DEVICE:-cuda}  # smaller, and cpu, to try it here
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
# batch, convolutions ("-": the backend's default), compute dtype, remat
for run in "1 - float32 none" "1 cpu float32 none" "8 - float32 none" "8 - bfloat16 none" "8 - float32 block" \
    "8 - float32 network"; do
    read -r batch convolutions dtype remat <<<"$run"
    [ "$convolutions" = - ] && convolutions=""
    echo "== instagan-jax: batch $batch, convolutions ${convolutions:-default}, $dtype, remat $remat"
    timeout "$limit" python3 benchmarks/train_step.py --size "$size" --ngf "$ngf" --ins_per 2 --ins_max 4 \
        --batch_size "$batch" ${convolutions:+--convolutions "$convolutions"} --compute_dtype "$dtype" \
        --remat "$remat" --steps 5 --json "$out/step_b${batch}${convolutions:+_$convolutions}_${dtype}_${remat}.json"
done
if [ -d .ref/models ]; then
    # batch 1 only: the authors' set sum runs over the batch too, so a batch of 8 does not run
    # there (README: "the reference mixes the batch, its issue #21"); compare batch 8 with 8 of their steps
    echo "== the authors' step: batch 1"
    timeout "$limit" python3 benchmarks/reference_step.py --reference .ref --device "$device" --size "$size" \
        --ngf "$ngf" --ins_per 2 --ins_max 4 --batch_size 1 --steps 5 | tee "$out/reference_b1.json"
else
    echo "no .ref/models: the authors' step is not timed (see the top of this script)"
fi
