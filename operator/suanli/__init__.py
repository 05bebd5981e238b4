"""Suanli (算力): place accelerator jobs across compute centers by accelerator fit, data
locality and energy, and explain every decision.

Layers (checked by import-linter, see pyproject.toml):
  catalog, api, settings        pure data and validation
  scoring, ledger               the pure core: no I/O, no clock, no environment
  placement                     queue order, gang admission, deferral; pure, uses scoring/ledger
  kube, handlers, sim, cli      the bodies that drive the core (API server, virtual clock, shell)
"""

__version__ = "0.1.0"
