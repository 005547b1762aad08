"""The figures of a run, in one registry: name -> its title in results/report.html, its label and
category in `snakemake --report`. The aggregate rule declares results/figures/<name>.png/.pdf of
every name, report.py embeds them in this order, elicit/report/figures.py draws them; each has its
caption in workflow/report/<name>.rst. Light on purpose (no matplotlib): the Snakefile imports it."""
from __future__ import annotations

# name: (title, category, subcategory). The title is the figure's label in `snakemake --report` too
# (one scheme: "Figure N." for the paper's figures, "Figure SN." for the others).
PAPER, BEYOND = "The paper's figures", "Beyond the paper"
FIGURES = {
    "recovered": ("Figure 1. Recovered %", "Figures", PAPER),
    "val_loss_gain": ("Figure 2. Validation loss and gain", "Figures", PAPER),
    "bars": ("Figure 3. Base, skyline, full finetune, LoRA", "Figures", PAPER),
    "absolute": ("Figure 4. Every absolute value", "Figures", PAPER),
    "paper_comparison": ("Figure S1. Ours against the paper", "Comparison with the paper", "Figure"),
    "training_curves": ("Figure S2. Training curves", "Figures", BEYOND),
    "claim": ("Figure S3. The paper's claim: smallest subset with a positive gain", "The paper's claim", "Figure"),
    "scaling_fit": ("Figure S4. Scaling fit (exploratory): Recovered % against log₂(examples)", "Figures", BEYOND),
}
NAMES = list(FIGURES)


def title(name: str) -> str:
    return FIGURES[name][0]


def label(name: str) -> str:
    return FIGURES[name][0]


def category(name: str) -> str:
    return FIGURES[name][1]


def subcategory(name: str) -> str:
    return FIGURES[name][2]
