"""The domain and its state: case lifecycle, holds and deadlines, persistence, settings."""
