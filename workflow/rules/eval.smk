# Evaluation: lm-eval per (size, configuration, task, seed) cell, one result file per cell,
# sampling settings passed explicitly (never inherited from a checkpoint).
# A job evaluates one cell (rule `evaluate`) or, with eval.seeds_per_job (elicit/plan/eval_jobs.py),
# several cells together to fill the GPU: one rule per group of tasks x seeds, declaring every
# cell's file as an output (no checkpoints: a dry-run lists every missing cell).
# A killed job resumes: eval_cell.py keeps finished answers in
# results/eval/.../seedN.json.partial.jsonl (deliberately NOT an output, so Snakemake does
# not delete it before the rerun) and generates only the missing ones; a rerun job restores
# its cells already finished from results/eval/.../.done (a seed added later regenerates nothing).


rule evaluate:
    input:
        eval_inputs,
        gate=gate_input("evaluate"),  # the larger sizes wait for the smallest's pilot (gate.smk)
    output:
        grid.eval_output("{size}", "{config}", "{task}", "{seed}"),
    log:
        grid.eval_log("{size}", "{config}", "{task}", "{seed}"),
    wildcard_constraints:
        size=size_pattern(EVAL_SINGLE_SIZES),
    threads: job_threads("eval")
    resources:
        **gpu_resources("eval"),
        # How the job uses its GPUs: not params, so a site change (gpu_mem_gb) reruns nothing;
        # the layout is recorded in every result (dp gives one process's answers).
        eval_layout=eval_layout,
        eval_launcher=eval_launcher,
        # the cell and the settings that only schedule the work (batch size): not params either
        eval_cells=eval_cells,
    params:
        model=eval_model_args,
        definition=lambda wc: model_definition(
            wc.size, "skyline" if variants.split(wc.config)[0] == "skyline" else "base"
        ),
        cli=eval_cli,  # what defines the answers (tests/test_eval_settings.py)
        revisions=eval_revisions,
        include=INCLUDE_ARG,  # relative to the checkout (elicit.repo_path)
    shell:
        "echo SLURM_JOB_PARTITION=${{SLURM_JOB_PARTITION:-none}} > {log}; "
        "OMP_NUM_THREADS={threads} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 {resources.eval_launcher} -m elicit.run eval_cell "
        "{params.model} {resources.eval_cells} {params.cli} {params.include} --layout {resources.eval_layout} "
        "--out {output} >> {log} 2>&1"


for _name, _job in EVAL_GROUP_RULES.items():

    rule:
        name:
            _name
        input:
            eval_inputs,
            gate=gate_input(_name),
        output:
            [grid.eval_output("{size}", "{config}", t, s) for t in _job["tasks"] for s in _job["seeds"]],
        log:
            # one log per cell (status.py reads them): the job's log, copied to each at the end
            [grid.eval_log("{size}", "{config}", t, s) for t in _job["tasks"] for s in _job["seeds"]],
        wildcard_constraints:
            size=size_pattern(_job["sizes"]),
        threads: job_threads("eval")
        resources:
            **gpu_resources("eval"),
            eval_layout=eval_layout,
            eval_launcher=eval_launcher,
            eval_cells=group_cells(_job),  # which cells, and the batch size: no rerun trigger
        params:
            model=eval_model_args,
            definition=lambda wc: model_definition(
                wc.size, "skyline" if variants.split(wc.config)[0] == "skyline" else "base"
            ),
            cli=eval_cli,  # the same for every grouping of the cells: regrouping reruns nothing
            revisions=eval_revisions,
            include=INCLUDE_ARG,  # relative to the checkout (elicit.repo_path)
        shell:
            "echo SLURM_JOB_PARTITION=${{SLURM_JOB_PARTITION:-none}} > {log[0]}; "
            "OMP_NUM_THREADS={threads} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 {resources.eval_launcher} -m elicit.run eval_cell "
            "{params.model} {resources.eval_cells} {params.cli} {params.include} --layout {resources.eval_layout} "
            "--out {output} >> {log[0]} 2>&1; rc=$?; "
            "for l in {log}; do [ $l = {log[0]} ] || cp {log[0]} $l; done; exit $rc"
