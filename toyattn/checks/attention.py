"""Checks for the lesson on attention (filled in by that lesson)."""

__all__: list[str] = []
