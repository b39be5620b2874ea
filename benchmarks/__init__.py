"""Load tests of the bookstore API: ``python -m benchmarks`` (see benchmarks/README.md)."""
