"""Data: the s1K-1.1 table, the training text format, the demo's tiny model and data."""
