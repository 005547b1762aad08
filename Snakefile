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
include: "workflow/rules/checks.smk"
include: "workflow/rules/gate.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        all_targets(),  # every file a later job reads, not the tables alone (common.smk)
