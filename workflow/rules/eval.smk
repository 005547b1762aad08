# Evaluation: one lm-eval run per (size, configuration, task, seed), HF backend,
# sampling settings passed explicitly (never inherited from a checkpoint).


def eval_cli(wc):
    e = config["eval"]
    args = (f"--task {wc.task} --seed {wc.seed} --max-gen-toks {e['max_gen_toks']} "
            f"--temperature {e['temperature']} --top-p {e.get('top_p', 1.0)} --top-k {e.get('top_k', 0)} "
            f"--min-p {e.get('min_p', 0.0)} --repetition-penalty {e.get('repetition_penalty', 1.0)} "
            f"--batch-size {e.get('batch_size', 1)}")
    if INCLUDE_PATH:
        args += f" --include-path {INCLUDE_PATH}"
    if e.get("limit"):
        args += f" --limit {e['limit']}"
    if MODELS[wc.size].get("trust_remote_code"):
        args += " --trust-remote-code"
    return args


rule evaluate:
    input:
        eval_inputs,
    output:
        "results/eval/{size}/{config}/{task}/seed{seed}.json",
    params:
        model=eval_model_args,
        cli=eval_cli,
    threads: job_threads("eval")
    resources:
        **gpu_resources("eval"),
    log:
        "results/logs/eval/{size}/{config}/{task}/seed{seed}.log",
    conda:
        "../../envs/eval.yaml"
    shell:
        "echo SLURM_JOB_PARTITION=${{SLURM_JOB_PARTITION:-none}} > {log}; "
        "OMP_NUM_THREADS={threads} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python {SCRIPTS}/eval_cell.py {params.model} "
        "{params.cli} --out {output} >> {log} 2>&1"
