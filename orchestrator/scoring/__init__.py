"""Detectors over the state diff and transcript, and the episode's verdict and score."""
