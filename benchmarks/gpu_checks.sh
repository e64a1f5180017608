#!/usr/bin/env bash
# Every GPU measurement of the project in one command, for a GPU machine that starts bare (Python, torch,
# transformers and accelerate installed; no network). Figures and logs go to $OUT (default /tmp/gpu-checks).
#
# Prepare, in the repository root of a machine with the repository and the network (the folders are git-ignored):
#   mkdir -p .baseline && git archive 4b84b74 modeling_comp | tar -x -C .baseline      # the model before the rewrite
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl datasets dill multiprocess evaluate                              # what the machine lacks
#   cp -r "$COMP_AUTHORS_CODE" .authors                  # optional: the authors' code, run beside ours, never committed
# then carry .baseline, .whl and .authors to the machine and run:  bash benchmarks/gpu_checks.sh
#
# What it runs, each part under its own time limit so that the whole stays under ten minutes:
#   1. benchmarks/bench_gpu_step.py: one training step (batches of 32 and 256 MOSEI-shaped conversations, stages 1
#      and 2): wall and host time, kernels and device time per step, peak memory; this tree, the model of 4b84b74
#      and (at batch 256) this tree compiled, side by side.
#   2. benchmarks/bench_train.py on a MOSI-sized corpus, 40 epochs: whole commands of ours (and ours with the corpus
#      kept on the device), and the authors' train_mr.py when .authors exists.
#   3. the same on a MOSEI-sized corpus, 2 epochs (per-epoch time, evaluation included).
# QUICK=1 shrinks every part (a dry run of the script on a CPU machine).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
(nvidia-smi -L || echo "no nvidia-smi") > "$OUT/device.txt" 2>&1
python3 -c "import torch, transformers, accelerate, datasets; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'datasets', datasets.__version__)" \
    | tee -a "$OUT/device.txt" || { echo "a dependency is missing: see $OUT/device.txt" >&2; exit 1; }

if [ "${QUICK:-0}" = 1 ]; then
    STEP_ARGS=(--batch-sizes 8 --steps 3 --width 40); MOSI_EPOCHS=2; MOSEI_EPOCHS=2; SIZES=(mosi); LIMIT=300
else
    STEP_ARGS=(--batch-sizes 32,256 --steps 20 --compile); MOSI_EPOCHS=40; MOSEI_EPOCHS=2; SIZES=(mosi mosei); LIMIT=180
fi
BASELINE=()
[ -d .baseline/modeling_comp ] && BASELINE=(--baseline-dir .baseline/modeling_comp)
timeout "$LIMIT" python3 benchmarks/bench_gpu_step.py "${STEP_ARGS[@]}" "${BASELINE[@]}" --json "$OUT/step.json" 2>&1 \
    | tee "$OUT/step.log"

VARIANTS=ours,ours-device
[ -d .authors ] && export COMP_AUTHORS_CODE="$PWD/.authors" && VARIANTS=$VARIANTS,authors
for size in "${SIZES[@]}"; do
    epochs=$MOSI_EPOCHS
    [ "$size" = mosei ] && epochs=$MOSEI_EPOCHS
    timeout "$LIMIT" python3 benchmarks/bench_train.py --size "$size" --epochs "$epochs" --variants "$VARIANTS" \
        --threads 1 --no-contention --json "$OUT/train_$size.json" 2>&1 | tee "$OUT/train_$size.log"
done
echo "figures and logs in $OUT"
