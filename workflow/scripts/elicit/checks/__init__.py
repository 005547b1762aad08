"""The top layer: plan-time checks over every stage's rules (ARCHITECTURE.md, tests/test_layers.py).

  config      the config and site settings against workflow/schemas/, then the cross-field rules
  integrity   every result file against its record (damaged, partial or foreign files), before a job starts
"""
