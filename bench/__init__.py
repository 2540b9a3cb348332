"""Benchmarks; run with `python -m bench` or `nox -s bench`."""
