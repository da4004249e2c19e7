"""Pure compute (G-Rank, FL strategies, LoRA merges, OFA search); no network, no daemon.

Empty in the skeleton: the learning capabilities land here, behind the ``learn`` extra.
"""
