"""Runnable examples of cqrskit applications."""
