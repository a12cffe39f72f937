"""toyattn.grading.judging: untrusted answers are judged from plain arrays; garbage, forged numbers, links and
answers bombs are a failure or a grader error, never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from check_helpers import good_softmax

from toyattn import grading
from toyattn.checks import answers as answers_mod
from toyattn.checks.core import REGISTRY
from toyattn.grading import judging
from toyattn.grading.judging import judge_exercise


def _bomb(path: Path, elements: int) -> None:
    """An .npz of one float64 array of ``elements`` zeros, written in chunks (small on disk, huge unpacked)."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (elements,)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
            zf.open("c0_0.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, header)
        chunk = bytes(2**24)
        for _ in range(elements * 8 // len(chunk)):
            f.write(chunk)


def test_an_answers_bomb_is_refused_before_it_is_unpacked(tmp_path):
    answers = tmp_path / "answers"
    answers.mkdir()
    _bomb(answers / "check_softmax.npz", 40 * 2**20)  # 320 MB of float64 in ~0.3 MB
    meta = {"check": "check_softmax", "seed": 1, "status": "answered", "message": "",
            "cases": [{"kinds": ["torch.Tensor:torch.float32"], "is_tuple": False}]}
    (answers / "check_softmax.json").write_text(json.dumps(meta))
    code = ("import resource, sys\n"
            "from toyattn.grading.judging import judge_exercise\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "status, message = judge_exercise(sys.argv[1], 'check_softmax', 1)\n"
            "print(status, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", code, str(answers)], capture_output=True, text=True, timeout=120)
    status, grown_mb = done.stdout.rsplit(None, 2)[-2:] if done.stdout.strip() else ("", "0")
    assert done.returncode == 0 and "grader" in done.stdout, (done.stdout, done.stderr[-2000:])
    assert int(grown_mb) < 100, f"reading the answers raised the grader's RSS by {grown_mb} MB"


@pytest.mark.parametrize("text", ['{"check": "check_softmax", "seed": 1' + "1" * 5000 + ', "status": "answered"}',
                                  "[" * 200_000 + "]" * 200_000], ids=["huge-number", "deep-list"])
def test_malformed_answers_json_is_that_exercises_grader_error(tmp_path, text):
    (tmp_path / "check_softmax.json").write_text(text)
    assert judge_exercise(tmp_path, "check_softmax", 1)[0] == "grader error"


def record(tmp_path, monkeypatch, check: str, fn, seed: int) -> Path:
    """What the student's kernel writes for ``fn`` in grading (run here, as the kernel would)."""
    folder = tmp_path / "answers"
    monkeypatch.setenv(answers_mod.ANSWERS_DIR_ENV, str(folder))
    monkeypatch.setenv(answers_mod.SEED_ENV, str(seed))
    try:
        REGISTRY[check](fn)
    except AssertionError:
        pass
    monkeypatch.delenv(answers_mod.ANSWERS_DIR_ENV)
    return folder


def test_right_answers_pass_only_for_their_own_seed(tmp_path, monkeypatch, capsys):
    folder = record(tmp_path, monkeypatch, "check_softmax", good_softmax, seed=1234)
    assert judging.judge_exercise(folder, "check_softmax", 1234) == ("passed", "")
    status, message = judging.judge_exercise(folder, "check_softmax", 99)  # answers computed for other inputs
    assert status == "failed" and "other inputs" in message
    assert judging.judge_exercise(folder, "check_one_hot", 1234) is None  # no answers: the status logic decides
    capsys.readouterr()


@pytest.mark.parametrize(
    ("json_text", "why"),
    [("{{{ not json", "not JSON"),
     ('{"check": "check_softmax", "seed": 1, "status": "passed", "cases": []}', "unknown status"),
     ('{"check": "check_one_hot", "seed": 1, "status": "answered", "cases": []}', "names another check"),
     ('["a", "list"]', "JSON object")],
)
def test_garbage_answers_are_a_grader_error(tmp_path, json_text, why):
    (tmp_path / "check_softmax.json").write_text(json_text)
    status, message = judging.judge_exercise(tmp_path, "check_softmax", 1)
    assert status == grading.GRADER_ERROR and why in message


def test_a_symlinked_answers_folder_or_file_is_a_grader_error(tmp_path, monkeypatch, capsys):
    real = record(tmp_path, monkeypatch, "check_softmax", good_softmax, seed=5)
    linked = tmp_path / "linked"
    linked.symlink_to(real)
    assert judging.judge_exercise(linked, "check_softmax", 5)[0] == grading.GRADER_ERROR
    other = tmp_path / "other"
    other.mkdir()
    (other / "check_softmax.json").symlink_to(real / "check_softmax.json")
    assert judging.judge_exercise(other, "check_softmax", 5)[0] == grading.GRADER_ERROR
    capsys.readouterr()


def test_made_up_numbers_of_the_right_shape_fail(tmp_path):
    seed = 7
    cases = REGISTRY["check_softmax"].cases(seed)
    np.savez(tmp_path / "check_softmax.npz",
             **{f"c{i}_0": np.full(tuple(c.args[0].shape), 0.5, np.float32) for i, c in enumerate(cases)})
    meta = {"check": "check_softmax", "seed": seed, "status": "answered", "message": "",
            "cases": [{"kinds": ["torch.Tensor:torch.float32"], "is_tuple": False} for _ in cases]}
    (tmp_path / "check_softmax.json").write_text(json.dumps(meta))
    assert judging.judge_exercise(tmp_path, "check_softmax", seed)[0] == "failed"


def test_a_check_that_cannot_be_judged_outside_is_a_grader_error(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "check_legacy_thing", lambda fn: None)
    status, message = judging.judge_exercise(tmp_path, "check_legacy_thing", 1)
    assert status == grading.GRADER_ERROR and "not gradable" in message
