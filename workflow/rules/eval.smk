# Evaluation: lm-eval per (size, configuration, task, seed) cell, one result file per cell,
# sampling settings passed explicitly (never inherited from a checkpoint).
# A job evaluates one cell (rule `evaluate`) or, with eval.seeds_per_job (elicit/plan/eval_jobs.py),
# several cells together to fill the GPU: one rule per group of tasks x seeds, declaring every
# cell's file as an output (no checkpoints: a dry-run lists every missing cell).
# A killed job resumes: eval_cell.py keeps finished answers in
# results/eval/.../seedN.json.partial.jsonl (deliberately NOT an output, so Snakemake does
# not delete it before the rerun) and generates only the missing ones; a rerun job restores
# its cells already finished from results/eval/.../.done (a seed added later regenerates nothing).
# One definition for every evaluation rule (EVAL_RULES: `evaluate`, then the group rules): `use rule
# ... as` cannot make them, its `as` name being literal.
from elicit.plan import eval_jobs  # noqa: E402

EVAL_SINGLE_SIZES, EVAL_GROUP_RULES = eval_jobs.plan(config, SITE.get("gpu_mem_gb"))
# every evaluation rule by name: `evaluate` (tasks/seeds None: its cell's wildcards), then the groups'
EVAL_RULES = {"evaluate": {"tasks": None, "seeds": None, "sizes": EVAL_SINGLE_SIZES}, **EVAL_GROUP_RULES}

EVAL_COMMAND = (
    "OMP_NUM_THREADS={threads} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 {resources.eval_launcher} -m elicit.run eval_cell "
    "{params.model} {resources.eval_cells} {params.cli} {params.include} --layout {resources.eval_layout} "
    "--out {output} >> {log[0]} 2>&1"
)
# a group's job writes its first cell's log; each other cell's log is a copy of it
COPY_LOG = "; rc=$?; for l in {log}; do [ $l = {log[0]} ] || cp {log[0]} $l; done; exit $rc"


for _name, _job in EVAL_RULES.items():

    rule:
        name:
            _name
        input:
            eval_inputs,
            gate=gate_input(_name),
        output:
            eval_rule_files(grid.eval_output, _job),
        log:
            # a group: one log per cell (status.py reads them), the job's log copied to each at the end
            eval_rule_files(grid.eval_log, _job),
        wildcard_constraints:
            size=size_pattern(_job["sizes"]),
        threads: job_threads("eval")
        resources:
            **gpu_resources("eval"),
            # How the job uses its GPUs: not params, so a site change (gpu_mem_gb) reruns nothing;
            # the layout is recorded in every result (dp gives one process's answers).
            eval_layout=eval_layout,
            eval_launcher=eval_launcher,
            # the job's cells and the settings that only schedule the work (batch size): not params either
            eval_cells=group_cells(_job),
        params:
            model=eval_model_args,
            definition=lambda wc: model_definition(
                wc.size, "skyline" if variants.split(wc.config)[0] == "skyline" else "base"
            ),
            cli=eval_cli,  # what defines the answers (tests/test_eval_settings.py): regrouping reruns nothing
            revisions=eval_revisions,
            include=INCLUDE_ARG,  # relative to the checkout (elicit.repo_path)
        shell:
            LOG_PARTITION + EVAL_COMMAND + (COPY_LOG if _job["tasks"] is not None else "")
