"""Trace-driven simulator: drives the same placement core with a virtual clock."""
