"""Runtime health of a running cascade: what services and workers watch (drift of Layer 1 per domain).

Offline analysis lives in `evaluation/`; runtime code imports this package instead.
"""
