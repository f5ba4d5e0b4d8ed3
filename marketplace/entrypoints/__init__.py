"""The faces of the marketplace: the `nvf` CLI (and later the HTTP API and dashboard)."""
