"""FastStream apps wiring the domain to Redis Streams."""
