"""Placement: queue order, gang admission, budgets and deferral over the scoring core.

Pure: decisions are computed from a snapshot (fleet, ledgers, queued jobs, now) handed in;
nothing here reads the clock or talks to an API server.
"""
