#!/usr/bin/env bash
# GPU acceptance: the whole DAG of config/gpu_smoke.yaml on ONE GPU, offline, then one table with a
# PASS / FAIL line per check (bench/gpu_acceptance.py: rules finished, peak memory of training and
# evaluation vs the memory plan, train.py's tokens/s and MFU, the default evaluation backend vs lm-eval's
# plain HF backend, the fused loss on CUDA). At most ~9 minutes on an H100/H200.
#
#   bash bench/gpu_acceptance.sh               # on a GPU node, in the project's environment
#   bash bench/gpu_acceptance.sh --rehearse    # the same checks on CPU with tiny sizes (CI: tests/test_gpu_acceptance.py)
#
# Two phases, so that the speed figures are not shared: the trainings one at a time on the GPU
# (--resources gpu=1, up to selection), then everything else, the four evaluation jobs at once (a job
# sizes its continuous-batching cache to its answers, so they share the GPU; on the H200 one hf-cb job
# of the 1.5B took ~100 ms per decoding step, host-bound: side by side they overlap).
# Environment: PYTHON (default python), WORK (default a new folder under /tmp), CORES (default nproc),
# BUDGET_S (default 0: none): stop phase 2 where the speed cells (75 s each at most) would no longer fit, so the
# table always prints; SPEED_TOKENS (default 256): the speed cells' answer length.
set -uo pipefail
cd "$(dirname "$0")/.."
FILES=(config/gpu_smoke.yaml)
REHEARSE=()
if [[ "${1:-}" == "--rehearse" ]]; then FILES+=(config/gpu_smoke_cpu.yaml); REHEARSE=(--rehearse --speed-tokens 64); fi
PY=${PYTHON:-python}
WORK=${WORK:-$(mktemp -d /tmp/gpu_smoke.XXXXXX)}
CORES=${CORES:-$(nproc)}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
mkdir -p "$WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
echo "workdir $WORK, config ${FILES[*]}, $CORES cores"
SMK=("$PY" -m snakemake --profile profiles/local -d "$WORK" --configfile "${FILES[@]}" --cores "$CORES")
t0=$(date +%s)
"${SMK[@]}" --resources gpu=1 --until select_checkpoint > "$WORK/phase1.log" 2>&1
rc=$?
t1=$(date +%s)
echo "phase 1 (data, models, trainings one at a time, selection): exit $rc, $((t1 - t0)) s"
BUDGET=${BUDGET_S:-0}
LIMIT=()
if (( BUDGET > 0 )); then LIMIT=(timeout -s TERM -k 20 "$(( BUDGET - (t1 - t0) - 160 ))"); fi
if [[ $rc == 0 ]]; then
  "${LIMIT[@]}" "${SMK[@]}" --resources gpu=4 > "$WORK/phase2.log" 2>&1
  rc=$?
fi
t2=$(date +%s)
echo "phase 2 (evaluation cells side by side, aggregation, report): exit $rc, $((t2 - t1)) s"
[[ $rc == 0 ]] || tail -n 40 "$WORK"/phase*.log
"$PY" bench/gpu_acceptance.py --workdir "$WORK" --configfile "${FILES[@]}" --snakemake-rc "$rc" \
  --snakemake-s "$((t2 - t0))" --throughput "$WORK/speed" "${REHEARSE[@]}" \
  ${BUDGET_S:+--speed-timeout 75} ${SPEED_TOKENS:+--speed-tokens $SPEED_TOKENS}
status=$?
echo "gpu_acceptance total: $(( $(date +%s) - t0 )) s"
exit $status
