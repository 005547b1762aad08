# The two set-up commands of the README:
#   make demo   the whole DAG on the embedded CPU demo (config/demo.yaml), offline
#   make test   the pytest suite, with the dev extra (CI runs exactly this through .ci/run, after make lint)
#   make test-fast  the suite without SLURM and slow (whole-DAG) tests: the contributor's loop
#   make lint   snakemake --lint (demo and paper config), snakefmt --check, ruff
VENV   ?= .venv
# EXTRAS=gpu on GPU nodes: liger-kernel for the fused training loss (pyproject extra)
EXTRAS ?=
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast lint venv dryrun clean-demo

venv: $(VENV)/.installed

# torch first, pinned: on a CPU box pip takes the local CPU wheel and the rest of the
# pins then pull no CUDA build. On a GPU cluster see README ("CUDA build").
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e .$(if $(EXTRAS),[$(EXTRAS)])
	touch $@

demo: venv
	snakemake --profile profiles/local
	@echo
	@echo "Report:     results/report.html  (Table 1 with 95 % intervals, Recovered %, figures, plan, provenance)"
	@echo "Table 1:    results/table1.md  (also .csv, .tex)"
	@echo "Recovered:  results/recovered.csv  (with LoRA vs full)"
	@echo "vs paper:   results/paper_comparison.md"
	@echo "Figures:    results/figures/  (recovered, val_loss_gain, bars, absolute, paper_comparison, training_curves, claim, scaling_fit)"
	@echo "Claim:      results/claim.csv  (smallest subset with a positive gain per size; verdict per benchmark)"
	@echo "Hidden:     results/stop_reasons.md, table1_robust.md, scorer_agreement.csv, scaling_fit.csv, variants.csv"
	@echo "Grid:       snakemake status"

test: $(VENV)/.dev-installed
	python -m pytest -q --durations=25  # the slowest tests, in every CI log

# SLURM stays on where it is installed: the session starts the test cluster once, and each snakemake
# call then skips the plugin's 10 s wait for a controller (SLURM_TESTS=off: 5 min instead of 2.7)
test-fast: $(VENV)/.dev-installed
	python -m pytest -q -m "not slow and not slurm"

# the dev extra (pyproject.toml): pytest, hypothesis, snakefmt and ruff, pinned (make test, make lint)
$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install -q -e .[dev]
	touch $@

lint: $(VENV)/.dev-installed
	SLURM_TESTS=off snakemake --lint
	SLURM_TESTS=off snakemake --lint --configfile config/config.yaml
	snakefmt --check .
	ruff check .

dryrun: venv
	snakemake -n --configfile config/config.yaml

clean-demo:
	rm -rf results/demo results/data results/train results/models results/eval results/figures \
	  results/logs results/*.csv results/*.md results/*.parquet
