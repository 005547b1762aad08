#!/usr/bin/env bash
# GPU acceptance, part two: training at the GPU's compute speed, then the smoke DAG, on ONE GPU in at
# most ~4 minutes, one table with a PASS / FAIL line per check (bench/gpu_train_acceptance.py):
#   full finetune of the random-init Qwen2.5-1.5B (config/gpu_smoke.yaml) at 8k and 16k tokens per
#   sequence: tokens/s, MFU (model FLOPs / the GPU's dense bf16 peak; goal >= 40 % at 8k, 16k reported)
#   and peak memory against the memory plan (+-15 %); the rank-1 LoRA at the same lengths (goal MFU >= 30 %,
#   on 4N); then the smoke DAG (data, models, trainings, evaluation, aggregation, report): all rules finish.
# Each step runs train.py's own step with the config's settings and its memory-planned recompute.
#
#   bash bench/gpu_train_acceptance.sh               # on a GPU node, in the project's environment
#   bash bench/gpu_train_acceptance.sh --rehearse    # CPU, tiny sizes, < 2 min (tests/test_gpu_train_acceptance.py);
#                                                    # the DAG step is a dry run there (the whole DAG on CPU:
#                                                    # bench/gpu_acceptance.sh --rehearse)
# Environment: PYTHON (default python), WORK (default a new folder under /tmp), CORES (default nproc),
# BUDGET_S (default 240: the whole call), MODEL_S (60), CELL_S (40 per mode and length): each step's limit;
# the DAG gets what is left. SEQS (default "8192 16384"; rehearsal "256 512").
set -uo pipefail
cd "$(dirname "$0")/.."
FILES=(config/gpu_smoke.yaml)
REHEARSE=()
SEQS=${SEQS:-"8192 16384"}
if [[ "${1:-}" == "--rehearse" ]]; then
  FILES+=(config/gpu_smoke_cpu.yaml); REHEARSE=(--rehearse); SEQS=${SEQS_REHEARSE:-"256 512"}
fi
PY=${PYTHON:-python}
WORK=${WORK:-$(mktemp -d /tmp/gpu_train.XXXXXX)}
CORES=${CORES:-$(nproc)}
BUDGET=${BUDGET_S:-240} MODEL_S=${MODEL_S:-60} CELL_S=${CELL_S:-40}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
mkdir -p "$WORK/cells"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
echo "workdir $WORK, config ${FILES[*]}, lengths $SEQS"
B=(bench/gpu_train_acceptance.py)
t0=$(date +%s)
timeout -k 10 "$MODEL_S" "$PY" "${B[@]}" model --configfile "${FILES[@]}" --out "$WORK/model" > "$WORK/model.log" 2>&1
echo "model: exit $?, $(( $(date +%s) - t0 )) s"
cell() {  # cell LIMIT_S NAME ARGS...: one step of train.py's training, its own time limit
  local limit=$1 name=$2 t rc
  shift 2
  t=$(date +%s)
  timeout -k 10 "$limit" "$PY" "${B[@]}" cell --configfile "${FILES[@]}" --out "$WORK/cells" --model "$WORK/model" \
    "$@" > "$WORK/cell-$name.log" 2>&1
  rc=$?
  echo "train $name: exit $rc, $(( $(date +%s) - t )) s (limit $limit s)"
  [[ $rc == 0 ]] || tail -n 15 "$WORK/cell-$name.log"
}
if [[ ${#REHEARSE[@]} -gt 0 ]]; then  # one process for every cell: the CPU's time goes to imports otherwise
  cell $(( 4 * CELL_S )) all --mode full lora --seq $SEQS --gpu-mem-gib 80  # the plan's branch, as on an H100
else
  for mode in full lora; do
    for seq in $SEQS; do cell "$CELL_S" "$mode-$seq" --mode "$mode" --seq "$seq"; done
  done
fi
t1=$(date +%s)
LEFT=$(( BUDGET - (t1 - t0) - 15 ))
(( LEFT > 30 )) || LEFT=30
SMK=("$PY" -m snakemake --profile profiles/local -d "$WORK/dag" --configfile "${FILES[@]}" --cores "$CORES")
if [[ ${#REHEARSE[@]} -gt 0 ]]; then
  timeout -k 10 "$LEFT" "${SMK[@]}" -n --quiet rules > "$WORK/dag.log" 2>&1
else
  timeout -s TERM -k 20 "$LEFT" "${SMK[@]}" --resources gpu=4 > "$WORK/dag.log" 2>&1  # jobs share the GPU, as phase 2 of gpu_acceptance.sh
fi
rc=$?
t2=$(date +%s)
echo "smoke DAG${REHEARSE:+ (dry run)}: exit $rc, $((t2 - t1)) s (limit $LEFT s)"
[[ $rc == 0 ]] || tail -n 30 "$WORK/dag.log"
"$PY" "${B[@]}" table --configfile "${FILES[@]}" --out "$WORK/cells" --seq $SEQS --workdir "$WORK/dag" \
  --dag-log "$WORK/dag.log" --snakemake-rc "$rc" --snakemake-s "$((t2 - t1))" "${REHEARSE[@]}"
status=$?
echo "gpu_train_acceptance total: $(( $(date +%s) - t0 )) s"
exit $status
