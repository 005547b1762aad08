#!/usr/bin/env bash
# GPU acceptance of the evaluation engine hf-slots (elicit/eval/slots.py): one PASS / FAIL table, at most
# ~5 minutes on one H100 or H200 (bench/gpu_eval_acceptance.py says what each check measures).
#
#   bash bench/gpu_eval_acceptance.sh               # on a GPU node, in the project's environment
#   bash bench/gpu_eval_acceptance.sh --rehearse    # the same steps on CPU, tiny models (tests/test_gpu_eval_acceptance.py)
#
# Each part runs in its own process under its own time limit, so one slow part cannot eat the rest:
#   small  1.5B: step times at 1k/4k/8k vs the bandwidth model, tokens/s, GPU busy, syncs, bitwise
#          answers, logits, the paper-like workload                      (SMALL_S, default 150 s)
#   large  7B at its slot count                                          (LARGE_S, default 80 s)
#   cb     hf-cb on the 1.5B in the same run, for the ratio              (CB_S, default 45 s)
# Environment: PYTHON (default python), OUT (default a new folder under /tmp): the parts' JSON and logs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-$(mktemp -d /tmp/gpu_eval.XXXXXX)}
REH=()
if [[ "${1:-}" == "--rehearse" ]]; then REH=(--rehearse); fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
t0=$(date +%s)
for part in small:${SMALL_S:-150} large:${LARGE_S:-80} cb:${CB_S:-45}; do
  name=${part%%:*} limit=${part##*:}
  s=$(date +%s)
  timeout -s TERM -k 10 "$limit" "$PY" bench/gpu_eval_acceptance.py "$name" --out "$OUT" "${REH[@]}" \
    > "$OUT/$name.log" 2>&1
  echo "part $name: exit $?, $(( $(date +%s) - s )) s (limit $limit s)"
done
"$PY" bench/gpu_eval_acceptance.py table --out "$OUT" "${REH[@]}"
status=$?
echo "gpu_eval_acceptance total: $(( $(date +%s) - t0 )) s; logs and JSON in $OUT"
exit $status
