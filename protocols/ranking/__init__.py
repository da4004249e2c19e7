"""Click-log gossip for G-Rank: rows signed by the node that clicked, pulled between peers."""
