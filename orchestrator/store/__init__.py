"""Persistence: SQLAlchemy models, sessions, and the episode store."""
