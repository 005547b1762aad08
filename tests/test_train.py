"""train.py at paper scale, proven on a tiny offline model (about a minute in all).

* kill-and-resume is exact: SIGTERM and SIGUSR1 at the steps that matter (kill_steps), rerun, same
  metrics, selection and weights as an uninterrupted run with the same seed;
* torchrun with 2 gloo processes gives the 1-process val losses (same global batch);
* at most two checkpoints exist at any time, and the survivor is what select() picks;
* rank-1 LoRA on Qwen2.5-32B's architecture trains 8,388,608 parameters;
* the global-batch divisibility error names the numbers.
"""
from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys

import pytest

from tests.conftest import lora_flags
from tests.helpers import (
    SCRIPTS,
    assert_same_metrics,
    jsonl_rows,
    kill_at,
    kill_steps,
    relative_weight_difference,
    train_cmd,
    train_env,
    wait_job,
)


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_reference_run_logs_and_prunes(reference):
    from elicit.train.checkpoints import select

    rows, out = reference["metrics"], reference["out"]
    assert [r["step"] for r in rows] == list(range(0, 17, 2))
    # the run is not monotone: some evaluations are no candidate, the candidate moves
    assert any(r["checkpoints_on_disk"] is None for r in rows)
    for r in rows[1:]:
        assert {"train_loss", "lr", "tokens_per_s", "grad_norm"} <= r.keys()
        assert r["tokens_per_s"] > 0 and r["grad_norm"] > 0
    # pruning bound: at most two checkpoints at any time (polled and self-reported)
    assert reference["peak"].polls > 100
    assert 1 <= reference["peak"].peak <= 2
    assert max(r["checkpoints_on_disk"] or 0 for r in rows) == 2
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == [f"step-{select(rows, 0.02)['selected_step']}"]
    assert not (out / "work").exists()
    # progress bar (rank 0, stderr -> the job log) and the trainable-parameter count
    assert "train: 100%" in reference["proc"].stderr
    assert "trainable parameters: " in reference["proc"].stdout


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_kill_and_resume_is_exact(demo, reference, tmp_path):
    """A SIGTERM and then a SIGUSR1 at the steps that matter (kill_steps); each exits 143 with a resume
    state at exactly that step; the final metrics, selection and weights equal the uninterrupted run's."""
    import torch

    from elicit.train.checkpoints import select

    out = tmp_path / "run"
    steps = kill_steps(reference["metrics"])
    for step, sig in zip(steps, ("TERM", "USR1")):
        proc = kill_at(train_cmd(demo, out, ["--progress", "false"]), step, sig)
        assert proc.returncode == 143, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert f"stop requested: saved resume state at step {step}" in proc.stdout
        saved = torch.load(out / "work" / "resume" / "state.pt", weights_only=True)  # tensors and plain data only
        assert saved["step"] == step
        assert 1 <= len(list((out / "work" / "checkpoints").glob("step-*"))) <= 2
    proc = subprocess.run(train_cmd(demo, out), env=train_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resumed at step" in proc.stdout
    rows = jsonl_rows(out / "metrics.jsonl")
    assert_same_metrics(rows, reference["metrics"], tol=1e-5)
    sel = select(rows, 0.02)["selected_step"]
    assert sel == select(reference["metrics"], 0.02)["selected_step"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"step-{sel}"]
    # the kept weights are the uninterrupted run's
    from safetensors.torch import load_file

    a = load_file(out / "checkpoints" / f"step-{sel}" / "model.safetensors")
    b = load_file(reference["out"] / "checkpoints" / f"step-{sel}" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() <= 1e-5, key


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_resume_state_from_other_settings_starts_over(demo, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(demo, out), env=train_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("{"):
            proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    proc = subprocess.run(train_cmd(demo, out, ["--max-steps", "4"]), env=train_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resume state is from other settings (settings changed); starting over" in proc.stdout
    assert [r["step"] for r in jsonl_rows(out / "metrics.jsonl")] == [0, 2, 4]


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_resume_state_from_another_split_starts_over(demo, tmp_path):
    """A killed run, then the split is redone under the same path (data.split_seed changed): the
    resume state is keyed by the manifest's bytes, so the rerun starts over (naming what changed)
    and ends exactly like a clean run on the new split."""
    import shutil

    manifest = tmp_path / "manifest.json"
    shutil.copy(demo / "manifest.json", manifest)

    def cmd(out, extra=()):
        c = train_cmd(demo, out, ["--progress", "false", *extra])
        c[c.index("--manifest") + 1] = str(manifest)
        return c

    out = tmp_path / "run"
    proc = subprocess.Popen(cmd(out), env=train_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line)["step"] >= 2:
            proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    subprocess.run([sys.executable, SCRIPTS / "prepare_data.py", "split", "--table", demo / "s1k.parquet",
                    "--n-val", "8", "--subsets", "16", "8", "--seed", "1", "--out", manifest],
                   check=True, env=train_env(), capture_output=True)
    proc = subprocess.run(cmd(out), env=train_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resume state is from other settings (manifest changed); starting over" in proc.stdout
    clean = tmp_path / "clean"
    assert subprocess.run(cmd(clean), env=train_env(), capture_output=True, timeout=300).returncode == 0
    assert_same_metrics(jsonl_rows(out / "metrics.jsonl"), jsonl_rows(clean / "metrics.jsonl"), tol=1e-6)


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_a_finished_run_is_restored_not_retrained(demo, reference, tmp_path):
    """Snakemake deletes a job's outputs before rerunning it (an upstream file rebuilt identically):
    train.py finds the finished run under <out>/.done/<key> (same inputs, settings and code) and
    links it back in seconds; other settings miss the key and train."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference["out"], out)
    want = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and ".done" not in p.parts
            and p.parent.name != "run" or p.name == "metrics.jsonl"}
    (out / "metrics.jsonl").unlink()
    shutil.rmtree(out / "checkpoints")
    proc = subprocess.run(train_cmd(demo, out), env=train_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "restored, nothing retrained" in proc.stdout, proc.stderr[-2000:]
    assert "trainable parameters" not in proc.stdout  # no model was even loaded
    got = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and ".done" not in p.parts
           and p.parent.name != "run" or p.name == "metrics.jsonl"}
    assert got == want
    proc = subprocess.run(train_cmd(demo, out, ["--max-steps", "4"]), env=train_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "restored" not in proc.stdout and "trainable parameters" in proc.stdout
    assert [r["step"] for r in jsonl_rows(out / "metrics.jsonl")] == [0, 2, 4]
    assert len(list((out / ".done").iterdir())) == 1  # one finished result kept per run directory


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_two_processes_match_one(demo, reference, tmp_path):
    """torchrun --nproc_per_node 2 (gloo): same global batch and data order, same losses."""
    out = tmp_path / "run"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2")
    proc = subprocess.run(train_cmd(demo, out, launcher=launcher), env=train_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world_size 2, grad_accum 2" in proc.stdout
    rows = jsonl_rows(out / "metrics.jsonl")
    # Float sums in another order (two ranks, all-reduce): ~1e-7 apart at first, growing
    # through 16 steps at this deliberately high lr (seen: 1.4e-4 relative at step 12).
    assert_same_metrics(rows[:3], reference["metrics"][:3], tol=1e-5)
    assert_same_metrics(rows, reference["metrics"], tol=2e-3)
    # the same bound as ZeRO-3's (test_train_deepspeed.py); seen here: 1.9e-5
    [ckpt] = (out / "checkpoints").iterdir()
    assert [ckpt.name] == [p.name for p in (reference["out"] / "checkpoints").iterdir()]
    assert relative_weight_difference(ckpt, reference["out"] / "checkpoints" / ckpt.name, demo / "model") < 1e-3


def test_lora_trains_every_row_and_logs_trainable_count(demo, tmp_path):
    out = tmp_path / "lora"
    proc = subprocess.run(train_cmd(demo, out, ["--mode", "lora", *lora_flags(), "--subset", "all", "--max-steps", "4",
                                           "--lr", "1e-2", "--progress", "false"]),
                          env=train_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # tiny model: hidden 32, intermediate 128, 2 layers, 4 heads (8 dims), 2 kv heads
    per_layer = (32 + 32) * 2 + (32 + 16) * 2 + (32 + 128) * 3
    assert f"trainable parameters: {2 * per_layer:,} of" in proc.stdout
    assert "train:" not in proc.stderr
    rows = jsonl_rows(out / "metrics.jsonl")
    assert rows[-1]["step"] == 4 and all(r["val_loss"] is None for r in rows)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-4"]
    assert (out / "checkpoints" / "step-4" / "adapter_model.safetensors").exists()


def test_lora_rank1_on_qwen25_32b_architecture():
    """Rank-1 LoRA on q,k,v,o,up,gate,down of Qwen2.5-32B: 8,388,608 trainable (~0.026%)."""
    import torch
    from accelerate import init_empty_weights
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=152064, hidden_size=5120, intermediate_size=27648,
                      num_hidden_layers=64, num_attention_heads=40, num_key_value_heads=8,
                      head_dim=128, max_position_embeddings=32768, tie_word_embeddings=False)
    with init_empty_weights():
        model = Qwen2ForCausalLM(cfg)
        base_total = sum(p.numel() for p in model.parameters())
        model = get_peft_model(model, LoraConfig(
            r=1, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "gate_proj",
                            "down_proj"]))
    assert all(p.device == torch.device("meta") for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert trainable == 8_388_608 == 64 * ((5120 + 5120) * 2 + (5120 + 1024) * 2 + (5120 + 27648) * 3)
    assert total == base_total + trainable
    assert 32.7e9 < base_total < 32.8e9  # Qwen2.5-32B: 32.76B parameters
    assert 100 * trainable / total == pytest.approx(0.0256, abs=5e-4)


@pytest.mark.parametrize("global_batch,world,ok", [(16, 8, True), (16, 16, True), (12, 8, False),
                                                   (4, 8, False), (0, 1, False)])
def test_global_batch_divisibility_names_the_numbers(global_batch, world, ok):
    from train import grad_accum

    if ok:
        assert grad_accum(global_batch, 1, world) * world == global_batch
        return
    with pytest.raises(SystemExit) as e:
        grad_accum(global_batch, 1, world)
    msg = str(e.value)
    assert f"global_batch={global_batch}" in msg and f"world_size ({world})" in msg


def test_global_batch_error_comes_before_any_collective(demo, tmp_path):
    """Under torchrun with 3 ranks, global_batch 4 fails fast with the numbers, no hang."""
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "3")
    proc = subprocess.run(train_cmd(demo, tmp_path / "run", launcher=launcher), env=train_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "global_batch=4 must equal" in proc.stdout + proc.stderr
    assert "world_size (3)" in proc.stdout + proc.stderr


@pytest.mark.parametrize("text,secs", [("1-02:03:04", 93784.0), ("02:03:04", 7384.0),
                                       ("03:04", 184.0), ("59", 59.0), ("UNLIMITED", None),
                                       ("INVALID", None), ("", None)])
def test_slurm_durations(text, secs):
    from elicit.slurm import slurm_seconds

    assert slurm_seconds(text) == secs


def test_length_policy_is_reported_never_silent(demo, reference, tmp_path):
    """data.on_too_long=drop at a max_seq_len under the longest example: counted in
    <out>/data.json and in the log, and the dropped rows are named."""
    full = json.loads((reference["out"] / "data.json").read_text())["train"]
    assert full["too_long"] == 0 and full["kept"] == full["n_rows"] == 16
    cut = int(full["tokens"]["mean"])  # some examples are longer, some shorter
    out = tmp_path / "run"
    proc = subprocess.run(train_cmd(demo, out, ["--max-steps", "2", "--max-seq-len", str(cut),
                                           "--on-too-long", "drop", "--progress", "false"]),
                          env=train_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "data.json").read_text())["train"]
    assert 0 < rep["dropped"] == rep["too_long"] == len(rep["too_long_ids"]) < 16
    assert rep["kept"] == 16 - rep["dropped"] and rep["truncated"] == 0
    assert f"train: {rep['too_long']} sequences over max_seq_len={cut}" in proc.stdout


@pytest.mark.slurm
def test_saves_resume_state_before_the_slurm_time_limit(slurm_cluster, demo, reference, tmp_path):
    """In a real SLURM job with a 3-minute limit and stop_margin_min 2.98 (stop ~1 s in, i.e.
    at the first step boundary), train.py saves the resume state and exits 143; the rerun
    finishes exactly like the uninterrupted run. (Slurm 22.05 here: the end time comes from
    squeue, not the environment.)"""

    out, log = tmp_path / "run", tmp_path / "job.log"
    cmd = shlex.join(train_cmd(demo, out, ["--stop-margin-min", "2.98", "--progress", "false"]))
    job = subprocess.run(["sbatch", "--parsable", "--partition", "gpu-small", "--time", "3",
                          "-D", str(tmp_path), "-o", str(log), "--wrap", cmd],
                         env=train_env(), capture_output=True, text=True, check=True).stdout.strip()
    state = wait_job(job, timeout=120)
    text = log.read_text()
    assert state == "FAILED", text
    assert re.search(r"SLURM job ends in (3\.0|2\.9) min: saving a resume state 2\.98 min", text), text
    assert "time limit is within stop_margin_min" in text and "saved resume state at step" in text
    assert (out / "work" / "resume" / "state.pt").exists()
    proc = subprocess.run(train_cmd(demo, out), env=train_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "resumed at step" in proc.stdout, proc.stderr
    assert_same_metrics(jsonl_rows(out / "metrics.jsonl"), reference["metrics"], tol=1e-5)


def test_ranks_from_slurm_environment():
    from elicit.slurm import ranks_from_slurm

    env = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123457",
           "SLURM_STEP_NODELIST": "gpu[07-08]"}
    assert ranks_from_slurm(env) == {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1",
                                     "MASTER_ADDR": "gpu07", "MASTER_PORT": str(20000 + 123457 % 20000)}
    assert ranks_from_slurm({**env, "RANK": "0"}) == {}  # torchrun's variables win
    assert ranks_from_slurm({**env, "SLURM_NTASKS": "1"}) == {}  # the plain `srun -n1` wrapper


@pytest.mark.slurm
def test_srun_tasks_match_one_process(slurm_cluster, demo, reference, tmp_path):
    """The multi-node launch path on the real SLURM: one srun task per rank (2 here, gloo),
    started from a job whose environment was stripped of SLURM_* the way snakemake's jobstep
    plugin strips it; same losses as one process."""
    from elicit.slurm import srun_tasks

    out, log = tmp_path / "run", tmp_path / "job.log"
    script = tmp_path / "job.sh"
    launcher = srun_tasks(nodes=1, tasks_per_node=2, cpus_per_task=1).replace("python", sys.executable)
    script.write_text("#!/bin/bash\n"
                      "for v in $(compgen -e | grep '^SLURM_' | grep -v '^SLURM_JOB_ID$'); do unset $v; done\n"
                      + shlex.join(train_cmd(demo, out, ["--progress", "false"], launcher=launcher.split())) + "\n")
    job = subprocess.run(["sbatch", "--parsable", "--partition", "gpu-small", "--ntasks-per-node", "2",
                          "--cpus-per-task", "1", "-D", str(tmp_path), "-o", str(log), str(script)],
                         env=train_env(), capture_output=True, text=True, check=True).stdout.strip()
    assert wait_job(job, timeout=240) == "COMPLETED", log.read_text()
    assert "world_size 2, grad_accum 2" in log.read_text()
    rows = jsonl_rows(out / "metrics.jsonl")
    assert_same_metrics(rows[:3], reference["metrics"][:3], tol=1e-5)
    assert_same_metrics(rows, reference["metrics"], tol=2e-3)


def test_a_chat_template_is_keyed_by_its_content(demo, tmp_path):
    """--chat-template (models.<size>.chat_template) enters the finished-work key by the file's bytes;
    unset ('') the key is what it was before the flag existed (the paper's finished runs stay found)."""
    import train
    from elicit.flags import dataclass_parser

    def parts(*extra):
        argv = [str(a) for a in train_cmd(demo, tmp_path / "run", extra)[2:]]
        return train.fingerprint_parts(train.TrainConfig(**vars(dataclass_parser(train.TrainConfig).parse_args(argv))))

    plain = parts()
    assert "chat_template" not in plain
    f = tmp_path / "t.jinja"
    f.write_text("{{ messages }}")
    one = parts("--chat-template", f)
    f.write_text("{{ messages }} ")
    two = parts("--chat-template", f)
    assert one["settings"] == two["settings"] == plain["settings"] and one["chat_template"] != two["chat_template"]
