# Config validation, wildcard constraints, input functions and resources.
import os
import re
import sys
from pathlib import Path

import yaml

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))
from config_check import ConfigError, check  # noqa: E402

try:
    check(config)
except ConfigError as e:
    raise WorkflowError(str(e))

SIZES = list(config["sizes"])
MODELS = config["models"]
SUBSETS = sorted(config["data"]["subsets"], reverse=True)
CONFIGS = ["base", "skyline", "lora"] + [f"full-{n}" for n in SUBSETS]
TRAINED = ["lora"] + [f"full-{n}" for n in SUBSETS]
TASKS = list(config["eval"]["tasks"])
SEEDS = list(config["eval"]["seeds"])
# lm-eval task YAMLs of the project (the demo tasks), resolved against the workflow.
INCLUDE_PATH = (str(Path(workflow.basedir) / config["eval"]["include_path"])
                if config["eval"].get("include_path") else "")
SITE = yaml.safe_load(Path(config["site"]).read_text()) if config.get("site") else {}


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
            or source.startswith(("results" + os.sep, "." + os.sep, ".." + os.sep)))


def model_source(size, role):
    return MODELS[size][role]


def model_input(size, role):
    """What a job needs on disk before it may load the base or skyline model."""
    src = model_source(size, role)
    return src if is_local(src) else f"results/hub/models/{size}/{role}.json"


def eval_model_args(wc):
    """--model/--adapter/--revision arguments of evaluate.py for one cell."""
    m = MODELS[wc.size]
    if wc.config in ("base", "skyline"):
        args = f"--model {model_source(wc.size, wc.config)}"
        rev = m.get(f"{wc.config}_revision")
        return args + (f" --revision {rev}" if rev else "")
    if wc.config == "lora":
        return f"--model {model_source(wc.size, 'base')} --adapter results/models/{wc.size}/lora/model"
    return f"--model results/models/{wc.size}/{wc.config}/model"


def eval_inputs(wc):
    # Demo tasks read local JSONL; upstream tasks need their datasets fetched first.
    inputs = [] if config["eval"].get("include_path") else ["results/hub/tasks.json"]
    if wc.config in ("base", "skyline"):
        return inputs + [model_input(wc.size, wc.config)]
    inputs.append(f"results/models/{wc.size}/{wc.config}/selection.json")
    if wc.config == "lora":
        inputs.append(model_input(wc.size, "base"))
    return inputs


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

    res = dict(
        gpu=gpus,
        nodes=lambda wc: job_spec(wc.size, stage).get("nodes", 1),
        runtime=lambda wc, attempt: int(job_spec(wc.size, stage)["runtime_h"] * 60 * attempt),
        mem_mb=lambda wc: int(job_spec(wc.size, stage).get("mem_gb", 16) * 1024),
        cpus_per_task=lambda wc: job_spec(wc.size, stage).get("cpus", 8),
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


def launcher(wc):
    """python, or torchrun over the job's GPUs (one node), or srun + torchrun (several)."""
    spec = job_spec(wc.size, "train")
    gpus, nodes = spec["gpus"], spec.get("nodes", 1)
    if nodes > 1:
        return (f"srun --ntasks-per-node=1 torchrun --nnodes {nodes} --nproc_per_node {gpus} "
                "--rdzv_backend c10d --rdzv_id $SLURM_JOB_ID "
                "--rdzv_endpoint $(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1)"
                ":$((20000 + SLURM_JOB_ID % 20000))")
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus}"
    return "python"
