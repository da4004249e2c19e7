"""The simulator: a virtual network and clock on which unmodified nodes run by the hundred."""
