"""Benchmarks whose tables the docs quote: ``python -m benchmarks`` runs them all.

Each module here exposes ``main() -> None`` and runs alone as ``python -m benchmarks.<topic>``. A module
whose optional dependencies are not installed, or whose service is unreachable, is skipped with a note:
it raises `BenchmarkSkippedError` (or an ImportError or OSError escapes it).
"""


class BenchmarkSkippedError(Exception):
    """Raised by a benchmark that cannot run here (a service is missing); the message says why."""
