"""Benchmark commands (python -m alert_timing_benchmarks.<name>, or alert-timing bench)."""
