"""Client agent: the pure data plane core (core.py) and its CLI."""
