"""Planning: model architectures, per-GPU memory, DeepSpeed's estimators, GPU-hours."""
