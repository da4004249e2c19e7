"""Flower strategies of our own, one per module (Flower's layout): FED-PUB and OFA weight sharing."""

from .fedpub import FedPub
from .weight_sharing import WeightSharing

__all__ = ["FedPub", "WeightSharing"]
