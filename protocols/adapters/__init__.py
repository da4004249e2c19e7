"""LoRA delta announcements (the deltas themselves move as blobs)."""
