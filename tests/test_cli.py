"""The `toyattn` command: doctor's exit codes and messages, build --check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toyattn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TOYATTN_DEVICE"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "toyattn.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_doctor_succeeds_on_this_machine():
    res = run_cli("doctor")
    assert res.returncode == 0, res.stderr
    assert "torch" in res.stdout and "device" in res.stdout and "CUDA_VISIBLE_DEVICES" in res.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_doctor_fails_cleanly_when_cuda_is_asked_for_but_missing():
    res = run_cli("doctor", env_extra={"TOYATTN_DEVICE": "cuda"})
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "no CUDA GPU" in res.stderr
    # the report is still printed, so the user sees what *is* there
    assert "torch_cuda_build" in res.stdout


def test_doctor_rejects_a_bad_device_name_listing_valid_ones():
    res = run_cli("doctor", "--device", "gpu")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "Valid values: auto, cpu, cuda, cuda:N, mps" in res.stderr


def test_doctor_json(capsys):
    assert main(["doctor", "--json", "--device", "cpu"]) == 0
    assert '"device": "cpu"' in capsys.readouterr().out


def test_build_check_passes_on_the_repo_and_fails_on_a_stale_copy(tmp_path, capsys):
    assert main(["build", "--check", "--root", str(ROOT)]) == 0
    for name in ("solutions", "exercises", "notebooks"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "pyproject.toml").write_text("")
    sol = tmp_path / "solutions" / "00_warmup.py"
    sol.write_text(sol.read_text() + "\n# %%\nprint('a new cell')\n")
    capsys.readouterr()
    assert main(["build", "--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "exercises/00_warmup.py: is stale" in out
    assert "solutions/00_warmup.ipynb: has drifted" in out
    # build repairs both, then the check passes
    assert main(["build", "--root", str(tmp_path)]) == 0
    assert main(["build", "--check", "--root", str(tmp_path)]) == 0
