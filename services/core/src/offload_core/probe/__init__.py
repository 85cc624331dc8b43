"""Probe input: what the diagnostic job type takes (sleep, progress, fail on demand)."""
