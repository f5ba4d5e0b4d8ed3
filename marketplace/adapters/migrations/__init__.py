"""Alembic's script directory: `env.py` and the revisions in `versions/` (run by `marketplace.adapters.schema`)."""
