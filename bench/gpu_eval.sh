#!/usr/bin/env bash
# Evaluation decode throughput on ONE GPU: HF generate (lockstep batches: `hf`,
# `hf-resumable`) vs transformers continuous batching (`hf-cb`), random-init Qwen2.5-1.5B
# and 7B (architecture only: no weights downloaded, no hub access), forced long-tail answer
# lengths capped at MAX_GEN_TOKS. Budget: < 10 min on an H100 (set MAX_GEN_TOKS / N lower
# for a smaller card). Prints tokens/s and useful fraction per backend and size; JSON goes
# to $OUT (default bench/out/).
#
#   bash bench/gpu_eval.sh                 # from the repo root, in the project venv
#   N=64 MAX_GEN_TOKS=2048 bash bench/gpu_eval.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${OUT:-bench/out}
N=${N:-64}                      # prompts per size
HF_BATCH=${HF_BATCH:-16}        # lm-eval HF batch size
MAX_GEN_TOKS=${MAX_GEN_TOKS:-2048}
MIN_LEN=${MIN_LEN:-128}         # Pareto scale: typical short answer
ALPHA=${ALPHA:-1.1}             # Pareto shape: long tail, ~10% at the cap
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

CFGS=$(mktemp -d)
trap 'rm -rf "$CFGS"' EXIT

# Qwen2.5 configs written locally (random init needs only the architecture) plus the demo
# tokenizer (the prompts' token ids; vocab_size must cover it, and Qwen's is 151936).
"$PY" - "$CFGS" <<'EOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
common = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_act="silu",
              max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
              vocab_size=151936, bos_token_id=151643, eos_token_id=151645, torch_dtype="bfloat16",
              use_sliding_window=False, attention_dropout=0.0, initializer_range=0.02)
sizes = {
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
}
for name, cfg in sizes.items():
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({**common, **cfg}, indent=1))
EOF
TOK=$CFGS/tok
"$PY" workflow/scripts/make_demo.py data --out "$CFGS/s1k.jsonl" --rows 16 >/dev/null
"$PY" workflow/scripts/make_demo.py tokenizer --corpus "$CFGS/s1k.jsonl" workflow/tasks/demo --out "$TOK" >/dev/null
for size in 1.5B 7B; do
  cp "$TOK"/* "$CFGS/$size/"
  echo "== Qwen2.5-$size (random init), N=$N hf_batch=$HF_BATCH max_gen_toks=$MAX_GEN_TOKS"
  timeout 280 "$PY" bench/eval_throughput.py --model "$CFGS/$size" --random-init --device cuda \
    --dtype bfloat16 --n "$N" --batch-size "$HF_BATCH" --max-gen-toks "$MAX_GEN_TOKS" \
    --min-len "$MIN_LEN" --alpha "$ALPHA" --json "$OUT/eval_throughput_$size.json" \
    || echo "Qwen2.5-$size: failed or over 280 s (lower N / MAX_GEN_TOKS)"
done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
