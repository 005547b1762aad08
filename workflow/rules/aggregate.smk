# Aggregation: tidy table, Table 1 (mean ± s.e. across seeds), Recovered %, figures.


localrules:
    fetch_data,
    fetch_model,
    fetch_tasks,
    select_checkpoint,
    aggregate,


rule aggregate:
    input:
        evals=eval_outputs(),
        selections=expand("results/models/{size}/{trained}/selection.json", size=SIZES, trained=TRAINED),
        manifest="results/data/manifest.json",
    output:
        tidy="results/tidy.parquet",
        table="results/table1.csv",
        markdown="results/table1.md",
        recovered="results/recovered.csv",
        figure="results/figures/recovered.png",
    params:
        sizes=" ".join(SIZES),
        benchmarks=" ".join(f"{k}={','.join(v)}" for k, v in config["benchmarks"].items()),
    log:
        "results/logs/aggregate.log",
    conda:
        "../../envs/aggregate.yaml"
    shell:
        "python {SCRIPTS}/aggregate.py --results results --sizes {params.sizes} "
        "--benchmarks {params.benchmarks} > {log} 2>&1"
