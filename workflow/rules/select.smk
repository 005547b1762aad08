# Checkpoint selection: the last checkpoint within train.tolerance nats of the best.


rule select_checkpoint:
    input:
        metrics=grid.train_outputs("{size}", "{trained}")["metrics"],
        checkpoints=grid.train_outputs("{size}", "{trained}")["checkpoints"],
    output:
        selection=grid.selection("{size}", "{trained}"),
        model=directory(grid.model_dir("{size}", "{trained}")),
    log:
        "results/logs/select/{size}/{trained}.log",
    params:
        tolerance=lambda wc: variants.apply(config, variants.split(wc.trained)[1])["train"]["tolerance"],
        train_dir=lambda wc: grid.train_dir(wc.size, wc.trained),
        out=lambda wc: str(Path(grid.model_dir(wc.size, wc.trained)).parent),
    shell:
        "python -m elicit.run select_checkpoint --train-dir {params.train_dir} --out {params.out} "
        "--tolerance {params.tolerance} > {log} 2>&1"
