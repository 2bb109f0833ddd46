"""Onboarding: a process manager with a deadline and a compensation (see docs/processes.md)."""
