"""Pure compute: G-Rank, FED-PUB and the other strategies, SemSpaceFL's tiers, LoRA deltas and
merges, OFA subnets and their search. No network, no daemon: ``node/`` feeds it data and
carries its results. Installed with the ``learn`` extra (torch, Flower, peft, PyG).
"""
