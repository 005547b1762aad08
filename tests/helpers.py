"""Plain helpers that several test modules share (fixtures live in conftest.py).

No test module imports from another test module: what two of them need is here.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, child_env, snakemake, train_flags

SCRIPTS = ROOT / "workflow" / "scripts"
TRAIN = SCRIPTS / "train.py"
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")

# ---------------------------------------------------------------- train.py on a tiny offline model
# lr high enough that the val loss goes up and down: candidates move, `bad` counts, the
# resume must restore all of that bookkeeping, not only the weights.
TRAIN_ARGS = train_flags(subset=16, global_batch=4, max_steps=16, eval_every=2, lr=3e-2, warmup_steps=2,
                         max_seq_len=256, patience=100, tolerance=0.02, seed=3)
COMPARED = ("step", "val_loss", "best_val_loss", "train_loss", "lr", "grad_norm")


def train_env(threads: int = 1, **extra) -> dict:
    return child_env(threads, PYTHONUNBUFFERED="1", **extra)


def build_demo(d: Path) -> Path:
    """A 48-row s1K-shaped table, its manifest, a BPE tokenizer and a tiny Qwen2 under d (~10 s)."""
    steps = [
        ["make_demo.py", "data", "--out", d / "s1k.jsonl", "--rows", "48", "--n-val", "8", "--subsets", "16", "8",
         "--split-seed", "0"],
        ["make_demo.py", "tokenizer", "--corpus", d / "s1k.jsonl", "--out", d / "tok"],
        # init 0.05: at TRAIN_ARGS' lr its validation loss goes up and down (from the demo's 0.1
        # this small model trains too smoothly for the bookkeeping to be exercised)
        ["make_demo.py", "model", "--tokenizer", d / "tok", "--out", d / "model",
         "--hidden", "32", "--layers", "2", "--heads", "4", "--context", "2048", "--init-range", "0.05"],
        ["prepare_data.py", "fetch", "--source", d / "s1k.jsonl", "--expected-rows", "48",
         "--out", d / "s1k.parquet"],
        ["prepare_data.py", "split", "--table", d / "s1k.parquet", "--n-val", "8",
         "--subsets", "16", "8", "--seed", "0", "--out", d / "manifest.json"],
    ]
    for cmd in steps:
        subprocess.run([sys.executable, SCRIPTS / cmd[0], *map(str, cmd[1:])], check=True,
                       env=train_env(2), capture_output=True)
    return d


def train_cmd(demo: Path, out: Path, extra=(), launcher=(sys.executable,)):
    return [*launcher, str(TRAIN), "--model", str(demo / "model"), "--table",
            str(demo / "s1k.parquet"), "--manifest", str(demo / "manifest.json"),
            "--out", str(out), *TRAIN_ARGS, *extra]


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_same_metrics(got: list[dict], want: list[dict], tol: float) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        for k in COMPARED:
            if w.get(k) is None:
                assert g.get(k) is None, (k, g, w)
            else:
                assert g[k] == pytest.approx(w[k], rel=tol, abs=tol), (k, g["step"], g[k], w[k])


def relative_weight_difference(a: Path, b: Path, init: Path) -> float:
    """||W_a - W_b|| / ||W_b - W_init|| over all tensors (Frobenius norms): how far two runs' weights
    are apart, as a share of what the training changed. Used where two runs differ only in the order
    of floating-point sums (2 ranks, ZeRO-3): see test_train_deepspeed.py for the bound and why it is
    not an element-wise one."""
    from safetensors.torch import load_file

    wa, wb, w0 = (load_file(Path(d) / "model.safetensors") for d in (a, b, init))
    assert wa.keys() == wb.keys() == w0.keys()
    apart = sum(((wa[k].double() - wb[k].double()) ** 2).sum() for k in wa) ** 0.5
    moved = sum(((wb[k].double() - w0[k].double()) ** 2).sum() for k in wb) ** 0.5
    return float(apart / moved)


class DirPeak:
    """Polls a directory from a thread: the most checkpoint dirs (.tmp-* included) seen at once."""

    def __init__(self, path: Path):
        self.path, self.peak, self.polls = path, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                n = sum(1 for p in self.path.iterdir() if "step-" in p.name)
            except FileNotFoundError:
                n = 0
            self.peak, self.polls = max(self.peak, n), self.polls + 1
            time.sleep(0.001)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_reference(demo: Path, out: Path) -> dict:
    """One uninterrupted run, its checkpoint directory polled throughout."""
    with DirPeak(out / "work" / "checkpoints") as peak:
        proc = subprocess.run(train_cmd(demo, out), env=train_env(), capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"out": out, "metrics": jsonl_rows(out / "metrics.jsonl"), "peak": peak, "proc": proc}


def kill_steps(metrics: list[dict]) -> list[int]:
    """The steps where a stop tests the most of the resume state, from an uninterrupted run's rows:
    the step after the first evaluation that was no candidate (mid-interval; the selection's `bad`
    count and candidate differ from the newest evaluation's), then the next evaluation that left two
    checkpoints on disk (the new candidate written, the older one still kept)."""
    miss = next(r["step"] for r in metrics if r["step"] > 0 and r["checkpoints_on_disk"] is None)
    two = next(r["step"] for r in metrics if r["step"] > miss + 1 and r["checkpoints_on_disk"] == 2)
    return [miss + 1, two]


def kill_at(cmd: list, step: int, sig: str) -> subprocess.CompletedProcess:
    """Run train.py until it signals itself at `step` (StopWatch's test hook: a real signal through the
    real handler, landing exactly there)."""
    return subprocess.run(cmd, env=train_env(TRAIN_SIGNAL_AT=f"{step}:{sig}"), capture_output=True, text=True,
                          timeout=300)


# ---------------------------------------------------------------- eval_cell.py
def eval_env(cache: Path | None = None, **extra) -> dict:
    """eval_cell.py's environment: offline, one thread, a dummy token (the gated-dataset check)."""
    env = child_env(HF_DATASETS_OFFLINE="1", HF_TOKEN="hf_dummy_token_for_the_gated_check", **extra)
    if cache is not None:
        env["HF_DATASETS_CACHE"] = str(cache)
    return env


# ---------------------------------------------------------------- prepare_data.py and tokenizers
S1K_ROW = json.loads((ROOT / "tests" / "data" / "s1k_rows.json").read_text())[0]


def s1k_rows(n=12):
    return [dict(S1K_ROW, question=f"Problem {i}: {S1K_ROW['question']}", solution=str(i)) for i in range(n)]


def write_jsonl(path, rs):
    path.write_text("".join(json.dumps(r) + "\n" for r in rs))
    return path


def prepare_data_cli(argv):
    """prepare_data's CLI in-process: None on success, the SystemExit message otherwise."""
    import prepare_data

    try:
        prepare_data.main([str(a) for a in argv])
    except SystemExit as e:
        return str(e.code)
    return None


def files(d):
    return sorted(p.name for p in d.rglob("*")) if d.exists() else []


def build_tokenizer(corpus: list[str]):
    """The demo's tokenizer builder (Qwen2's pre-tokenizer, special tokens, chat template), small vocabulary."""
    from elicit.data.demo import train_tokenizer

    return train_tokenizer(corpus + ["<think>", "</think>", "Answer:", "think", "answer"], vocab_size=400)


# ---------------------------------------------------------------- aggregate.py
BENCH = {"AIME": ["aime24", "aime25"], "GPQA": ["gpqa"]}


def put_samples(root, size, config, task, seed, correct):
    """A cell with its per-problem samples (the score is their mean)."""
    p = root / "eval" / size / config / task / f"seed{seed}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"doc_id": i, "score": int(c)} for i, c in enumerate(correct)]
    p.with_name(p.stem + ".samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p.write_text(json.dumps({"score": 100 * sum(correct) / len(correct), "n_samples": len(correct)}))


def aggregated_with_samples(root: Path) -> dict:
    """aggregate.run over a 7B grid with per-problem samples (4 seeds; base, skyline, lora, full-29,
    full-928) and full-29's training curve: intervals, LoRA vs full, Table 1b, every figure."""
    import numpy as np

    import aggregate

    (root / "data").mkdir()
    (root / "data" / "manifest.json").write_text(json.dumps({"n_rows": 1000}))
    rng = np.random.default_rng(0)
    p = {"base": 0.1, "skyline": 0.7, "lora": 0.35, "full-29": 0.2, "full-928": 0.45}
    for config, q in p.items():
        for seed in range(4):
            for task, n in (("aime24", 30), ("aime25", 30), ("gpqa", 198)):
                put_samples(root, "7B", config, task, seed, rng.random(n) < q)
    metrics = root / "train" / "7B" / "full-29" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("".join(json.dumps({"step": s, "val_loss": 1 / (s + 1)}) + "\n" for s in (0, 10, 20)))
    return aggregate.run(root, ["7B"], BENCH, paper=None, n_boot=300)


# ---------------------------------------------------------------- snakemake and SLURM
def planned_jobs(workdir, *args):
    """{rule: jobs} that a dry run plans in `workdir` (`evaluate`: every evaluate_* job together)."""
    out = snakemake(workdir, "-n", "--quiet", "rules", *args)
    stats = (out.stdout + out.stderr).split("Job stats:")[-1]
    jobs = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M)}
    jobs["evaluate"] = sum(v for k, v in jobs.items() if k.startswith("evaluate"))  # a job: a task, both seeds
    return jobs


def fake_snakemake(tmp_path, cwd, *args):
    """A process whose program is named snakemake, working in `cwd` (as a real run does after -d)."""
    exe = tmp_path / "bin" / "snakemake"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(exe), *args], cwd=cwd)
    time.sleep(0.3)
    return proc


SLURM_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", ""}


def wait_job(job_id: str, timeout: float = 60) -> str:
    """Poll squeue (no sacct: there is no slurmdbd) until the job has left SLURM_ACTIVE."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                               capture_output=True, text=True).stdout.strip()
        if state not in SLURM_ACTIVE:
            return state
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} still {state!r} after {timeout}s")


PARTITION_OF_SIZE = {"tiny-a": "gpu-small", "tiny-b": "gpu-large"}

# Fails the first attempt of one job (then lets it pass): loaded by every python process of the
# jobs through PYTHONPATH, touches nothing of the workflow.
FAIL_ONCE = textwrap.dedent('''
    import os, sys
    victim, marker = os.environ.get("FAIL_ONCE_OUTPUT"), os.environ.get("FAIL_ONCE_MARKER")
    if victim and any(a.endswith(victim) for a in sys.argv) and not os.path.exists(marker):
        open(marker, "w").close()
        sys.stderr.write("injected failure (first attempt)\\n")
        sys.exit(3)
''')


def make_profile(tmp_path):
    """profiles/slurm with the test cluster's site values (tmp_path/profile, tmp_path/site.yaml; the
    config is tmp_path/grid.yaml, which the test writes)."""
    prod = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    site = {"account": "demo-account", "qos": None, "gpu_model": None,
            "partitions": {"default": "gpu-small", **PARTITION_OF_SIZE}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump({"site": site}))
    test = {**prod, "configfile": [str(tmp_path / "grid.yaml"), str(tmp_path / "site.yaml")], "jobs": 6,
            "latency-wait": 5,
            "slurm-init-seconds-before-status-checks": 2}
    (tmp_path / "profile").mkdir(exist_ok=True)
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(test))
    return test


# Saved answers whose scores hide something (stop reasons, the second scorer)
HIDDEN_BENCH = {"AIME": ["aime"], "GPQA": ["gpqa"]}  # test_aggregate_hidden, test_train_seeds
HIDDEN_N = 20
HIDDEN_CORRECT = {"base": 0, "skyline": 20, "full-4": 5, "full-8": 10, "full-16": 15, "lora": 8, "lora@a1": 2}


def hidden_answer(task, doc, right):
    """(response, target, upstream score): GPQA's last doc says \\boxed{C} after a trace that names
    (A): upstream's last-"(X)" reading scores it 0, the second scorer 1."""
    if task == "aime":
        return (f"<think>x</think>\\boxed{{{doc if right else 999}}}", str(doc), int(right))
    if doc == HIDDEN_N - 1:
        return "<think>(A) is wrong</think> So the answer is $\\boxed{C}$.", "(C)", 0
    return (f"The answer is ({'C' if right else 'B'})", "(C)", int(right))


def put_hidden(root, size, config, task, seed, k):
    """A cell of k right answers of HIDDEN_N, with a truncated, a stop-string and an EOS answer."""
    p = root / "eval" / size / config / task / f"seed{seed}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for doc in range(HIDDEN_N):
        response, target, score = hidden_answer(task, doc, doc < k)
        reason = "max_gen_toks" if doc == 0 else "stop:Question:" if doc == 1 else "eos"
        rows.append({"doc_id": doc, "target": target, "response": response, "filtered": "x", "score": score,
                     "n_new_tokens": 100 if doc == 0 else 10, "stop_reason": reason})
    p.write_text(json.dumps({"score": 100 * sum(r["score"] for r in rows) / HIDDEN_N, "n_samples": HIDDEN_N}))
    p.with_name(p.stem + ".samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
