# Config validation, wildcard constraints, input functions and resources.
import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml

# Shell commands use SCRIPTS and STOP_MARGIN_MIN directly, not via params (snakemake --lint
# objects): params are a rerun trigger, and an absolute checkout path or a job-control
# margin must not make a moved checkout retrain the grid.
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))
from config_check import ConfigError, check, load_site  # noqa: E402
import launch  # noqa: E402
from shellargs import cli  # noqa: E402

try:
    check(config)
except ConfigError as e:
    raise WorkflowError(str(e))

from provenance import unpinned  # noqa: E402

if workflow.is_main_process:  # hub ids whose revision floats: one line each, with the pin to paste
    for _line in unpinned(config, Path("results")):
        logger.warning(_line)

SIZES = list(config["sizes"])
DATA_TABLE, DATA_MANIFEST = "results/data/s1k.parquet", "results/data/manifest.json"
MODELS = config["models"]
SUBSETS = sorted(config["data"]["subsets"], reverse=True)
CONFIGS = ["base", "skyline", "lora"] + [f"full-{n}" for n in SUBSETS]
TRAINED = ["lora"] + [f"full-{n}" for n in SUBSETS]
TASKS = list(config["eval"]["tasks"])
SEEDS = list(config["eval"]["seeds"])
# lm-eval task YAMLs of the project (the demo tasks), resolved against the workflow.
INCLUDE_PATH = (str(Path(workflow.basedir) / config["eval"]["include_path"])
                if config["eval"].get("include_path") else "")
# Job control, not an experiment setting: passed outside params so changing it reruns nothing.
STOP_MARGIN_MIN = config["train"].get("stop_margin_min", 0)
try:
    SITE = load_site(config)  # {} without site settings (the demo, a local dry-run)
except ConfigError as e:
    raise WorkflowError(str(e))


# Damaged result files stop the plan before any job could delete or build on them
# (workflow/scripts/integrity.py: each message names the file and what to do).
if workflow.is_main_process and not os.environ.get("WORKFLOW_SKIP_INTEGRITY"):  # status.py reports damage itself
    import integrity

    _damaged = integrity.problems(Path("results"))
    if _damaged:
        raise WorkflowError(f"{len(_damaged)} damaged result file(s); nothing was run or deleted:\n"
                            + "\n".join(f"  {d}" for d in _damaged))


onstart:
    # Once the DAG is known, before the first job (workflow/scripts/guards.py): no SLURM submission
    # without site settings, no race with the jobs of an earlier, killed snakemake.
    import guards

    _executor = workflow.executor_plugin.name if workflow.executor_plugin is not None else None
    for _msg in (guards.missing_site(_executor, SITE),
                 guards.orphan_slurm_jobs(os.getcwd()) if _executor == "slurm" else ""):
        if _msg:
            raise WorkflowError(_msg)

# Memory plan: every train/eval job's predicted per-GPU peak against the site's GPU memory
# (workflow/scripts/memory_plan.py; DeepSpeed's estimators cached under .snakemake/).
if SITE.get("gpu_mem_gb"):
    import memory_plan

    try:
        _memory_problems = memory_plan.check(config, SITE["gpu_mem_gb"])
    except memory_plan.PlanError as e:
        raise WorkflowError(f"memory plan: {e}")
    if _memory_problems:
        raise WorkflowError(f"memory plan: jobs that cannot fit {SITE['gpu_mem_gb']} GiB per GPU "
                            "(site setting gpu_mem_gb):\n" + "\n".join(f"  {p}" for p in _memory_problems))
elif workflow.is_main_process and any(MODELS[s][k]["gpus"] for s in SIZES for k in ("train", "eval")):
    print("memory plan not checked: no gpu_mem_gb in the site settings (profiles/slurm/site.yaml)",
          file=sys.stderr)


wildcard_constraints:
    size="|".join(re.escape(s) for s in SIZES),
    config="base|skyline|lora|full-[0-9]+",
    trained="lora|full-[0-9]+",
    role="base|skyline",
    task="|".join(re.escape(t) for t in TASKS),
    seed="[0-9]+",


def is_local(source):
    """A model or data source is a local path if it exists or is spelled like one."""
    return (Path(source).is_absolute() or Path(source).exists()
            or source.partition(os.sep)[0] in ("results", ".", ".."))


def model_source(size, role):
    return MODELS[size][role]


def model_input(size, role):
    """What a job needs on disk before it may load the base or skyline model."""
    src = model_source(size, role)
    return src if is_local(src) else f"results/hub/models/{size}/{role}.json"


def eval_model_args(wc):
    """--model/--adapter/--revision arguments of eval_cell.py for one cell."""
    m = MODELS[wc.size]
    if wc.config in ("base", "skyline"):
        return cli({"model": model_source(wc.size, wc.config), "revision": m.get(f"{wc.config}_revision")})
    if wc.config == "lora":
        return cli({"model": model_source(wc.size, "base"), "revision": m.get("base_revision"),
                    "adapter": f"results/models/{wc.size}/lora/model"})
    return cli({"model": f"results/models/{wc.size}/{wc.config}/model"})


def eval_inputs(wc):
    # Every task is loaded once by fetch_tasks on the submit host (the hub datasets land in
    # the cache; the demo's local JSONL tasks load in a second): jobs then run offline.
    inputs = ["results/hub/tasks.json"]
    if wc.config in ("base", "skyline"):
        return inputs + [model_input(wc.size, wc.config)]
    inputs.append(f"results/models/{wc.size}/{wc.config}/selection.json")
    if wc.config == "lora":
        inputs.append(model_input(wc.size, "base"))
    return inputs


def canonical(obj) -> str:
    """A params value Snakemake compares as text: JSON with sorted keys, so reordering the keys
    of a config file reruns nothing."""
    return json.dumps(obj, sort_keys=True, default=str)


def model_definition(size, role):
    """What a base/skyline model is, as far as the config says: source, revision, demo spec."""
    m = MODELS[size]
    return canonical({"source": m[role], "revision": m.get(f"{role}_revision"), "demo": m.get("demo"),
                      "trust_remote_code": m.get("trust_remote_code", False)})


def data_settings():
    """Every config value the data table and the split depend on (a change retrains)."""
    d = config["data"]
    return canonical({k: d.get(k) for k in ("source", "revision", "n_val", "subsets", "split_seed",
                                            "expected_rows")})


def eval_outputs(sizes=None):
    return expand("results/eval/{size}/{config}/{task}/seed{seed}.json",
                  size=sizes or SIZES, config=CONFIGS, task=TASKS, seed=SEEDS)


# ---------------------------------------------------------------- resources
def job_spec(size, stage):
    return MODELS[size][stage]


def partition(size):
    parts = SITE.get("partitions", {})
    return parts.get(size, parts.get("default"))


def gpu_resources(stage):
    """Resources of a GPU rule: functions of the wildcards, runtime grows with attempt."""
    def gpus(wc):
        return job_spec(wc.size, stage)["gpus"]

    def nodes(wc):
        return job_spec(wc.size, stage).get("nodes", 1)

    res = dict(
        gpu=lambda wc: gpus(wc) * nodes(wc),  # the plugin submits --gpus=<job total>
        nodes=nodes,
        runtime=lambda wc, attempt: int(job_spec(wc.size, stage)["runtime_h"] * 60 * attempt),
        mem_mb=lambda wc: int(job_spec(wc.size, stage).get("mem_gb", 16) * 1024),
        cpus_per_task=lambda wc: ranks_cpus(job_spec(wc.size, stage)),
        # several nodes: one task per GPU started by the rule's own srun (workflow/scripts/launch.py)
        mpi=lambda wc: "srun" if nodes(wc) > 1 else None,
        tasks_per_node=lambda wc: max(1, gpus(wc)) if nodes(wc) > 1 else None,
    )
    if SITE.get("partitions"):
        res["slurm_partition"] = lambda wc: partition(wc.size)
    if SITE.get("account"):
        res["slurm_account"] = SITE["account"]
    if SITE.get("qos"):
        res["qos"] = SITE["qos"]
    if SITE.get("gpu_model"):
        res["gpu_model"] = lambda wc: SITE["gpu_model"] if gpus(wc) else None
    return res


def job_threads(stage):
    return lambda wc: job_spec(wc.size, stage).get("cpus", 8)


def eval_layout(wc):
    """single | dp | tp | split for this size's evaluation jobs (memory_plan.eval_layout: dp when a
    replica fits one GPU, else tp, else split; models.<size>.eval.layout overrides)."""
    import memory_plan

    return memory_plan.eval_layout(config, wc.size, SITE.get("gpu_mem_gb"))


def eval_launcher(wc):
    """torchrun over the job's GPUs for dp/tp (a process per GPU), python otherwise."""
    gpus = job_spec(wc.size, "eval")["gpus"]
    return f"torchrun --standalone --nproc_per_node {gpus}" if eval_layout(wc) in ("dp", "tp") else "python"


def launcher(wc):
    """python, torchrun over one node's GPUs, or one srun task per GPU on several nodes."""
    spec = job_spec(wc.size, "train")
    return launch.launcher(spec["gpus"], spec.get("nodes", 1), ranks_cpus(spec))


def ranks_cpus(spec):
    """CPUs per SLURM task: the whole `cpus` for a one-task job, split over the GPUs of a
    node when every GPU is its own task (multi-node)."""
    cpus = spec.get("cpus", 8)
    return max(1, cpus // max(1, spec["gpus"])) if spec.get("nodes", 1) > 1 else cpus


# ---------------------------------------------------------------- data rules
def external_sha256(source):
    """sha256 of a local file of the user's (exists now, not built under results/), else ''."""
    from provenance import sha256_file

    p = Path(source)
    return sha256_file(p) if p.is_file() and not source.startswith("results/") else ""


# ---------------------------------------------------------------- train rules
def train_args(wc):
    t, lora = config["train"], config["lora"]
    args = dict(
        lr=t["lr"], weight_decay=t["weight_decay"], adam_beta1=t.get("adam_beta1", 0.9),
        adam_beta2=t.get("adam_beta2", 0.95), warmup_steps=t.get("warmup_steps", 0),
        warmup_ratio=t.get("warmup_ratio", 0.0),
        max_grad_norm=t.get("max_grad_norm", 1.0),
        global_batch=t["global_batch"], max_steps=t["max_steps"], eval_every=t["eval_every"],
        tolerance=t["tolerance"], patience=t["patience"], seed=t["seed"],
        gradient_checkpointing=t.get("gradient_checkpointing", False),
        max_seq_len=config["data"]["max_seq_len"], format=config["data"]["format"],
        on_too_long=config["data"].get("on_too_long", "truncate"),
        trust_remote_code=MODELS[wc.size].get("trust_remote_code", False),
        loss_chunk=t.get("loss_chunk", 512),
        revision=MODELS[wc.size].get("base_revision") or "",
    )
    ds = MODELS[wc.size]["train"].get("deepspeed")
    if ds:  # models.<size>.train.deepspeed: zero2 | zero3 | zero3_offload (null: plain DDP)
        args["deepspeed"] = ds
    if wc.trained == "lora":
        args.update(mode="lora", subset="all", lr=lora["lr"], lora_rank=lora["rank"],
                    lora_alpha=lora["alpha"], lora_targets=",".join(lora["targets"]))
    else:
        args.update(mode="full", subset=wc.trained.removeprefix("full-"))
    return args


def train_cli(wc):
    return " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in sorted(train_args(wc).items()))


# ---------------------------------------------------------------- eval rules
def eval_cli(wc):
    e = config["eval"]
    return cli({
        "task": wc.task, "seed": wc.seed, "max-gen-toks": e["max_gen_toks"], "temperature": e["temperature"],
        "top-p": e.get("top_p", 1.0), "top-k": e.get("top_k", 0), "min-p": e.get("min_p", 0.0),
        "repetition-penalty": e.get("repetition_penalty", 1.0), "batch-size": e.get("batch_size", 1),
        "backend": e.get("backend", "hf-resumable"),
        # lm-eval's max_length = the context we planned with (config_check.py checks
        # max_gen_toks < context at plan time; eval_cell checks the real prompts).
        "max-length": MODELS[wc.size]["context"], "include-path": INCLUDE_PATH or None, "limit": e.get("limit"),
        "task-revision": (e.get("task_revisions") or {}).get(wc.task),
        "trust-remote-code": bool(MODELS[wc.size].get("trust_remote_code"))})
