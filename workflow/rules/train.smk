# Finetuning: full-parameter per (size, subset), rank-1 LoRA per size on every row.
# Resume state lives in results/train/{size}/{trained}/work/, outside the declared
# outputs, so a rerun after a kill continues where the killed job stopped.
#
# Preemption: deliberately NO `slurm_extra: --signal=...`. Under snakemake's SLURM plugin
# the job is sbatch -> snakemake (batch shell) -> `srun -n1 ... snakemake` (jobstep
# plugin) -> bash -> python/torchrun train.py. `--signal=B:USR1@T` reaches only the
# batch shell (the outer snakemake, which dies of it; the signal is never forwarded), and
# `--signal=USR1@T` reaches every process of the step, including the inner snakemake and
# bash, whose default action on SIGUSR1 is to terminate - the step then ends and SLURM
# kills train.py before it has saved. What does work: train.py watches the job's end time
# (SLURM_JOB_END_TIME, or squeue's time left on Slurm < 23.02) and saves the resume state
# `train.stop_margin_min` minutes before it, then exits 143; the retry (retries: 2, longer
# runtime) continues from it. A SIGTERM (scancel, preemption; torchrun forwards it) does the
# same at the next step boundary if KillWait allows.


rule train:
    input:
        # A rebuilt (identical) input reruns the job, but train.py then restores the finished run
        # from its content-keyed cache (<out>/.done/) in seconds: nothing is retrained.
        table=DATA_TABLE,
        manifest=DATA_MANIFEST,
        model=lambda wc: model_input(wc.size, "base"),
        chat_template=lambda wc: MODELS[wc.size].get("chat_template") or [],  # models.<size>.chat_template: its edits rerun
        gate=gate_input("train"),  # the larger sizes wait for the smallest's pilot (gate.smk)
    output:
        metrics=grid.train_outputs("{size}", "{trained}")["metrics"],
        checkpoints=directory(grid.train_outputs("{size}", "{trained}")["checkpoints"]),
    log:
        "results/logs/train/{size}/{trained}.log",
    threads: job_threads("train")
    resources:
        **gpu_resources("train"),
        # job control, not an experiment setting: a resource, so changing it reruns nothing
        stop_margin_min=config["train"]["stop_margin_min"],
        # observability (TensorBoard event files under the run's folder): reruns nothing either
        tracking=config["train"]["tracking"],
    params:
        cli=train_cli,
        launcher=launcher,
        model=lambda wc: model_source(wc.size, "base"),
        data=data_settings(),
        definition=lambda wc: model_definition(wc.size, "base"),
        out=lambda wc: grid.train_dir(wc.size, wc.trained),
    shell:
        LOG_PARTITION + "OMP_NUM_THREADS={threads} HF_HUB_OFFLINE=1 {params.launcher} -m elicit.run train "
        "--model {params.model} --table {input.table} --manifest {input.manifest} --out {params.out} {params.cli} "
        "--stop-margin-min {resources.stop_margin_min} --tracking {resources.tracking} >> {log} 2>&1"
