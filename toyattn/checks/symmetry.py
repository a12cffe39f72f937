"""Checks for the lesson on symmetry (filled in by that lesson)."""

__all__: list[str] = []
