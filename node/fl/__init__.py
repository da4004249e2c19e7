"""Federated learning on a node: host Flower runs over the swarm, or join them."""
