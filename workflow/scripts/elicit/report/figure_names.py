"""The figures of a run, in one registry: name -> its title in results/report.html, its label and
category in `snakemake --report`. The aggregate rule declares results/figures/<name>.png/.pdf of
every name, report.py embeds them in this order, elicit/report/figures.py draws them; each has its
caption in workflow/report/<name>.rst. Light on purpose (no matplotlib): the Snakefile imports it."""
from __future__ import annotations

FIGURES = {
    "recovered": ("Figure 1. Recovered %", "1 Recovered %", "Figures"),
    "val_loss_gain": ("Figure 2. Validation loss and gain", "2 Validation loss vs gain", "Figures"),
    "bars": ("Figure 3. Base, skyline, full finetune, LoRA", "3 Base, skyline, finetune, LoRA", "Figures"),
    "absolute": ("Figure 4. Every absolute value", "4 All absolute values", "Figures"),
    "paper_comparison": ("Ours against the paper", "ours vs paper", "Comparison with the paper"),
    "training_curves": ("Training curves", "training curves", "Figures"),
    "claim": ("The paper's claim: smallest subset with a positive gain", "claim", "The paper's claim"),
    "scaling_fit": ("Scaling fit (exploratory): Recovered % against log₂(examples)", "scaling fit (exploratory)",
                    "Figures"),
}
NAMES = list(FIGURES)


def title(name: str) -> str:
    return FIGURES[name][0]


def label(name: str) -> str:
    return FIGURES[name][1]


def category(name: str) -> str:
    return FIGURES[name][2]
