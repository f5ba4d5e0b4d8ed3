"""The `/v1` resources, one module per kind, and the token, health and documentation routes."""
