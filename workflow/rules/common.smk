# What the rules call: the validated config and the grid it defines, input functions, resources and
# command-line builders (the plan-time checks and onstart: checks.smk, included next).
import json
import os
import re
import sys
from pathlib import Path

import yaml

# Shell commands start the step programs as `python -m elicit.run <step>` (elicit/run.py): no
# checkout path in a shell command or in params (a rerun trigger: a moved checkout must not
# retrain the grid). SCRIPTS only finds the package when it is not installed.
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
# ... and that `python` (and torchrun) is the interpreter running Snakemake, activated or not
# (`.venv/bin/snakemake status` without `source .venv/bin/activate`): rule shells inherit PATH.
_BIN = os.path.dirname(sys.executable)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ.update(PATH=f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # set, not read: no envvars lint
try:  # the library of the step programs, installed by `make venv` (pip install -e .)
    import elicit  # noqa: F401
except ImportError:  # snakemake from an environment without this project installed
    sys.path.insert(0, str(SCRIPTS))
from elicit import grid, repo_path, slurm, steps  # noqa: E402
from elicit.checks.config import ConfigError, check, load_site, profile_site_file  # noqa: E402
from elicit.slurm import cli  # noqa: E402

# the config the rules read: validated, the schema's defaults filled in (elicit/checks/config.py)
try:
    check(config)
except ConfigError as e:
    raise WorkflowError(str(e))

from elicit.provenance import is_local  # noqa: E402

SIZES = list(config["sizes"])
DATA_TABLE, DATA_META, DATA_MANIFEST = grid.data_table(), grid.data_meta(), grid.data_manifest()
MODELS = config["models"]
SUBSETS = sorted(config["data"]["subsets"], reverse=True)
CONFIGS = grid.configurations(SUBSETS)
TRAINED = grid.trained(SUBSETS)
# Variants (config `variants`, elicit/variants.py): extra cells `<configuration>@<variant>`, only
# the jobs a variant changes; the extra training seeds (train.seeds) are variants `tseed<k>`.
from elicit import variants  # noqa: E402

VARIANT_CONFIGS, VARIANT_TRAINED = variants.cells(config), variants.trained_runs(config)
TASKS = list(config["eval"]["tasks"])
SEEDS = list(config["eval"]["seeds"])
# Commands get the config's own, relative eval.include_path (the step programs resolve it against
# the checkout: elicit.repo_path), never an absolute path (a moved checkout reruns nothing).
INCLUDE_ARG = steps.shell(steps.include_args(config))
# The SLURM profile names its site file in default-resources (a command-line --configfile replaces the
# profile's config files but not that): site settings given in the config (e.g. --configfile ...
# site.yaml, the tests' sites) take precedence.
_site_file = profile_site_file(workflow.resource_settings.default_resources)
if _site_file and "site" not in config:
    config["site"] = _site_file
try:
    SITE = load_site(config)  # {} without site settings (the demo, a local dry-run)
except ConfigError as e:
    raise WorkflowError(str(e))


wildcard_constraints:
    size="|".join(re.escape(s) for s in SIZES),
    config=grid.CONFIG_PATTERN,
    trained=grid.TRAINED_PATTERN,
    role="base|skyline",
    task="|".join(re.escape(t) for t in TASKS),
    seed="[0-9]+",


def model_source(size, role):
    return MODELS[size][role]


def model_input(size, role):
    """What a job needs on disk before it may load the base or skyline model."""
    src = model_source(size, role)
    return src if is_local(src) else f"results/hub/models/{size}/{role}.json"


def eval_model_args(wc):
    """--model/--adapter/--revision arguments of eval_cell.py for one cell (elicit/steps.py; a
    variant's cell: the variant's trained model where it retrained it, the default's otherwise)."""
    kind, run = variants.split(wc.config)[0], variants.model_run(config, wc.config)
    return steps.shell(steps.eval_model_args(config, wc.size, kind, run))


def eval_inputs(wc):
    # Every task is loaded once by fetch_tasks on the submit host (the hub datasets land in
    # the cache; the demo's local JSONL tasks load in a second): jobs then run offline.
    inputs, kind = ["results/hub/tasks.json"], variants.split(wc.config)[0]
    if kind in ("base", "skyline"):
        return inputs + [model_input(wc.size, kind)]
    run = variants.model_run(config, wc.config)
    # the published model too (select_checkpoint's other output): a targeted cell whose model was
    # deleted plans its re-publication (the selection alone exists, so it would plan none)
    inputs += [grid.selection(wc.size, run), grid.model_dir(wc.size, run)]
    if kind == "lora":
        inputs.append(model_input(wc.size, "base"))
    return inputs


def canonical(obj) -> str:
    """A params value Snakemake compares as text: JSON with sorted keys, so reordering the keys
    of a config file reruns nothing."""
    return json.dumps(obj, sort_keys=True, default=str)


def demo_model_args(size):
    """make_demo.py model's architecture flags: --arch (a file relative to the repo) or the tiny
    model's dimensions (models.<size>.demo)."""
    d = MODELS[size]["demo"]
    if d.get("arch"):
        return cli({"arch": d["arch"]})
    return cli({"hidden": d["hidden"], "layers": d["layers"], "heads": d["heads"]})


def model_definition(size, role):
    """What a base/skyline model is, as far as the config says: source, revision, demo spec."""
    m = MODELS[size]
    return canonical(
        {
            "source": m[role],
            "revision": m[f"{role}_revision"],
            "demo": m.get("demo"),
            "trust_remote_code": m["trust_remote_code"],
        }
    )


def memory_plan_params(size):
    """A size's parameter count (the scaling fit's x), from the architecture the memory plan reads."""
    from elicit.plan import memory_plan

    try:
        return memory_plan.load_arch(config, size).params()
    except Exception:  # no architecture file: the fit's slope-vs-parameters leaves the size out
        return "nan"


def data_settings():
    """Every config value the data table and the split depend on (a change retrains)."""
    d = config["data"]
    settings = {k: d[k] for k in ("source", "revision", "n_val", "split_seed", "expected_rows")}
    return canonical({**settings, "subsets": sorted(d["subsets"])})  # a set: reordering reruns nothing


def eval_outputs(sizes=None):
    """Every cell's result, size by size (an extra training seed's cells only in train.seed_sizes)."""
    return [
        grid.eval_output(size, cell, task, seed)
        for size in sizes or SIZES
        for cell in CONFIGS + variants.cells(config, size)
        for task in TASKS
        for seed in SEEDS
    ]


def all_targets():
    """What `all` asks for: every file a later job reads, not the tables alone. Snakemake 9 does not
    rebuild a missing intermediate file when the outputs downstream of it are present and newer, so a
    deleted (damaged) cell, table, manifest, published model, selection, training output or figure is
    rebuilt by the next run only as a target itself (issue 19)."""
    return [
        *eval_outputs(),
        DATA_TABLE,
        DATA_MANIFEST,
        "results/table1.csv",
        "results/table1.md",
        "results/figures/recovered.png",
        "results/report.html",
        *[grid.data_lengths(s) for s in SIZES],
        *expand(grid.model_dir("{size}", "{trained}"), size=SIZES, trained=TRAINED),
        *expand(grid.selection("{size}", "{trained}"), size=SIZES, trained=TRAINED),
        *[p for s in SIZES for t in TRAINED for p in grid.train_outputs(s, t).values()],
        *rules.aggregate.output,
    ]


# ---------------------------------------------------------------- resources
# The first line of a GPU job's log: the partition SLURM ran it on (tests/test_slurm_grid.py reads it).
LOG_PARTITION = "echo SLURM_JOB_PARTITION=${{SLURM_JOB_PARTITION:-none}} > {log[0]}; "


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
        return job_spec(wc.size, stage)["nodes"]

    res = dict(
        gpu=lambda wc: gpus(wc) * nodes(wc),  # the plugin submits --gpus=<job total>
        nodes=nodes,
        runtime=lambda wc, attempt: int(job_spec(wc.size, stage)["runtime_h"] * 60 * attempt),
        # grows by site.mem_increase_per_retry x mem_gb with each retry (an OOM-killed job)
        mem_mb=lambda wc, attempt: int(
            job_spec(wc.size, stage)["mem_gb"] * 1024 * (1 + (SITE.get("mem_increase_per_retry") or 0) * (attempt - 1))
        ),
        cpus_per_task=lambda wc: ranks_cpus(job_spec(wc.size, stage)),
        # several nodes: one task per GPU started by the rule's own srun (elicit/slurm.py)
        mpi=lambda wc: "srun" if nodes(wc) > 1 else None,
        tasks_per_node=lambda wc: max(1, gpus(wc)) if nodes(wc) > 1 else None,
    )
    if SITE.get("partitions"):
        res["slurm_partition"] = lambda wc: partition(wc.size)
    if SITE.get("account"):  # none with site.no_account: sbatch gets no -A from the workflow
        res["slurm_account"] = SITE["account"]
    if SITE.get("qos"):
        res["qos"] = SITE["qos"]
    if SITE.get("constraint"):
        res["constraint"] = SITE["constraint"]  # sbatch -C
    if SITE.get("gpu_request") == "gres":  # --gres=gpu:[model:]N, per node
        model = f"{SITE['gpu_model']}:" if SITE.get("gpu_model") else ""
        del res["gpu"]
        res["gres"] = lambda wc: f"gpu:{model}{gpus(wc)}" if gpus(wc) else None
    elif SITE.get("gpu_model"):
        res["gpu_model"] = lambda wc: SITE["gpu_model"] if gpus(wc) else None
    return res


def job_threads(stage):
    return lambda wc: job_spec(wc.size, stage)["cpus"]


def eval_layout(wc):
    """single | dp | tp | split for this size's evaluation jobs (memory_plan.eval_layout: dp when a
    replica fits one GPU, else tp, else split; models.<size>.eval.layout overrides)."""
    from elicit.plan import memory_plan

    return memory_plan.eval_layout(config, wc.size, SITE.get("gpu_mem_gb"))


def eval_launcher(wc):
    """torchrun over the job's GPUs for dp/tp (a process per GPU), python otherwise."""
    gpus = job_spec(wc.size, "eval")["gpus"]
    return f"torchrun --standalone --nproc_per_node {gpus}" if eval_layout(wc) in ("dp", "tp") else "python"


def launcher(wc):
    """python, torchrun over one node's GPUs, or one srun task per GPU on several nodes."""
    spec = job_spec(wc.size, "train")
    return slurm.launcher(spec["gpus"], spec["nodes"], ranks_cpus(spec))


def ranks_cpus(spec):
    """CPUs per SLURM task: the whole `cpus` for a one-task job, split over the GPUs of a
    node when every GPU is its own task (multi-node)."""
    cpus = spec["cpus"]
    return max(1, cpus // max(1, spec["gpus"])) if spec["nodes"] > 1 else cpus


# ---------------------------------------------------------------- data rules
def external_sha256(source):
    """sha256 of a local file of the user's (exists now, not built under results/), else ''."""
    from elicit.provenance import sha256_file

    p = Path(source)
    return sha256_file(p) if p.is_file() and not source.startswith("results/") else ""


# ---------------------------------------------------------------- train rules
def train_cli(wc):
    """Every train.py setting from the config (elicit/steps.py), kebab-case flags, shell-quoted."""
    trained, variant = variants.split(wc.trained)
    return steps.shell(steps.train_args(variants.apply(config, variant), wc.size, trained))


# ---------------------------------------------------------------- eval rules
def eval_job_args(wc, tasks=None, seeds=None):
    """eval_cell.py's settings for one cell (wildcards task, seed) or a job of several (tasks x seeds), from
    the config in one place (elicit/steps.py); a variant's cell (<configuration>@<variant>) takes the
    variant's evaluation settings. Split in two (elicit/backends.py): (the settings that define the
    answers: the rule's params, a rerun trigger; the cells and the settings that only schedule the work:
    a resource, no rerun trigger)."""
    from elicit import backends

    cfg = variants.apply(config, variants.split(wc.config)[1])
    if tasks is None and hasattr(wc, "task"):  # one cell (the evaluate rule)
        tasks, seeds = [wc.task], [wc.seed]
    args = steps.eval_args(cfg, wc.size, tasks, seeds)
    job = (*backends.CELLS, *backends.scheduling(cfg["eval"]["backend"]))
    return {k: v for k, v in args.items() if k not in job}, {k: v for k, v in args.items() if k in job}


def eval_cli(wc):
    """The params: what defines the answers of this size's and configuration's cells, the same text
    for every job of them (no cell list, no batch size where it changes no answer), so regrouping the
    cells (eval.seeds_per_job, the order of eval.seeds) or another batch size reruns nothing."""
    return steps.shell(eval_job_args(wc, [], [])[0])


def eval_cells(wc, tasks=None, seeds=None):
    """A resource: the job's cells (--task/--seed/--task-revision) and its scheduling flags (--batch-size)."""
    return steps.shell(eval_job_args(wc, tasks, seeds)[1])


def eval_revisions(wc):
    """The params' task data: every pinned task revision of the config (its --task-revision flags
    follow the job's cells, a resource), one value whatever the grouping."""
    cfg = variants.apply(config, variants.split(wc.config)[1])
    return canonical({t: r for t, r in (cfg["eval"]["task_revisions"] or {}).items() if r})


def select_setting(key):
    """One select_checkpoint.py setting of a run (elicit/steps.py), a params value of its own: the
    number itself, what Snakemake compares (a changed tolerance reselects, nothing else does)."""
    return lambda wc: steps.select_args(variants.apply(config, variants.split(wc.trained)[1]))[key]


def eval_rule_files(path, job):
    """An evaluation rule's outputs or logs (path: grid.eval_output or grid.eval_log), task-major."""
    if job["tasks"] is None:
        return [path("{size}", "{config}", "{task}", "{seed}")]
    return [path("{size}", "{config}", t, s) for t in job["tasks"] for s in job["seeds"]]


def size_pattern(sizes):
    return "|".join(re.escape(s) for s in sizes) or "(?!)"  # (?!): no size


def group_cells(job):
    """A resource: the cells of an evaluation job (for `evaluate`, its wildcards' cell)."""
    return lambda wildcards: eval_cells(wildcards, job["tasks"], job["seeds"])


# ---------------------------------------------------------------- aggregate rules
from elicit.report.figure_names import (
    NAMES as FIGURES,
    category as figure_category,
    label as figure_label,
    subcategory as figure_subcategory,
)  # noqa: E402

REPORT = "../report"


def figure_output(name):
    return report(
        f"results/figures/{name}.png",
        caption=f"{REPORT}/{name}.rst",
        category=figure_category(name),
        subcategory=figure_subcategory(name),
        labels={"figure": figure_label(name)},
    )


# `snakemake --report`: Snakemake 9 draws a rule once per level of the job DAG, so each evaluation
# rule appeared twice (base/skyline cells sit above the finetunes' cells). Draw each rule once, at
# the deepest level it reaches (every edge into it still comes from above).
if "--report" in sys.argv[1:]:
    import snakemake.report.html_reporter as _html_reporter  # noqa: E402
    import snakemake.report.rulegraph_spec as _rulegraph  # noqa: E402

    def _rulegraph_once(dag):
        levels = [list(level) for level in dag.toposorted()]
        last = {job.rule.name: i for i, level in enumerate(levels) for job in level}
        chosen = {}
        for i, level in enumerate(levels):
            for job in level:
                if last[job.rule.name] == i:
                    chosen.setdefault(job.rule.name, job)
        representatives = {job: chosen[job.rule.name] for level in levels for job in level}
        jobs = sorted(chosen.values(), key=lambda job: (last[job.rule.name], job.rule.name))
        nodes = [{"rule": job.rule.name, "fx": 10, "fy": i * 50} for i, job in enumerate(jobs)]
        idx = {job: i for i, job in enumerate(jobs)}
        edges = sorted(
            {(idx[representatives[v]], idx[representatives[u]]) for u in representatives for v in dag.dependencies[u]}
        )
        links = lambda direct: [
            {"source": a, "target": b, "sourcerule": nodes[a]["rule"], "targetrule": nodes[b]["rule"], "value": 1}
            for a, b in edges
            if (b - a == 1) == direct
        ]
        spec = {"nodes": nodes, "links": links(False), "links_direct": links(True)}
        return spec, 100, max(node["fy"] for node in nodes)

    _rulegraph.rulegraph_spec = _html_reporter.rulegraph_spec = _rulegraph_once
