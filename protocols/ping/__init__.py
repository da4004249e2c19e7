"""Ping: echo a payload to measure reachability, round-trip time and transfer integrity."""
