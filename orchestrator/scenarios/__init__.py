"""Scenario, trajectory and persona specs and their loader."""
