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
#   4. benchmarks/bench_sweep.py: cells/hour of one sweep of MOSI-sized cells (16 cells of 4 epochs) run one after
#      another vs 2, 4 and 8 worker processes sharing the GPU, then the same with --compile (8 cells), with the GPU's
#      utilisation sampled by nvidia-smi; then `comp-sweep --preset paper --dry_run` projects the paper's whole grid
#      from the measured timing of the most workers (without --compile).
# The parts share one budget (TOTAL seconds, default 570): each gets at most its own limit and what is left.
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

TOTAL=${TOTAL:-570}
# seconds a part may run: its own limit, and never past the budget less what the later parts are promised
budget() { local left=$(( TOTAL - SECONDS - $2 )); [ "$left" -lt "$1" ] && echo $(( left > 10 ? left : 10 )) || echo "$1"; }
if [ "${QUICK:-0}" = 1 ]; then
    STEP_ARGS=(--batch-sizes 8 --steps 3 --width 40); MOSI_EPOCHS=2; MOSEI_EPOCHS=2; SIZES=(mosi); LIMIT=300
    SWEEP_ARGS=(--size synthetic --missing_rates 0.0,0.5 --seeds 0 --epochs 2 --variants sequential,workers2)
    COMPILE_ARGS=(); SWEEP_LIMIT=300; SWEEP_RESERVE=0; PRESET_WORKERS=2
else
    STEP_ARGS=(--batch-sizes 32,256 --steps 20 --compile); MOSI_EPOCHS=40; MOSEI_EPOCHS=2; SIZES=(mosi mosei); LIMIT=150
    SWEEP_ARGS=(--size mosi --missing_rates 0.0:0.7:0.1 --seeds 0,1 --epochs 4 --variants sequential,workers2,workers4,workers8)
    COMPILE_ARGS=(--size mosi --missing_rates 0.0:0.7:0.1 --seeds 0 --epochs 4 --variants sequential,workers8,workers4,workers2
                  --compile yes --timeout 100)
    SWEEP_LIMIT=180; SWEEP_RESERVE=260; PRESET_WORKERS=8
fi
BASELINE=()
[ -d .baseline/modeling_comp ] && BASELINE=(--baseline-dir .baseline/modeling_comp)
timeout "$(budget "$LIMIT" "$SWEEP_RESERVE")" python3 benchmarks/bench_gpu_step.py "${STEP_ARGS[@]}" "${BASELINE[@]}" --json "$OUT/step.json" 2>&1 \
    | tee "$OUT/step.log"

VARIANTS=ours,ours-device
[ -d .authors ] && export COMP_AUTHORS_CODE="$PWD/.authors" && VARIANTS=$VARIANTS,authors
for size in "${SIZES[@]}"; do
    epochs=$MOSI_EPOCHS
    [ "$size" = mosei ] && epochs=$MOSEI_EPOCHS
    timeout "$(budget "$LIMIT" "$SWEEP_RESERVE")" python3 benchmarks/bench_train.py --size "$size" --epochs "$epochs" --variants "$VARIANTS" \
        --threads 1 --no-contention --json "$OUT/train_$size.json" 2>&1 | tee "$OUT/train_$size.log"
done

timeout "$(budget "$SWEEP_LIMIT" 90)" python3 benchmarks/bench_sweep.py "${SWEEP_ARGS[@]}" \
    --json "$OUT/sweep.json" --keep_timing "$OUT/sweep_timing" 2>&1 | tee "$OUT/sweep.log"
if [ ${#COMPILE_ARGS[@]} -gt 0 ]; then  # 8 cells: every worker compiles its cells' model
    timeout "$(budget 240 25)" python3 benchmarks/bench_sweep.py "${COMPILE_ARGS[@]}" \
        --json "$OUT/sweep_compile.json" --keep_timing "$OUT/sweep_timing" 2>&1 | tee "$OUT/sweep_compile.log"
fi
# The paper's grid projected from the measured cells of the most workers (the last variant that finished).
best=$(ls -t "$OUT"/sweep_timing/workers*.json 2>/dev/null | grep -v compile | head -1)
if [ -n "$best" ]; then
    timeout "$(budget 60 0)" python3 recipes/sweep.py --preset paper --dry_run --workers "$PRESET_WORKERS" \
        --calibration "$best" --output_dir "$OUT/paper-dry-run" 2>&1 | tail -12 | tee "$OUT/paper_eta.log"
fi
echo "figures and logs in $OUT (${SECONDS} s)"
