"""toyattn.progress: progress bars are off outside notebooks and can be switched."""

from __future__ import annotations

from toyattn import progress


def test_progress_is_off_outside_notebooks_and_switchable(monkeypatch):
    monkeypatch.delenv("TOYATTN_PROGRESS", raising=False)
    items = [1, 2, 3]
    assert not progress.in_notebook()
    assert progress.progress(items) is items
    bar = progress.progress(items, enabled=True)
    assert bar is not items and list(bar) == items
    monkeypatch.setenv("TOYATTN_PROGRESS", "1")
    assert progress.progress_enabled() is True
    monkeypatch.setenv("TOYATTN_PROGRESS", "off")
    assert progress.progress_enabled() is False
    assert progress.progress_enabled(True) is True
