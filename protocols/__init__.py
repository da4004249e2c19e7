"""Bytes on the wire: the Network seam, signed envelopes, the protocols' messages and state
machines, and the libp2p transport.

Protocol logic (envelopes, Cyclon, blobs, the Flower grid) does no I/O of its own: it talks
to a ``Network``. Only ``libp2p_network`` and ``libp2p_guards`` touch sockets. Nothing here
knows about learning; ``node/`` composes the two.
"""
