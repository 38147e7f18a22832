"""Benchmark suite of ebpfvm (pytest-benchmark); see conftest.py."""
