"""docs/slurm/run_lesson.sbatch under a real SLURM: a student submits lesson 0, and the outputs land where it says.

A student account submits from its own checkout of the course (the course's ``.venv``, as
``docs/cluster.md`` installs it), exactly the command the cluster guide gives. This machine has no
GPU, so the submission adds ``--gres=none`` and ``TOYATTN_DEVICE=cpu``, the two changes
``docs/cluster.md`` gives for a CPU partition. The job's log holds ``toyattn doctor``'s report and the
executed notebook's device cell prints the job's SLURM variables.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys

import nbformat
import pytest
from classroom_parts import ROOT, need_commands, need_root, others_can_enter, scratch_dir, system_accounts
from slurm_parts import slurm_cluster

pytestmark = pytest.mark.classroom
LESSON = "notebooks/00_start_here.ipynb"


def _course_checkout(home, owner):
    """The student's checkout: the course's files and its virtual environment (linked: it is large)."""
    course = home / "toyattn"
    for name in ("notebooks", "docs"):
        shutil.copytree(ROOT / name, course / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for folder, dirs, files in os.walk(course):  # the student's own files; never the linked .venv
        for name in [".", *dirs, *files]:
            os.chown(os.path.join(folder, name), owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    (course / ".venv").symlink_to(ROOT / ".venv")
    os.chown(course / ".venv", owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    return course


def test_run_lesson_sbatch_runs_lesson_0_under_slurm(artifacts_dir):
    need_root()
    need_commands("slurmctld", "slurmd", "sbatch", "munged", "mungekey",
                  install="`make classroom-deps` (apt-get install slurm-wlm munge)")
    scratch = scratch_dir("slurm")
    try:
        homes = scratch / "home"
        homes.mkdir(mode=0o755)
        student = f"eve{secrets.token_hex(2)}"
        with system_accounts([student], homes) as accounts, others_can_enter(sys.executable, ROOT), \
                slurm_cluster(scratch / "slurm") as slurm:
            course = _course_checkout(homes / student, accounts[student])
            sub = slurm.run("sbatch", "--gres=none", "docs/slurm/run_lesson.sbatch", LESSON, user=student,
                            cwd=course, env={"TOYATTN_DEVICE": "cpu"})
            assert sub.returncode == 0, sub.stderr
            job_id = re.search(r"Submitted batch job (\d+)", sub.stdout).group(1)
            state = slurm.wait_job(job_id, timeout=300)
            log = course / f"toyattn-{job_id}.out"
            assert log.is_file(), f"no {log.name} in the submit folder; slurmd log:\n{slurm.log('slurmd')}"
            text = log.read_text()
            assert state == "COMPLETED", f"job {job_id} ended {state}; its log:\n{text[-3000:]}"
            assert "SLURM_JOB_ID" in text and job_id in text, text[-3000:]  # toyattn doctor in the job's log
            executed = course / "artifacts" / "runs" / f"00_start_here.{job_id}.ipynb"
            assert executed.is_file(), f"no executed notebook at {executed}; log:\n{text[-3000:]}"
            assert executed.stat().st_uid == accounts[student].pw_uid  # written by the student's job
            nb = nbformat.read(executed, as_version=4)
            device_out = "".join(o.get("text", "") for o in nb.cells[3].get("outputs", []))
            assert "format_description(describe())" in nb.cells[3].source
            assert "SLURM_JOB_ID" in device_out and job_id in device_out, device_out
            shutil.copy(log, artifacts_dir / "slurm_job.out")
            errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, errors
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
