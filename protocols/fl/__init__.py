"""Flower rounds over the swarm: round announcements, task/result transfer, the Grid."""
