"""The one place the ``ofa`` package (Once-for-All, MIT) is imported.

``import ofa.utils`` pulls ``ofa.utils.my_dataloader``, which needs ``torch._six`` and
torchvision (gone from current torch, and PyPI's torchvision does not import beside torch
2.13). Nothing we use needs that module, so an empty stand-in goes into ``sys.modules``
first. ``tests/test_ofa.py`` fails loudly if a future ``ofa`` release breaks this.
"""

from __future__ import annotations

import sys
import types


def _stub() -> None:
    name = "ofa.utils.my_dataloader"
    if name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)


_stub()

from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
from ofa.imagenet_classification.elastic_nn.utils import set_running_statistics

__all__ = ["OFAMobileNetV3", "set_running_statistics"]
