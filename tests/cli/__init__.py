"""A package, so that the platform fixture scoped to it ends with it (see conftest.py)."""
