# Checkpoint selection: the last checkpoint within train.tolerance nats of the best (a local job:
# it reads the metrics and copies the chosen checkpoint's files, no GPU).


localrules:
    select_checkpoint,


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
        # select_checkpoint.py's settings (elicit/steps.py), one params value each (rerun triggers)
        **{k: select_setting(k) for k in steps.select_args(config)},
        train_dir=lambda wc: grid.train_dir(wc.size, wc.trained),
        out=lambda wc: str(Path(grid.model_dir(wc.size, wc.trained)).parent),
    shell:
        "python -m elicit.run select_checkpoint --train-dir {params.train_dir} --out {params.out} "
        + steps.placeholders(steps.select_args(config))
        + " > {log} 2>&1"
