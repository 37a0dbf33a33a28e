"""The harness: runs the producer and consumer together, as real processes."""

__all__: list[str] = []  # import from its modules
