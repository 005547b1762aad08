# Evaluation: one lm-eval run per (size, configuration, task, seed), HF backend,
# sampling settings passed explicitly (never inherited from a checkpoint).
# A killed cell resumes: eval_cell.py keeps finished answers in
# results/eval/.../seedN.json.partial.jsonl (deliberately NOT an output, so Snakemake does
# not delete it before the rerun) and generates only the missing ones.


rule evaluate:
    input:
        eval_inputs,
    output:
        grid.eval_output("{size}", "{config}", "{task}", "{seed}"),
    log:
        "results/logs/eval/{size}/{config}/{task}/seed{seed}.log",
    threads: job_threads("eval")
    resources:
        **gpu_resources("eval"),
        # How the job uses its GPUs: not params, so a site change (gpu_mem_gb) reruns nothing;
        # the layout is recorded in every result (dp gives one process's answers).
        eval_layout=eval_layout,
        eval_launcher=eval_launcher,
    params:
        model=eval_model_args,
        definition=lambda wc: model_definition(wc.size, "base" if wc.config != "skyline" else "skyline"),
        cli=eval_cli,
    shell:
        "echo SLURM_JOB_PARTITION=${{SLURM_JOB_PARTITION:-none}} > {log}; "
        "OMP_NUM_THREADS={threads} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 {resources.eval_launcher} -m elicit.run eval_cell "
        "{params.model} {params.cli} --layout {resources.eval_layout} "
        "--out {output} >> {log} 2>&1"
