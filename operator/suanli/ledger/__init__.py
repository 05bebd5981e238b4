"""Ledgers: accelerator capacity per pool (per node) and energy per center budget period.

Pure state with explicit operations (reserve, release, settle); what-if copies are cheap.
No I/O, no clock: period boundaries are computed from a time handed in.
"""
