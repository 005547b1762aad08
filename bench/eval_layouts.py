#!/usr/bin/env python
"""Evaluation throughput of the GPU layouts a multi-GPU job can use, on the SAME prompts.

  single  one process, one GPU
  split   one process, the model split layer-wise over G GPUs (lm-eval parallelize=True: the
          GPUs take turns, so it decodes at about the speed of one)
  dp      torchrun G: a replica per GPU, the fixed batches shared out (eval_cell --layout dp)
  tp      torchrun G: tensor parallel (transformers tp_plan="auto"; eval_cell --layout tp)

Every layout runs workflow/scripts/eval_cell.py on one task of N generated prompts, greedy, with
`max_gen_toks` new tokens: a random-init model rarely stops early, so every answer runs to the
cap and tokens/s = N x max_gen_toks / generation wall time (the backend's `generate_s`: from the
first batch to the last answer gathered, the slowest rank's; model load excluded). Prints one
line per layout and the ratios to `split` (to `single` where no split runs).

  python bench/eval_layouts.py --model <dir with config.json + tokenizer> --gpus 2     # GPU
  python bench/eval_layouts.py --device cpu --gpus 2 --n 8 --max-gen-toks 8            # CPU check
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK = """task: bench_prompts
custom_dataset: !function utils.load_jsonl
dataset_kwargs:
  data_file: prompts.jsonl
output_type: generate_until
test_split: test
doc_to_text: "{{problem}}"
doc_to_target: "{{answer}}"
process_results: !function utils.process_results_aime
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
generation_kwargs:
  until: ["<|im_end|>"]
  do_sample: false
repeats: 1
num_fewshot: 0
metadata:
  version: 1.0
"""


def task_dir(root: Path, n: int) -> Path:
    d = root / "task"
    d.mkdir(parents=True, exist_ok=True)
    (d / "bench.yaml").write_text(TASK)
    (d / "utils.py").write_text((ROOT / "workflow" / "tasks" / "demo" / "utils.py").read_text())
    (d / "prompts.jsonl").write_text("".join(
        json.dumps({"problem": f"Problem {i}: add {i} and {2 * i + 1}, then explain each step.", "answer": str(3 * i + 1)})
        + "\n" for i in range(n)))
    return d


def run(layout: str, args, tasks: Path, out: Path) -> float:
    cmd = [sys.executable, str(ROOT / "workflow" / "scripts" / "eval_cell.py")]
    if layout in ("dp", "tp"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.gpus),
               *cmd[1:]]
    from elicit import steps

    greedy = {"task": ["bench_prompts"], "seed": [0], "temperature": 0, "max_gen_toks": args.max_gen_toks,
              "batch_size": args.batch_size, "max_length": args.max_length, "layout": layout,
              "backend": "hf-resumable", "top_p": 1.0, "top_k": 0, "min_p": 0, "repetition_penalty": 1.0}
    cmd += ["--model", args.model, "--include-path", str(tasks), "--device", args.device, "--dtype", args.dtype,
            *steps.argv(greedy), "--out", str(out)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if layout in ("single",) and args.device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{layout}: {proc.stderr[-2000:]}")
    return json.loads(out.read_text())["resume"]["generate_s"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model dir (default: a tiny random Qwen2 built here)")
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--n", type=int, default=64, help="prompts")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-gen-toks", type=int, default=1024)
    ap.add_argument("--max-length", type=int, default=4096)
    ap.add_argument("--layouts", nargs="+", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    layouts = args.layouts or (["single", "split", "dp", "tp"] if args.device == "cuda" else ["single", "dp", "tp"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model is None:  # the demo's tiny model, built by its own program
            subprocess.run([sys.executable, str(ROOT / "workflow" / "scripts" / "make_demo.py"), "tiny",
                            "--out", str(tmp)], check=True, capture_output=True)
            args.model = str(tmp / "base")
        tasks = task_dir(tmp, args.n)
        res = {}
        for layout in layouts:
            gen = max(1e-9, run(layout, args, tasks, tmp / layout / "seed0.json"))
            res[layout] = {"seconds": round(gen, 2), "tokens_per_s": round(args.n * args.max_gen_toks / gen, 1)}
            print(f"{layout:<7} {res[layout]['tokens_per_s']:>10.1f} tok/s  ({gen:.1f} s of generation, "
                  f"N={args.n}, batch {args.batch_size}, {args.max_gen_toks} new tokens, {args.gpus} devices)",
                  flush=True)
    ref = res.get("split") or res.get("single")
    for layout, r in res.items():
        print(f"ratio {layout}/{'split' if 'split' in res else 'single'}: {r['tokens_per_s'] / ref['tokens_per_s']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
