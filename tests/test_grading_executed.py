"""toyattn.grading.executed: executed copies keep no student metadata or active HTML."""

from __future__ import annotations

import json


def test_executed_copies_keep_no_student_metadata_or_active_html(tmp_path):
    import nbformat

    from toyattn.grading.executed import _save_executed

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"},
                                            "jupytext": {"formats": "ipynb,solutions//py:percent"}})
    code = nbformat.v4.new_code_cell("x", metadata={"tags": ["raises-exception"], "jupyter": {"source_hidden": True}})
    code.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": "<img src=x onerror=alert(1)>", "application/javascript": "alert(2)", "text/plain": "x"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Hi <script>alert(3)</script>"), code]
    src, dest = tmp_path / "executed.ipynb", tmp_path / "out" / "copy.ipynb"
    nbformat.write(nb, src)
    assert _save_executed(src, dest) is None
    kept = json.loads(dest.read_text(encoding="utf-8"))
    assert set(kept["metadata"]) <= {"kernelspec", "language_info"} and kept["metadata"]["kernelspec"]["name"] == "python3"
    assert all(not c.get("metadata") for c in kept["cells"])
    text = dest.read_text(encoding="utf-8")
    assert "onerror" not in text and "alert(2)" not in text and "<script" not in text
