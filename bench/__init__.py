"""Benchmarks of pacemaker-cloud: ``python -m bench.run [--quick]``."""
