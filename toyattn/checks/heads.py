"""Checks for the lesson on heads (filled in by that lesson)."""

__all__: list[str] = []
