#!/usr/bin/env bash
# One short GPU session for the guided model: CUDA tests, then several training variants side by
# side on one GPU (small models are launch-bound, so processes share the card well).
#
#   bash tools/gpu_train_guided.sh OUT_DIR BUDGET_S [DATA_DIR]
#
# Phase 1 runs each variant for 40 steps (inside the warm-up, so the learning-rate schedule does
# not depend on total_steps yet) and reads its seconds per step; phase 2 resumes each variant with
# total_steps sized to end within BUDGET_S of the start (train.time_limit_s as a safety net).
# Results: OUT_DIR/<variant>.tar (best/last releases, metrics.jsonl, config, log), pytest_cuda.log.
set -u
OUT=${1:?OUT_DIR}; BUDGET=${2:?BUDGET_S}; DATA=${3:-../shared/data/depth_rgbdd_test405}
DEVICE=${DEVICE:-cuda}; CONFIG=${CONFIG:-configs/guided/gpu.yaml}  # overridable for a CPU dry run
T0=$(date +%s)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT" runs
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } > "$OUT/gpu.txt" 2>&1

( timeout 200 python3 -m pytest -q -rs --durations=10 -p no:cacheprovider tests/test_cuda.py > "$OUT/pytest_cuda.log" 2>&1
  echo "exit status $?" >> "$OUT/pytest_cuda.log" ) &

# cont: the U-Net that was the default until 2026-12-02, trained further; edge_anchor: the shipped
# distilled edge network fine-tuned end-to-end with the distillation anchor (configs/guided/
# distill_edge_e2e_anchor.yaml; check val/step_mae before shipping: an unanchored run blurred steps).
EDGE="model.arch=edge model.widths=[24,32,48,64] model.feature_stride=4 model.head_width=8"
declare -A VARIANT=(
  [cont]="init_weights=optisr/guided/weights/unet-v1.safetensors train.optim.lr=3.0e-4"
  [edge_anchor]="$EDGE init_weights=optisr/guided/weights/default.safetensors train.optim.lr=3.0e-4 loss.distill_weight=1.0 loss.teacher=unet-v1 loss.pos_weight=1.0"
  [fast]="model.feature_stride=2"
  [wide]="model.widths=[24,48,96,192]"
)
train() {  # train NAME OVERRIDES...
  local name=$1; shift
  python3 -m optisr train guided -c "$CONFIG" --save-dir "runs/$name" --device "$DEVICE" \
    --dataset rgbdd --data-dir "$DATA" --no-progress "$@" >> "runs/$name.log" 2>&1
}
pids=()
for n in "${!VARIANT[@]}"; do train "$n" ${VARIANT[$n]} train.total_steps=40 & pids+=($!); done
wait "${pids[@]}"

pids=()
for n in "${!VARIANT[@]}"; do
  left=$(( BUDGET - ($(date +%s) - T0) - 50 ))   # 50 s for start-up, final validation, releases
  steps=$(python3 - "runs/$n/logs/metrics.jsonl" "$left" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
sps = [r["train/sec_per_step"] for r in recs if "train/sec_per_step" in r][-1]
print(40 + max(0, int(float(sys.argv[2]) / sps)))
PY
) || steps=40
  echo "$n: ${steps} steps in ${left} s" | tee -a "$OUT/gpu.txt"
  train "$n" ${VARIANT[$n]} --resume train.total_steps=$steps train.time_limit_s=$left & pids+=($!)
done
wait "${pids[@]}"
wait
for n in "${!VARIANT[@]}"; do
  tar -cf "$OUT/$n.tar" -C runs "$n.log" "$n/config.yaml" "$n/logs/metrics.jsonl" \
    $(cd runs && ls "$n"/best.safetensors "$n"/last.safetensors 2>/dev/null)
done
echo "total $(( $(date +%s) - T0 )) s" >> "$OUT/gpu.txt"
