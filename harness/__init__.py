"""The harness: runs the producer and consumer together, as real processes."""
