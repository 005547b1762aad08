# Finetuning: full-parameter per (size, subset), rank-1 LoRA per size on every row.
# Resume state lives in results/train/{size}/{trained}/work/, outside the declared
# outputs, so a rerun after a kill continues where the killed job stopped.


def train_args(wc):
    t, lora = config["train"], config["lora"]
    args = dict(
        lr=t["lr"], weight_decay=t["weight_decay"], adam_beta1=t.get("adam_beta1", 0.9),
        adam_beta2=t.get("adam_beta2", 0.95), warmup_steps=t.get("warmup_steps", 0),
        global_batch=t["global_batch"], max_steps=t["max_steps"], eval_every=t["eval_every"],
        tolerance=t["tolerance"], patience=t["patience"], seed=t["seed"],
        gradient_checkpointing=t.get("gradient_checkpointing", False),
        max_seq_len=config["data"]["max_seq_len"], format=config["data"]["format"],
        trust_remote_code=MODELS[wc.size].get("trust_remote_code", False),
    )
    if wc.trained == "lora":
        args.update(mode="lora", subset="all", lr=lora["lr"], lora_rank=lora["rank"],
                    lora_alpha=lora["alpha"], lora_targets=",".join(lora["targets"]))
    else:
        args.update(mode="full", subset=wc.trained.removeprefix("full-"))
    return args


def train_cli(wc):
    return " ".join(f"--{k} {v}" for k, v in sorted(train_args(wc).items()))


rule train:
    input:
        table="results/data/s1k.parquet",
        manifest="results/data/manifest.json",
        model=lambda wc: model_input(wc.size, "base"),
    output:
        metrics="results/train/{size}/{trained}/metrics.jsonl",
        checkpoints=directory("results/train/{size}/{trained}/checkpoints"),
    params:
        settings=train_args,
        cli=train_cli,
        launcher=launcher,
        model=lambda wc: model_source(wc.size, "base"),
        out=lambda wc: f"results/train/{wc.size}/{wc.trained}",
    threads: job_threads("train")
    resources:
        **gpu_resources("train"),
    log:
        "results/logs/train/{size}/{trained}.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "echo SLURM_JOB_PARTITION=${{SLURM_JOB_PARTITION:-none}} > {log}; "
        "OMP_NUM_THREADS={threads} HF_HUB_OFFLINE=1 {params.launcher} {SCRIPTS}/train.py --model {params.model} "
        "--table {input.table} --manifest {input.manifest} --out {params.out} {params.cli} >> {log} 2>&1"
