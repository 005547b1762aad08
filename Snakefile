# Reproduce "Reasoning Elicitation is Scale Dependent" (see README.md).
#   snakemake --profile profiles/local                 # the offline CPU demo (config/demo.yaml)
#   snakemake --profile profiles/slurm -n              # plan the paper grid (config/config.yaml)
# Without --configfile the embedded demo config is used; a --configfile replaces it whole.
from snakemake.utils import min_version

min_version("9.0")


# `snakemake --report report.zip`: this description, then every output marked report(...)
report: "workflow/report/workflow.rst"


# One software environment for every rule: pyproject.toml's pins (`make venv`); with
# `--sdm apptainer` the same pins from the image built from envs/elicit.def (README).
container: f"{workflow.basedir}/envs/elicit.sif"


if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/demo.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/gate.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        # Every cell is a target itself: Snakemake 9 does not rebuild a missing intermediate
        # file when the outputs downstream of it (the tables) are present and newer.
        eval_outputs(),
        # the data too: a deleted (damaged) table or manifest is rebuilt by the next run
        "results/data/s1k.parquet",
        "results/data/manifest.json",
        "results/table1.csv",
        "results/table1.md",
        "results/figures/recovered.png",
        "results/report.html",
        expand("results/data/lengths/{size}.json", size=SIZES),
        # every intermediate a later job reads, for the same reason: a deleted published model,
        # selection, training output, figure or table is rebuilt by the next run (issue 19)
        expand(grid.model_dir("{size}", "{trained}"), size=SIZES, trained=TRAINED),
        expand(grid.selection("{size}", "{trained}"), size=SIZES, trained=TRAINED),
        [p for s in SIZES for t in TRAINED for p in grid.train_outputs(s, t).values()],
        rules.aggregate.output,
