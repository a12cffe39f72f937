"""Issue 21's attacks on the sandbox of `toyattn grade` (toyattn.grading.sandbox), one test each: none escapes,
exhausts a shared resource or stops the class.

The sandboxed attacks are handed in by one class, graded once (two notebooks at a time, as root
where the tests run as root, as CI does) beside an honest classmate who must still get full marks.
Every attack is bounded (at most 2,000 sleeping processes, 1.2 GB of files, 4.5 GB of memory, a
few seconds each) and everything it made lies under pytest's tmp_path or dies with its sandbox."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from grading_helpers import PS, ROOT, sandbox_or_skip, to_ipynb, variant

from toyattn.cli import main
from toyattn.grading import sandbox

HONEST = "zed"


def cell(text: str, code: str) -> str:
    """``text`` (py:percent) with one more code cell right after the imports (before the exercises)."""
    at = text.index("\n# %%", text.index("from toyattn import checks")) + 1
    return text[:at] + f"# %%\n{code.strip()}\n\n" + text[at:]


# MS_REMOUNT | MS_BIND without MS_RDONLY on every read-only mount; the capabilities left; a new user namespace.
REMOUNT = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for p in [l.split()[4] for l in open("/proc/self/mountinfo") if " ro," in l]:
    r = libc.mount(None, p.encode(), None, 32 | 4096, None)
    print("REMOUNT", p, "WRITABLE" if r == 0 and os.access(p, os.W_OK) else os.strerror(ctypes.get_errno()))
print([line.strip() for line in open("/proc/self/status") if line.startswith("Cap")])
print("USERNS", "CREATED" if libc.unshare(0x10000000) == 0 else os.strerror(ctypes.get_errno()))
"""


# Up to 2,000 sleeping processes (each exec'd into `sleep`, so small), then all of them ended.
STORM = r"""
import os, signal
kids = []
for i in range(2000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        try:
            os.execv("/bin/sleep", ["sleep", "30"])
        finally:
            os._exit(1)
    kids.append(pid)
print("STORM", len(kids))
for pid in kids:
    os.kill(pid, signal.SIGKILL)
for pid in kids:
    os.waitpid(pid, 0)
"""


# A file in /dev, 100 MB into /dev/shm.
DEV = r"""
try:
    open("/dev/planted", "w").write("x"); print("DEV WROTE")
except OSError as err:
    print("DEV refused", err.errno)
written = 0
try:
    with open("/dev/shm/fill", "wb") as f:
        for _ in range(100):
            f.write(b"\1" * 2**20); f.flush(); written += 1
except OSError:
    pass
print("SHM MB", written)
"""


# 100 MB files (each under --max-file-size) into the scratch folder, up to 1.2 GB; removed afterwards.
FILL = r"""
import os
written = 0
try:
    for i in range(12):
        with open(f"fill{i}", "wb") as f:
            for _ in range(100):
                f.write(b"\1" * 2**20); f.flush(); written += 1
except OSError:
    pass
print("FILLED MB", written)
for i in range(12):
    if os.path.exists(f"fill{i}"):
        os.remove(f"fill{i}")
"""


# Three processes of 1.5 GB each (under the 4 GiB per process), held together for a few seconds.
MEMORY = r"""
import glob, subprocess, sys, time
child = "import sys, time; b = b'\\1' * (1536 * 2**20); open(f'held-{sys.argv[1]}', 'w').close(); time.sleep(8)"
kids = [subprocess.Popen([sys.executable, "-c", child, str(i)]) for i in range(3)]
time.sleep(6)
print("HELD", len(glob.glob("held-*")), sorted(k.poll() for k in kids if k.poll() is not None))
for k in kids:
    k.kill(); k.wait()
"""


ATTACKS = {"remounter": REMOUNT, "storm": STORM, "dev": DEV, "filler": FILL, "memory": MEMORY}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    sandbox_or_skip()
    base = tmp_path_factory.mktemp("hardening")
    subs, out = base / "submissions", base / "grading"
    for student, code in ATTACKS.items():
        (subs / student).mkdir(parents=True)
        (subs / student / f"{PS}.ipynb").write_text(to_ipynb(cell(variant({0, 1}), code)), encoding="utf-8")
    (subs / HONEST).mkdir()
    (subs / HONEST / f"{PS}.ipynb").write_text(to_ipynb(variant({0, 1})), encoding="utf-8")
    rc = main(["grade", str(subs), "--out", str(out), "--jobs", "2", "--timeout", "150", "--cell-timeout", "60",
               "--max-processes", "128", "--root", str(ROOT), "--problem-set", PS])
    with open(out / "notebooks.csv", encoding="utf-8") as f:
        notebooks = {r["student"]: r for r in csv.DictReader(f)}
    return {"rc": rc, "out": out, "notebooks": notebooks, "summary": (out / "summary.md").read_text(encoding="utf-8")}


def printed(graded, student: str) -> str:
    nb = json.loads((graded["out"] / "executed" / student / f"{PS}.ipynb").read_text(encoding="utf-8"))
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])


def test_the_honest_classmate_gets_full_marks(graded):
    assert graded["rc"] == 0
    assert graded["notebooks"][HONEST]["passed"] == "2" and graded["notebooks"][HONEST]["outcome"] == "ok"


def test_remounting_finds_nothing_writable_and_no_capability_is_left(graded):
    text = printed(graded, "remounter")
    assert text.count("REMOUNT ") >= 3 and "WRITABLE" not in text, text[:3000]
    assert "'CapEff:\\t0000000000000000'" in text and "'CapBnd:\\t0000000000000000'" in text, text[-2000:]
    assert "USERNS CREATED" not in text and "USERNS " in text


def _noted(word: str) -> bool:
    """This machine cannot give the limit ``word`` names (the summary says so): the test of it is skipped."""
    notes = [*getattr(sandbox, "confinement_notes", tuple)(), sandbox.process_limit_note() or ""]
    return any(word in note for note in notes)


def test_a_process_storm_is_capped_at_max_processes(graded):
    if _noted("the process limit is not enforced") and _noted("no cgroup"):
        pytest.skip("neither the process limit nor a cgroup holds for this root grader (the summary says so)")
    text = printed(graded, "storm")
    assert "STORM " in text, f"the storm's cell never finished: {graded['notebooks']['storm']['problems'][:300]}"
    count = int(text.split("STORM ")[1].split()[0])
    assert count < 128, f"{count} processes started under --max-processes 128 (root: {os.geteuid() == 0})"


def test_dev_is_read_only_and_dev_shm_small(graded):
    text = printed(graded, "dev")
    assert "DEV refused" in text and "DEV WROTE" not in text
    assert int(text.split("SHM MB ")[1].split()[0]) <= 64


def test_the_scratch_folder_has_a_total_size(graded):
    if _noted("scratch folder's total size is not capped"):
        assert "scratch folder's total size is not capped" in graded["summary"]
        pytest.skip("only a root grader that may mount caps the scratch folder (the summary says so)")
    text = printed(graded, "filler")
    filled = int(text.split("FILLED MB ")[1].split()[0])
    assert filled <= 512, f"{filled} MB written into the scratch folder under --scratch-size 512"


def test_memory_is_limited_for_the_sandbox_as_a_whole(graded):
    if _noted("no cgroup"):
        assert "no cgroup could be created here" in graded["summary"]  # said where the instructor reads
        pytest.skip("no cgroup can be created here: memory is limited per process only (the summary says so)")
    text = printed(graded, "memory")
    held = text.split("HELD ")[1].split()[0] if "HELD " in text else "0"
    assert int(held) < 3, f"{held} processes of 1.5 GB held at once under --memory 4"


def test_grading_works_with_the_venv_reached_through_a_link(tmp_path):
    sandbox_or_skip()
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a virtual environment")
    link = tmp_path / "course" / ".venv"
    link.parent.mkdir()
    link.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    subs = tmp_path / "subs"
    (subs / "ann").mkdir(parents=True)
    (subs / "ann" / f"{PS}.ipynb").write_text(to_ipynb(variant({0, 1})), encoding="utf-8")
    code = "import sys; from toyattn.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([str(link / "bin" / "python"), "-c", code, "grade", str(subs), "--out", str(tmp_path / "out"),
                           "--root", str(ROOT), "--jobs", "1", "--no-executed", "--timeout", "120", "--problem-set", PS],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "out" / "notebooks.csv", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["passed"] == "2", row
