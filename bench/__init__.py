"""Benchmarks run on purpose (`make bench`), never by the test suite."""
