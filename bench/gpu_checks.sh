#!/usr/bin/env bash
# The GPU checks behind issue notes, sized for a 15-minute device lease (~5 minutes of runs
# plus the machine's start): where a reward-model step's time goes, K-way vs pairwise to the
# same accuracy, and PPO's peak memory for a 1.4B model with both reward-model layouts.
# Run by hand on a CUDA machine from the repository root (figures go to stdout and $OUT):
#   OUT=/tmp/gpu bash bench/gpu_checks.sh
# SMOKE=1 shrinks every run to seconds, to try the script itself on a CPU (DEVICE=cpu).
# First run (H200, 2026-11-28): the whole-run grid of 18 settings took 4 minutes (each
# process ~14 s), hence the smaller grid below; see bench/reward_model.py for its figures.
set -u
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-checks}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
quiet() { grep --line-buffered -v "Loading weights\|FutureWarning\|warnings.warn"; }
if [ "${SMOKE:-0}" = 1 ]; then
  STEP=(--steps 3)
  RM_GRID=(--lrs 3e-3 --batch-sizes 4 --max-seqs 200)
  PPO_SIZE=(--layers 2 --width 128 --steps 1 --new-tokens 8)
else
  STEP=(--steps 30)
  RM_GRID=(--lrs 3e-3,5e-3 --batch-sizes 2,4 --max-seqs 8000)
  PPO_SIZE=(--layers 28 --width 2048 --steps 1)
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true) | tee "$OUT/env.txt"
$PYTHON -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/env.txt"

start=$SECONDS
TINY=${TINY:-/tmp/rankloop-bench-tiny}  # the benches' default tiny model, built once here
[ -f "$TINY/config.json" ] || $PYTHON -c "import sys; from pathlib import Path; \
from worker.training.tiny_model import make_tiny_model; make_tiny_model(Path(sys.argv[1]), \
steps=int(sys.argv[2]))" "$TINY" "$([ "${SMOKE:-0}" = 1 ] && echo 5 || echo 200)"
echo "== reward-model step: default, padded to x16 (fewer shapes), prompts 3x longer, $DEVICE"
timeout 90 $PYTHON -m bench.reward_model_step --model "$TINY" --device "$DEVICE" "${STEP[@]}" --profile 2>&1 | quiet | tee "$OUT/rm_step.txt"
timeout 60 $PYTHON -m bench.reward_model_step --model "$TINY" --device "$DEVICE" "${STEP[@]}" --pad-multiple 16 2>&1 | quiet | tee -a "$OUT/rm_step.txt"
timeout 60 $PYTHON -m bench.reward_model_step --model "$TINY" --device "$DEVICE" "${STEP[@]}" --context-words 24 2>&1 | quiet | tee -a "$OUT/rm_step.txt"
echo "== $((SECONDS - start)) s"
echo "== PPO, one base vs reward model on its own base, $DEVICE"
timeout 170 $PYTHON -m bench.ppo --device "$DEVICE" "${PPO_SIZE[@]}" --reward-own-base 2>&1 | quiet | tee "$OUT/ppo.txt"
echo "== $((SECONDS - start)) s"
echo "== reward model to the same accuracy, default benchmark, $DEVICE"
timeout 150 $PYTHON -m bench.reward_model --model "$TINY" --device "$DEVICE" "${RM_GRID[@]}" 2>&1 | quiet | tee "$OUT/rm_default.txt"
echo "== $((SECONDS - start)) s"
