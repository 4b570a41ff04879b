"""Benchmarks run on purpose (`make bench`), never by the test suite."""

# Nothing is exported at package level: import the module you need.
__all__: list[str] = []
