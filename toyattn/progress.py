"""Progress bars that show in notebooks and stay quiet in tests and batch jobs.

Used by the course's one training loop (:func:`toyattn.training.fit`) and by :func:`toyattn.symmetry.report.score_model`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: Set ``TOYATTN_PROGRESS=0`` to silence bars everywhere, ``=1`` to force them.
PROGRESS_ENV_VAR = "TOYATTN_PROGRESS"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbclient, nbval), False in scripts and pytest."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def progress_enabled(enabled: bool | None = None) -> bool:
    """Resolve a ``progress=`` argument: an explicit bool wins, then ``TOYATTN_PROGRESS``, then
    'only inside a notebook'."""
    if enabled is not None:
        return bool(enabled)
    env = os.environ.get(PROGRESS_ENV_VAR, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return in_notebook()


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str | None = None, enabled: bool | None = None
) -> Iterator[T] | Iterable[T]:
    """Wrap ``iterable`` in tqdm's notebook-aware bar when progress is enabled, else return it unchanged."""
    if not progress_enabled(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)
