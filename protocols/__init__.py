"""Bytes on the wire: the Network seam, signed envelopes and the protocols' state machines.

Nothing here does I/O on its own or knows about learning; `node/` composes it.
"""
