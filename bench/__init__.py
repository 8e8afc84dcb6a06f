"""Benchmarks: `python bench/send.py` (or `make bench-send`); see docs/benchmarks.md."""
