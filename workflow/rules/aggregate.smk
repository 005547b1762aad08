# Aggregation: tidy table, Table 1 (mean ± s.e. across seeds; CSV, Markdown, LaTeX), Recovered %,
# comparison with the paper's Table 1, figures (PNG + PDF). Outputs marked report(...) appear in
#   snakemake --report report.html
# with the captions in workflow/report/. `snakemake status` prints what is done/missing/failed.


localrules:
    fetch_data,
    fetch_model,
    fetch_tasks,
    select_checkpoint,
    aggregate,
    status,


import json  # noqa: E402
import shlex  # noqa: E402

FIGURES = ["recovered", "val_loss_gain", "bars", "absolute", "paper_comparison"]
REPORT = "../report"


rule aggregate:
    input:
        evals=eval_outputs(),
        selections=expand("results/models/{size}/{trained}/selection.json", size=SIZES, trained=TRAINED),
        manifest="results/data/manifest.json",
        paper=f"{workflow.basedir}/resources/paper/table1.csv",
    output:
        tidy="results/tidy.parquet",
        summary="results/summary.csv",
        table=report("results/table1.csv", caption=f"{REPORT}/table1.rst", category="Table 1",
                     labels={"table": "Table 1 (CSV)"}),
        markdown="results/table1.md",
        latex=report("results/table1.tex", caption=f"{REPORT}/table1_tex.rst", category="Table 1",
                     labels={"table": "Table 1 (LaTeX)"}),
        recovered="results/recovered.csv",
        comparison=report("results/paper_comparison.csv", caption=f"{REPORT}/paper_comparison_table.rst",
                          category="Comparison with the paper", labels={"table": "per cell"}),
        comparison_md="results/paper_comparison.md",
        gain="results/val_loss_gain.csv",
        figure=report("results/figures/recovered.png", caption=f"{REPORT}/recovered.rst",
                      category="Figures", labels={"figure": "1 Recovered %"}),
        fig_val_loss=report("results/figures/val_loss_gain.png", caption=f"{REPORT}/val_loss_gain.rst",
                            category="Figures", labels={"figure": "2 Validation loss vs gain"}),
        fig_bars=report("results/figures/bars.png", caption=f"{REPORT}/bars.rst",
                        category="Figures", labels={"figure": "3 Base, skyline, finetune, LoRA"}),
        fig_absolute=report("results/figures/absolute.png", caption=f"{REPORT}/absolute.rst",
                            category="Figures", labels={"figure": "4 All absolute values"}),
        fig_paper=report("results/figures/paper_comparison.png", caption=f"{REPORT}/paper_comparison.rst",
                         category="Comparison with the paper", labels={"figure": "ours vs paper"}),
        pdfs=expand("results/figures/{name}.pdf", name=FIGURES),
    params:
        sizes=" ".join(SIZES),
        configs=" ".join(CONFIGS),
        seeds=" ".join(str(s) for s in SEEDS),
        benchmarks=" ".join(f"{k}={','.join(v)}" for k, v in config["benchmarks"].items()),
    log:
        "results/logs/aggregate.log",
    conda:
        "../../envs/aggregate.yaml"
    shell:
        "python {SCRIPTS}/aggregate.py --results results --sizes {params.sizes} --configs {params.configs} "
        "--seeds {params.seeds} --benchmarks {params.benchmarks} --paper {input.paper} > {log} 2>&1"


rule status:
    """Print the grid (this config's sizes × configurations × tasks) with seeds done / missing /
    failed, i.e. what a rerun would still do; runs nothing else and is not part of `all`:
        snakemake status        (add --config 'sizes=[32B]' or --configfile as for a run)"""
    params:
        grid=lambda wc: shlex.quote(json.dumps({"sizes": SIZES, "data": {"subsets": SUBSETS},
                                                "eval": {"tasks": TASKS, "seeds": SEEDS}})),
    log:
        "results/logs/status.log",
    conda:
        "../../envs/aggregate.yaml"
    shell:
        "python {SCRIPTS}/status.py --config-json {params.grid} --results results --no-lock-note 2>&1 | tee {log}"
