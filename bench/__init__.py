"""Benchmarks: ``python -m bench`` (``make bench``) prints a report and writes ``bench/results/*.json``."""
