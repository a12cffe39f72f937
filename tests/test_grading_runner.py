"""Tests of ``toyattn.grading.runner``, the first process in the sandbox: its command line and the limits it
applies. Running it on a notebook is covered by the grading tests (``test_grading_grade.py``)."""

from __future__ import annotations

import pytest

from toyattn.grading import runner
from toyattn.grading.sandbox import Limits

REQUIRED = ["nb.ipynb", "--executed", "out.ipynb", "--record", "run.json", "--timeout", "60", "--cell-timeout", "10"]


def test_command_line_reads_the_notebook_outputs_and_timeouts():
    args = runner.parse_args(REQUIRED)
    assert (args.notebook, args.executed, args.record) == ("nb.ipynb", "out.ipynb", "run.json")
    assert (args.timeout, args.cell_timeout) == (60.0, 10.0)
    assert args.kernel is None and args.drop_to is None and not args.no_process_limit


@pytest.mark.parametrize("missing", ["--executed", "--record", "--timeout", "--cell-timeout"])
def test_command_line_without_a_required_option_is_refused(missing, capsys):
    i = REQUIRED.index(missing)
    with pytest.raises(SystemExit):
        runner.parse_args(REQUIRED[:i] + REQUIRED[i + 2:])
    assert missing in capsys.readouterr().err


def test_empty_limits_mean_no_limit_and_numbers_are_bytes_or_seconds():
    args = runner.parse_args([*REQUIRED, "--memory-bytes", "1048576", "--cpu-seconds", "30"])
    assert runner._limits(args) == Limits(memory_bytes=1048576, processes=None, file_bytes=None, cpu_seconds=30,
                                          scratch_bytes=None)
