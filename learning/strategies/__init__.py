"""Flower strategies of our own, one per module (Flower's layout): FED-PUB and OFA weight sharing."""

from .fedpub_strategy import FedPub
from .weight_sharing_strategy import WeightSharing

__all__ = ["FedPub", "WeightSharing"]
