"""Training: the token loss, the engine (plain torch / DDP / DeepSpeed), checkpoints, tracking."""
