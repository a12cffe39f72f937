"""Checks for the lesson on circuits (filled in by that lesson)."""

__all__: list[str] = []
