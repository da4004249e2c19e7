"""Being in the swarm: Cyclon membership, presence on gossip, and ping."""
