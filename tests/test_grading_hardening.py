"""Issue 21's attacks on `toyattn grade`, one test each: none escapes, exhausts a shared resource or stops the class.

The sandboxed attacks are handed in by one class, graded once (two notebooks at a time, as root
where the tests run as root, as CI does) beside an honest classmate who must still get full marks.
Every attack is bounded (at most 2,000 sleeping processes, 1.2 GB of files, 4.5 GB of memory, a
few seconds each) and everything it made lies under pytest's tmp_path or dies with its sandbox.
The other attacks (answers files, names, folders, reports) need no kernel and run in milliseconds.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from grading_helpers import PS, ROOT, sandbox_or_skip, to_ipynb, variant

from toyattn import grading
from toyattn.cli import main
from toyattn.grading import reports, sandbox
from toyattn.grading.judging import judge_exercise

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


# ---------------------------------------------------------------- the grader's own process


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


# ---------------------------------------------------------------- one student's files never stop the class


def _grade_unsandboxed(subs: Path, out: Path, *extra: str) -> int:
    return main(["grade", str(subs), "--out", str(out), "--root", str(ROOT), "--jobs", "1", "--no-sandbox",
                 "--no-executed", *extra])


def test_file_names_that_are_not_utf8_become_that_students_line(tmp_path, capsys):
    subs = tmp_path / "subs"
    (subs / "ann").mkdir(parents=True)
    (subs / "ann" / f"{PS}.ipynb").write_text("not a notebook")  # unreadable: graded without a kernel
    folder = os.path.join(os.fsencode(subs), b"j\xfcrgen")
    os.mkdir(folder)
    with open(os.path.join(folder, b"00_warmup-\xdcbung.ipynb"), "w") as f:
        f.write("{ broken")
    assert _grade_unsandboxed(subs, tmp_path / "out") == 0
    with open(tmp_path / "out" / "grades.csv", encoding="utf-8") as f:
        students = {r["student"] for r in csv.DictReader(f)}
    assert students == {"ann", "j\\xfcrgen"}
    assert "j\\\\xfcrgen" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    capsys.readouterr()


def test_a_deep_folder_is_skipped_and_the_class_graded(tmp_path, capsys):
    subs = tmp_path / "subs"
    (subs / "ann").mkdir(parents=True)
    (subs / "ann" / f"{PS}.ipynb").write_text("not a notebook")
    fd = os.open(subs, os.O_RDONLY)
    os.mkdir("deep", dir_fd=fd)
    for _ in range(1200):  # one level at a time through folder fds: no path grows past PATH_MAX
        nxt = os.open("deep" if _ == 0 else "d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
        os.mkdir("d", dir_fd=fd)
    os.close(fd)
    try:
        assert _grade_unsandboxed(subs, tmp_path / "out") == 0
        assert "ann" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    finally:
        subprocess.run(["rm", "-rf", str(subs / "deep")], check=False)
    capsys.readouterr()


def test_a_parent_folder_swapped_for_a_link_after_discovery_is_not_followed(tmp_path):
    subs = tmp_path / "subs"
    (subs / "eve" / "hw").mkdir(parents=True)
    (subs / "eve" / "hw" / f"{PS}.ipynb").write_text(to_ipynb(variant(set())), encoding="utf-8")
    sets = grading.load_problem_sets(ROOT, [PS])
    [sub], _ = grading.find_submissions(subs, sets)
    stolen = tmp_path / "stolen"
    stolen.mkdir()
    (stolen / f"{PS}.ipynb").write_text(to_ipynb(variant({0, 1})), encoding="utf-8")  # "the solution"
    (subs / "eve" / "hw").rename(tmp_path / "old-hw")
    (subs / "eve" / "hw").symlink_to(stolen)
    result = grading.grade_submission(sub, sets[PS], grading.GradeOptions(sandbox=False, timeout=60))
    assert result.n_passed == 0 and result.outcome == "unreadable", result


def test_reports_carry_no_control_characters(tmp_path):
    ps = grading.load_problem_sets(ROOT, [PS])
    name = "eve\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\x9b31m\x85"
    result = grading.NotebookResult(name, PS, f"/subs/{name}/x.ipynb", "errors", 1.0,
                                    ["error: ValueError\x1b[31m in cell 3: \x07bell"],
                                    [grading.ExerciseResult(e.check, e.title, "error", "Boom\x1b]0;title\x07\x9d")
                                     for e in ps[PS].exercises])
    text = reports.write_reports([result], ps, tmp_path)
    written = [p.read_text(encoding="utf-8") for p in tmp_path.rglob("*") if p.is_file()] + [text]
    for content in written:
        assert not any(ch in content for ch in "\x1b\x07\x9b\x9d\x85"), content[:300]
    assert "eve\\x1b" in (tmp_path / "notebooks.csv").read_text(encoding="utf-8")


def test_executed_copies_keep_no_student_metadata_or_active_html(tmp_path):
    import nbformat

    from toyattn.grading.grade import _save_executed

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


def test_totals_count_only_the_classs_problem_sets(tmp_path, capsys):
    sets = grading.load_problem_sets(ROOT)
    if len(sets) < 2:
        pytest.skip("one problem set only")
    subs = tmp_path / "subs"
    for student in ("ann", "ben", "eve"):
        (subs / student).mkdir(parents=True)
        (subs / student / f"{PS}.ipynb").write_text("not a notebook")
    for other in (n for n in sets if n != PS):
        (subs / "eve" / f"{other}.ipynb").write_text("not a notebook")  # stubs of every other problem set
    assert _grade_unsandboxed(subs, tmp_path / "out") == 0
    with open(tmp_path / "out" / "scores.csv", encoding="utf-8") as f:
        totals = {r["student"]: r["exercises"] for r in csv.DictReader(f)}
    n = len(sets[PS].exercises)
    assert totals == {"ann": str(n), "ben": str(n), "eve": str(n)}
    assert "not graded: handed in by only 1 of 3 students" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    capsys.readouterr()


# ---------------------------------------------------------------- the grader reached through links


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
