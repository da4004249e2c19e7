"""The daemon: composes protocol services on a Network; identity, config, store, CLI."""
