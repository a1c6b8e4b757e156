#!/usr/bin/env bash
# The GPU checks behind issue notes: reward model K-way vs pairwise, PPO peak memory.
# Run by hand on a CUDA machine from the repository root (figures go to stdout and $OUT):
#   OUT=/tmp/gpu bash bench/gpu_checks.sh
# SMOKE=1 shrinks every run to seconds, to try the script itself on a CPU (DEVICE=cpu).
set -u
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-checks}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
quiet() { grep --line-buffered -v "Loading weights\|FutureWarning\|warnings.warn"; }
if [ "${SMOKE:-0}" = 1 ]; then
  RM_GRID=(--lrs 3e-3 --batch-sizes 4 --max-seqs 200 --tiny-steps 5)
  PPO_SIZE=(--layers 2 --width 128 --steps 1 --new-tokens 8)
  RM_LARGE=(--layers 2 --width 128 --context-words 24 --lrs 3e-3 --batch-sizes 4 --max-seqs 200 --tiny-steps 5)
else
  RM_GRID=(--lrs 2e-3,3e-3,5e-3 --batch-sizes 1,2,4 --max-seqs 8000)
  PPO_SIZE=(--layers 28 --width 2048 --steps 2)
  RM_LARGE=(--layers 12 --width 768 --context-words 48 --lrs 1e-3,3e-3 --batch-sizes 4 --max-seqs 8000)
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true) | tee "$OUT/env.txt"
$PYTHON -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/env.txt"

start=$SECONDS
echo "== reward model, default benchmark, $DEVICE"
timeout 240 $PYTHON -m bench.reward_model --device "$DEVICE" "${RM_GRID[@]}" 2>&1 | quiet | tee "$OUT/rm_default.txt"
echo "== $((SECONDS - start)) s"
echo "== PPO, one base vs reward model on its own base, $DEVICE"
timeout 130 $PYTHON -m bench.ppo --device "$DEVICE" "${PPO_SIZE[@]}" --reward-own-base 2>&1 | quiet | tee "$OUT/ppo.txt"
echo "== $((SECONDS - start)) s"
echo "== reward model, 12 x 768 model, prompts ~3x the responses, $DEVICE"
timeout 110 $PYTHON -m bench.reward_model --device "$DEVICE" "${RM_LARGE[@]}" 2>&1 | quiet | tee "$OUT/rm_large.txt"
echo "== $((SECONDS - start)) s"
