"""Benchmarks: run each as `python -m perf.<script>` from the repository root (perf/README.md)."""
