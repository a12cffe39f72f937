"""The executed copy kept for each notebook (``--out/executed/``): only data, size-capped.

The copy is read back from the sandbox as untrusted text. What is kept: the cells' sources and
outputs, cut to a size for reading. What is dropped: every piece of notebook and cell metadata but
the kernelspec and the language (a student's ``jupytext.formats`` would pair the copy with
``solutions/`` when it is opened through jupytext), outputs that are active content (HTML,
JavaScript, SVG, widgets: only text, PNG/JPEG/GIF images and JSON stay), raw cells' HTML, and HTML
tags in Markdown cells (shown as text), so a copy exported with ``nbconvert --to html`` runs nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from toyattn.grading.discovery import MAX_SUBMISSION_BYTES, read_submission_bytes

MAX_OUTPUT_CHARS = 20_000  # per text output kept in the executed copy
MAX_DATA_CHARS = 2_000_000  # per rich output (an image) kept in the executed copy
#: Output types kept as they are; any other (text/html, application/javascript, image/svg+xml ...) is dropped.
SAFE_MIMES = ("text/plain", "image/png", "image/jpeg", "image/gif", "application/json")
_NB_METADATA = ("kernelspec", "language_info")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def as_data(nb) -> None:
    """Drop what could act when the copy is opened or exported (see the module docstring), in place."""
    nb.metadata = {k: nb.metadata[k] for k in _NB_METADATA if isinstance(nb.metadata.get(k), dict)}
    for cell in nb.cells:
        cell.metadata = {}
        cell.pop("attachments", None)
        if cell.cell_type == "markdown":
            cell.source = _TAG_START.sub("&lt;", cell.source)
        elif cell.cell_type == "raw":
            cell.source = _TAG_START.sub("&lt;", cell.source)
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            out["metadata"] = {}
            data = out.get("data")
            if isinstance(data, dict):
                kept = {m: v for m, v in data.items() if m in SAFE_MIMES}
                if len(kept) < len(data) and "text/plain" not in kept:
                    kept["text/plain"] = "[output removed by the grader: active content]"
                out["data"] = kept


def _cap_outputs(nb) -> None:
    """Cut long texts and drop huge rich outputs: the executed copy is for reading, not for storage."""
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if isinstance(out.get("text"), str) and len(out["text"]) > MAX_OUTPUT_CHARS:
                out["text"] = out["text"][:MAX_OUTPUT_CHARS] + "\n[... cut by the grader]\n"
            if out.get("output_type") == "error":
                out["evalue"] = str(out.get("evalue", ""))[:2000]
                out["traceback"] = [str(t)[:2000] for t in out.get("traceback", [])[:60]]
            data = out.get("data", {})
            for mime in list(data):
                if len(str(data[mime])) > MAX_DATA_CHARS:
                    data[mime] = "[output removed by the grader: too large]" if mime == "text/plain" else ""
                    data.setdefault("text/plain", "[output removed by the grader: too large]")


def _save_executed(src: Path, dest: Path) -> str | None:
    """Copy the executed notebook (untrusted) to ``dest``, size-capped; a problem text if it could not be."""
    import nbformat

    try:
        nb = nbformat.reads(read_submission_bytes(src).decode("utf-8"), as_version=4)
        _cap_outputs(nb)
        as_data(nb)
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest)
    except FileNotFoundError:
        return None  # the run left none; its record says why
    except Exception as err:  # noqa: BLE001 - whatever is in the scratch folder, the class report goes on
        return f"the executed copy was not kept (not a notebook of at most {MAX_SUBMISSION_BYTES >> 20} MB: {type(err).__name__})"
    return None


