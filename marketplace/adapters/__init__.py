"""Adapters at the edge: the database, the embedded Redis server."""
