#!/usr/bin/env bash
# Evaluation throughput on the GPUs of ONE machine, in one call (< 10 min on H100/H200):
#  1. the paper workload on one GPU: today's lockstep batches of 8 (`hf-resumable`) vs the default
#     `hf-cb` jobs, random-init Qwen2.5-1.5B and 7B, forced long-tail answer lengths capped at
#     MAX_GEN_TOKS (bench/eval_throughput.py);
#  2. per layout over the visible GPUs: naive layer split (lm-eval parallelize), data-parallel
#     replicas and tensor parallel (bench/eval_layouts.py, eval_cell.py --layout split|dp|tp),
#     random-init Qwen2.5-7B, the same prompts; needs >= 2 GPUs (skipped, and said, on one).
# Prints tokens/s and ratios; JSON goes to $OUT (default bench/out/).
#
#   bash bench/gpu_eval.sh                 # from the repo root, in the project venv
#   N=64 MAX_GEN_TOKS=2048 PARTS=layouts bash bench/gpu_eval.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${OUT:-bench/out}
N=${N:-64}                      # prompts (layouts part)
MAX_GEN_TOKS=${MAX_GEN_TOKS:-2048}
AIME=${AIME:-8}                 # paper workload (bench/eval_throughput.py): problems per AIME task,
GPQA=${GPQA:-16}                # GPQA problems,
SEEDS=${SEEDS:-2}               # seeds,
LOCKSTEP_BATCHES=${LOCKSTEP_BATCHES:-2}  # and today's lockstep batches timed (a random sample)
PARTS=${PARTS:-"backends layouts"}
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l || echo 0)
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

CFGS=$(mktemp -d)
trap 'rm -rf "$CFGS"' EXIT

# Qwen2.5 architectures from resources/models (random init needs only them) plus the demo
# tokenizer (the prompts' token ids; vocab_size covers it).
for size in 1.5B 7B; do
  mkdir -p "$CFGS/$size"
  "$PY" - "resources/models/Qwen--Qwen2.5-$size-Instruct.json" "$CFGS/$size/config.json" <<'PYEOF'
import json, sys
cfg = {k: v for k, v in json.load(open(sys.argv[1])).items() if not k.startswith("_")}
cfg.setdefault("architectures", ["Qwen2ForCausalLM"])
json.dump(cfg, open(sys.argv[2], "w"), indent=1)
PYEOF
done
TOK=$CFGS/tok
"$PY" workflow/scripts/make_demo.py data --out "$CFGS/s1k.jsonl" --rows 16 --n-val 4 --subsets 8 --split-seed 0 >/dev/null
"$PY" workflow/scripts/make_demo.py tokenizer --corpus "$CFGS/s1k.jsonl" workflow/tasks/demo --out "$TOK" >/dev/null
for size in 1.5B 7B; do cp "$TOK"/* "$CFGS/$size/"; done

if [[ " $PARTS " == *" backends "* ]]; then
  for size in 1.5B 7B; do
    echo "== paper workload, Qwen2.5-$size (random init): lockstep batches of 8 vs hf-cb jobs, max_new=$MAX_GEN_TOKS"
    timeout 200 "$PY" bench/eval_throughput.py --arch "resources/models/Qwen--Qwen2.5-$size-Instruct.json" \
      --device cuda --dtype bfloat16 --max-new "$MAX_GEN_TOKS" --aime "$AIME" --gpqa "$GPQA" --seeds "$SEEDS" \
      --lockstep-batches "$LOCKSTEP_BATCHES" --json "$OUT/eval_throughput_$size.json" \
      || echo "Qwen2.5-$size: failed or over 200 s (lower AIME / GPQA / SEEDS / MAX_GEN_TOKS)"
  done
fi
if [[ " $PARTS " == *" layouts "* ]]; then
  if [ "$NGPU" -ge 2 ]; then
    echo "== layouts over $NGPU GPUs, Qwen2.5-7B (random init, saved once), N=$N, ${MAX_GEN_TOKS} new tokens"
    "$PY" -c "import torch, transformers as t; c=t.AutoConfig.from_pretrained('$CFGS/7B'); \
m=t.AutoModelForCausalLM.from_config(c, dtype=torch.bfloat16); m.save_pretrained('$CFGS/7B')"
    timeout 300 "$PY" bench/eval_layouts.py --model "$CFGS/7B" --gpus "$NGPU" --n "$N" \
      --batch-size 8 --max-gen-toks "$MAX_GEN_TOKS" --json "$OUT/eval_layouts_7B.json" \
      || echo "layouts: failed or over 300 s (lower N / MAX_GEN_TOKS)"
  else
    echo "== layouts: $NGPU GPU(s) visible; the split/dp/tp comparison needs >= 2 (not run)"
  fi
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
