"""LoRA deltas on a node: train, announce, fetch, verify, store and merge."""
