# Checkpoint selection: the last checkpoint within train.tolerance nats of the best.


rule select_checkpoint:
    input:
        metrics="results/train/{size}/{trained}/metrics.jsonl",
        checkpoints="results/train/{size}/{trained}/checkpoints",
    output:
        selection="results/models/{size}/{trained}/selection.json",
        model=directory("results/models/{size}/{trained}/model"),
    params:
        tolerance=config["train"]["tolerance"],
        train_dir=lambda wc: f"results/train/{wc.size}/{wc.trained}",
        out=lambda wc: f"results/models/{wc.size}/{wc.trained}",
    log:
        "results/logs/select/{size}/{trained}.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "python {SCRIPTS}/select_checkpoint.py --train-dir {params.train_dir} --out {params.out} "
        "--tolerance {params.tolerance} > {log} 2>&1"
