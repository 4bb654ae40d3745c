"""Sandbox backends, one module each, found by name (orchestrator/sandbox/provider.py)."""
