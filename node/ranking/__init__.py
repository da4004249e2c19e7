"""The ranking service: catalog, click log and G-Rank, with the bounds on what strangers may store."""
