"""Benchmarks, run as modules from the repository root: `python -m bench.send` (or
`make bench-send`), `bench.usage`, `bench.fanout`, `bench.load`; docs/benchmarks.md."""
