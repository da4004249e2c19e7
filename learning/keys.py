"""Names of the records and metrics our ClientApps and strategies exchange (one spelling each).

Flower's own: ``ARRAYS``, ``CONFIG`` and ``METRICS`` are the RecordDict keys its Message-API
strategies read and write by default, ``NUM_EXAMPLES`` the metric FedAvg weights by.
"""

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
NUM_EXAMPLES = "num-examples"

EMBEDDING = "embedding"
"""FED-PUB: the ArrayRecord holding a client's functional embedding."""
MASK = "mask"
"""OFA weight sharing: the ArrayRecord of supernet entries a client trained."""
WEIGHT = "weight"
"""SemSpaceFL: the metric the tiers weight by (D x association x energy, or D)."""
