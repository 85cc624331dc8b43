"""Helpers shared by several test suites (document generators, text metrics)."""
