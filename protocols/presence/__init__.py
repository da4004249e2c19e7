"""Presence: small signed announcements over gossip (who is up, how to reach it)."""
