"""Reporting: the paper's statistics, bootstrap intervals, Table 1, figures, the scaling fit."""
