# Plan-time checks (before any job: a config, site, image or result that cannot work is refused, naming
# it) and onstart. Included right after common.smk, whose config and grid they read.
from elicit.checks.config import layout_problems  # noqa: E402

# A run that exits deletes its own lock files only, not a live run's (elicit/snakemake_locks.py).
from elicit import snakemake_locks  # noqa: E402

if not snakemake_locks.keep_others():
    logger.warning("snakemake_locks: this Snakemake is not the pinned 9.27.1; its locks are left as they are")

from elicit.provenance import floating_summary, unpinned  # noqa: E402

if workflow.is_main_process:  # hub ids whose revision floats: one line, how many and how to pin them
    _floating = floating_summary(unpinned(config, Path("results")))
    if _floating:
        logger.warning(_floating)

# --sdm apptainer: the image bakes in workflow/ (envs/elicit.def); one built from other code would
# silently run old step programs. Its label holds the code's hash: compare it with the checkout's.
from snakemake.settings.types import DeploymentMethod  # noqa: E402

if workflow.is_main_process and DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method:
    from elicit import code_hash  # noqa: E402

    _image = f"{workflow.basedir}/envs/elicit.sif"
    _stale = code_hash.image_problem(code_hash.image_label(Path(_image)), Path(workflow.basedir), _image)
    if _stale:
        raise WorkflowError(_stale)

# lm-eval task YAMLs of the project (the demo tasks), resolved against the workflow.
INCLUDE_PATH = str(Path(workflow.basedir) / config["eval"]["include_path"]) if config["eval"]["include_path"] else ""
# An unknown task is refused here, naming it, before fetch_tasks could delete results/hub/tasks.json;
# lm-eval is asked only when tasks.json does not list every task yet (elicit/eval/lm_tasks.py).
if workflow.is_main_process and not set(TASKS) <= set(grid.fetched_tasks(Path("results"))):
    from elicit.eval.lm_tasks import unknown_tasks

    _unknown = unknown_tasks(TASKS, INCLUDE_PATH or None)
    if _unknown:
        raise WorkflowError(_unknown)
# The layouts the memory plan picks for the site's GPUs, against what eval.backend runs (elicit/backends.py).
_layouts = layout_problems(config, SITE.get("gpu_mem_gb"))
if _layouts:
    raise WorkflowError("invalid config:\n" + "\n".join(f"  {p}" for p in _layouts))


# Damaged result files stop the plan before any job could delete or build on them
# (elicit/checks/integrity.py: each message names the file and what to do).
if workflow.is_main_process and not os.environ.get("WORKFLOW_SKIP_INTEGRITY"):  # status.py reports damage itself
    from elicit.checks import integrity

    _damaged = integrity.problems(Path("results"))
    if _damaged:
        raise WorkflowError(
            f"{len(_damaged)} damaged result file(s); nothing was run or deleted:\n"
            + "\n".join(f"  {d}" for d in _damaged)
        )
    # a source of the user's that changed is read now, not in the first job (52 jobs planned for nothing)
    _source = integrity.source_problems(config["data"]["source"], config["data"]["expected_rows"])
    if _source:
        raise WorkflowError("\n".join(_source))


onstart:
    # Once the DAG is known, before the first job (elicit/slurm.py): no SLURM submission
    # without site settings, no race with the jobs of an earlier, killed snakemake.
    _executor = workflow.executor_plugin.name if workflow.executor_plugin is not None else None
    for _msg in (
        slurm.missing_site(_executor, SITE),
        slurm.orphan_slurm_jobs(os.getcwd()) if _executor == "slurm" else "",
    ):
        if _msg:
            raise WorkflowError(_msg)


# Memory plan: every train/eval job's predicted per-GPU peak against the site's GPU memory
# (elicit/plan/memory_plan.py; DeepSpeed's estimators cached under .snakemake/).
if SITE.get("gpu_mem_gb"):
    from elicit.plan import memory_plan

    try:
        _memory_problems = memory_plan.check(config, SITE["gpu_mem_gb"])
    except memory_plan.PlanError as e:
        raise WorkflowError(f"memory plan: {e}")
    if _memory_problems:
        raise WorkflowError(
            f"memory plan: jobs that cannot fit {SITE['gpu_mem_gb']} GiB per GPU "
            "(site setting gpu_mem_gb):\n" + "\n".join(f"  {p}" for p in _memory_problems)
        )
elif workflow.is_main_process and any(MODELS[s][k]["gpus"] for s in SIZES for k in ("train", "eval")):
    print("memory plan not checked: no gpu_mem_gb in the site settings (profiles/slurm/site.yaml)", file=sys.stderr)
