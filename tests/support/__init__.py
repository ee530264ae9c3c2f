"""What the tests and benchmarks share: seed data, stand-ins for outside systems, free ports."""
