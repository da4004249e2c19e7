"""Peer sampling: a bounded partial view of the swarm, refreshed by Cyclon shuffles."""
