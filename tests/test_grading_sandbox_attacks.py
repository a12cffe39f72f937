"""A hostile class for `toyattn grade`: every attack from issue 13 earns nothing and harms nobody.

Six attackers and three honest students hand in the warm-up (plus two symlinked "submissions");
the class is graded once, sandboxed, two notebooks at a time. Attackers may use anything a
notebook cell can do, and are even told the paths they should not reach (the submissions folder,
``--out``, ``solutions/``, a port open on the host). Afterwards: honest grades are exact, no
attacker passes anything, no file outside the grader's reports changed, and no process survives.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from grading_helpers import PS, ROOT, sandbox_or_skip, to_ipynb, variant

from toyattn.cli import main

MARKER = f"SABOTEUR-{uuid.uuid4().hex}"


ESCAPE = f"/tmp/escaped-{uuid.uuid4().hex}"


SECRET = f"SECRET-{uuid.uuid4().hex}"


HONEST = {"ann lee": 2, "ann_lee": 1, '=HYPERLINK("http:x","y")|*b*': 0}


ATTACKERS = ("patcher", "forger", "garbage", "spy", "saboteur", "hog")


def cell(text: str, code: str, *, where: str = "end") -> str:
    """``text`` (py:percent) with one more code cell: right after the imports, or at the end."""
    new = f"# %%\n{code.strip()}\n\n"
    if where == "end":
        return text.rstrip("\n") + "\n\n" + new
    at = text.index("\n# %%", text.index("from toyattn import checks")) + 1  # the cell after the imports
    return text[:at] + new + text[at:]


# Replaces the check's comparison, its judge and the grader-side method, then hands in wrong answers
# (and calls the recorder's internals directly).
PATCH = """
import toyattn.checks.answers as answers
import toyattn.checks.core as core
import toyattn.checks.warmup as warmup

def noop(*args, **kwargs):
    return None

warmup.assert_close = core.assert_close = noop
checks.check_softmax._judge = checks.check_one_hot._judge = noop
core.Check.judge_answers = lambda self, a, s: ("passed", "")
"""


PATCH_AFTER = """
seed = answers.grading_seed()
checks.check_softmax._record_for_grader(lambda x: x * 0, seed)
answers.write_answers("check_one_hot", seed, "answered", [answers.to_returned(torch.zeros(3, 3))])
print("patched and recorded")
"""


# Writes the answers files by hand (made-up numbers of the right shapes; a "passed" status) and the
# old grader's outcome file.
FORGE = """
import json, os
import numpy as np
d, seed = os.environ["TOYATTN_ANSWERS_DIR"], int(os.environ["TOYATTN_GRADING_SEED"])
cases = checks.check_softmax.cases(seed)
np.savez(f"{d}/check_softmax.npz", **{f"c{i}_0": np.full(tuple(c.args[0].shape), 0.5, np.float32) for i, c in enumerate(cases)})
meta = {"check": "check_softmax", "seed": seed, "status": "answered", "message": "",
        "cases": [{"kinds": ["torch.Tensor:torch.float32"], "is_tuple": False} for _ in cases]}
open(f"{d}/check_softmax.json", "w").write(json.dumps(meta))
open(f"{d}/check_one_hot.json", "w").write(json.dumps({"check": "check_one_hot", "seed": seed, "status": "passed",
                                                       "message": "", "cases": []}))
os.makedirs("../grader", exist_ok=True)
open("../grader/checks.jsonl", "a").write(json.dumps({"check": "check_softmax", "status": "passed"}) + "\\n")
"""


# Garbage answers, and an error message of 5 MB.
GARBAGE = """
import os
d = os.environ["TOYATTN_ANSWERS_DIR"]
open(f"{d}/check_softmax.json", "w").write("{{{ not json")
open(f"{d}/check_one_hot.json", "w").write('{"check": "check_one_hot", "seed": 1, "status": "exploded", "cases": []}')
raise ValueError("E" * 5_000_000)
"""


# Reads what is not theirs (another submission, the solutions, /proc), writes outside its folder,
# and calls home: a port on the grader's machine and the package index. Uses the solution if found.
SPY = """
import glob, os, socket
paths = {paths!r}
report = []
for p in paths["read"]:
    try:
        text = open(p).read()
        report.append(("READ", p, text[:60]))
        if "def softmax" in text:
            exec(compile(text, "stolen", "exec"), globals())
    except (OSError, SyntaxError):
        report.append(("no-read", p))
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        report.append(("proc", pid, open(f"/proc/{{pid}}/cmdline").read().replace("\\0", " ")[:300]))
    except OSError:
        pass
report.append(("tmp", sorted(glob.glob("/tmp/*"))[:20]))
report.append(("kernels", sorted(glob.glob("/tmp/toyattn-grade-*/sandbox/home/runtime/kernel-*.json"))))
for p in paths["write"]:
    try:
        open(p, "w").write("written by a student")
        report.append(("WROTE", p))
    except OSError:
        report.append(("no-write", p))
for host, port in [("127.0.0.1", paths["port"]), ("pypi.org", 443)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        report.append(("CONNECTED", host))
    except OSError as err:
        report.append(("no-connect", host, type(err).__name__))
for line in report:
    print(line)
"""


# A detached daemon that outlives the notebook if it can, and meanwhile writes into everything it
# can name: other students' submissions, the reports in --out, other notebooks' answers.
SABOTEUR = """
import subprocess, sys
daemon = '''
import glob, sys, time
targets = {targets!r}
end = time.time() + 120
while time.time() < end:
    for t in targets + glob.glob("/tmp/toyattn-grade-*/sandbox/answers/*.json"):
        try:
            open(t, "a").write("SABOTAGE")
        except OSError:
            pass
    time.sleep(0.2)
'''
open("daemon.py", "w").write(daemon)
subprocess.Popen([sys.executable, "daemon.py", "{marker}"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("daemon started")
"""


HOG = """
try:
    hog = torch.ones(2**31)  # 8 GiB
    print("HOG-ALLOCATED", hog.sum())
except RuntimeError as err:
    print("HOG-REFUSED", str(err)[:80])
"""


def make_class(subs: Path, out: Path, port: int) -> None:
    stub = variant(set())

    def put(rel: str, py_text: str) -> None:
        path = subs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_ipynb(py_text), encoding="utf-8")

    put(f"ann lee/{PS}.ipynb", variant({0, 1}).replace("# %%\nimport torch", f"# %%\n# {SECRET}\nimport torch", 1))
    put(f"ann_lee/{PS}.ipynb", variant({0}))
    put(f'=HYPERLINK("http:x","y")|*b*/{PS}.ipynb', stub)
    wrong = variant(set(), {0: "return x * 0", 1: "return torch.zeros(*ids.shape, n_classes)"})
    put(f"patcher/{PS}.ipynb", cell(cell(wrong, PATCH, where="start"), PATCH_AFTER))
    put(f"forger/{PS}.ipynb", cell(stub, FORGE))
    put(f"garbage/{PS}.ipynb", cell(stub, GARBAGE))
    paths = {
        "read": [str(subs / "ann lee" / f"{PS}.ipynb"), str(ROOT / "solutions" / f"{PS}.py"), "/etc/shadow"],
        "write": [str(subs / "ann_lee" / f"{PS}.ipynb"), str(out / "planted.txt"), str(ROOT / "toyattn" / "planted.py"),
                  str(ROOT / "planted.txt"), ESCAPE, "/root/planted.txt"],
        "port": port,
    }
    put(f"spy/{PS}.ipynb", cell(stub, SPY.format(paths=paths)))
    targets = [str(p) for p in sorted(subs.rglob("*.ipynb"))] + [str(out / n) for n in ("grades.csv", "summary.md")]
    put(f"saboteur/{PS}.ipynb", cell(stub, SABOTEUR.format(targets=targets, marker=MARKER), where="start"))
    put(f"hog/{PS}.ipynb", cell(variant({0, 1}), HOG, where="start"))
    (subs / "linker").mkdir()
    (subs / "linker" / f"{PS}.ipynb").symlink_to(ROOT / "solutions" / f"{PS}.ipynb")
    (subs / f"pw__{PS}.ipynb").symlink_to("/etc/passwd")


def processes_with(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace"):
                found.append(pid)
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    sandbox_or_skip()
    base = tmp_path_factory.mktemp("hostile")
    subs, out = base / "submissions", base / "grading"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    make_class(subs, out, listener.getsockname()[1])
    before = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file() and not p.is_symlink()}
    start = time.perf_counter()
    rc = main(["grade", str(subs), "--out", str(out), "--jobs", "2", "--timeout", "90", "--cell-timeout", "30",
               "--root", str(ROOT), "--problem-set", PS])
    seconds = time.perf_counter() - start
    reports = {p.name: p.read_bytes() for p in out.glob("*.*")}
    time.sleep(2)  # a surviving daemon would strike now
    try:
        conn, _ = listener.accept()
        conn.close()
        connected = True
    except BlockingIOError:
        connected = False
    listener.close()
    with open(out / "grades.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(out / "notebooks.csv", encoding="utf-8") as f:
        notebooks = {r["student"]: r for r in csv.DictReader(f)}
    print(f"graded the hostile class in {seconds:.1f} s (2 jobs)")
    return {"rc": rc, "subs": subs, "out": out, "before": before, "rows": rows,
            "notebooks": notebooks, "reports": reports, "connected": connected, "seconds": seconds}


def status(attacked, student: str, check: str) -> str:
    return next(r for r in attacked["rows"] if r["student"].lstrip("'") == student and r["exercise"] == check)["status"]


def executed_text(attacked, folder: str) -> str:
    nb = json.loads((attacked["out"] / "executed" / folder / f"{PS}.ipynb").read_text(encoding="utf-8"))
    return "\n".join("".join(o.get("text", "")) + o.get("evalue", "") for c in nb["cells"] if c["cell_type"] == "code"
                     for o in c["outputs"])


def test_honest_grades_are_exact(attacked):
    assert attacked["rc"] == 0
    for student, passed in HONEST.items():
        row = next(r for name, r in attacked["notebooks"].items() if name.lstrip("'") == student)
        assert int(row["passed"]) == passed, (student, row)
    assert status(attacked, "ann_lee", "check_one_hot") == "not implemented"


@pytest.mark.parametrize("student", ATTACKERS + ("linker", "pw"))
def test_no_attacker_passes_anything(attacked, student):
    passed = [r for r in attacked["rows"] if r["student"] == student and r["status"] == "passed"]
    expected = 2 if student == "hog" else 0  # the hog's own exercises are right: the limit spares the rest
    assert len(passed) == expected, [(r["exercise"], r["status"], r["message"][:120]) for r in attacked["rows"] if r["student"] == student]


def test_patching_checks_and_calling_internals_are_judged_on_the_numbers(attacked):
    assert status(attacked, "patcher", "check_softmax") == status(attacked, "patcher", "check_one_hot") == "failed"
    assert "patched and recorded" in executed_text(attacked, "patcher")


def test_forged_and_garbage_answers(attacked):
    assert status(attacked, "forger", "check_softmax") == "failed"
    assert status(attacked, "forger", "check_one_hot") == "grader error"  # "passed" is no status a kernel may report
    assert status(attacked, "garbage", "check_softmax") == status(attacked, "garbage", "check_one_hot") == "grader error"
    summary = attacked["reports"]["summary.md"].decode()
    assert len(summary) < 50_000 and "E" * 1000 not in summary  # the 5 MB message is cut
    assert max(len(v) for v in attacked["reports"].values()) < 200_000


def test_the_spy_reads_writes_and_reaches_nothing(attacked):
    text = executed_text(attacked, "spy")
    assert "no-read" in text and "READ" not in text and SECRET not in text
    seen = [line for line in text.splitlines() if line.startswith(("('proc'", "('tmp'"))]
    assert seen and not any(str(attacked["subs"]) in line for line in seen)  # not even the folder's name
    # Its own scratch folder and kernel only: no other notebook's folder or connection file (HMAC key).
    kernels = next(line for line in text.splitlines() if line.startswith("('kernels'"))
    assert kernels.count("kernel-") <= 1 and len({p.split("/sandbox")[0] for p in kernels.split("'") if "grade-" in p}) <= 1
    # Inside the sandbox /tmp is the student's own (in its scratch folder), so a write below /tmp succeeds
    # there and reaches nothing: a checkout under the host's /tmp (CI's clone) puts ROOT there too. The
    # host-side asserts below check that no such file appeared outside.
    wrote = [line for line in text.splitlines() if line.startswith("('WROTE'")]
    assert all(line.startswith("('WROTE', '/tmp/") for line in wrote) and "no-write" in text, wrote
    assert "CONNECTED" not in text and text.count("no-connect") == 2
    assert not attacked["connected"], "something in a sandbox connected to a port on the grader's machine"
    assert not Path(ESCAPE).exists() and not Path("/root/planted.txt").exists()
    assert not (ROOT / "planted.txt").exists() and not (ROOT / "toyattn" / "planted.py").exists()
    assert not (attacked["out"] / "planted.txt").exists()


def test_nothing_outside_the_reports_changed_and_no_process_survived(attacked):
    assert not processes_with(MARKER), "the saboteur's daemon outlived its notebook"
    after = {p: p.read_bytes() for p in attacked["subs"].rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == attacked["before"]
    for path in [*(ROOT / "solutions").glob(f"{PS}.*"), *(ROOT / "toyattn" / "checks").glob("*.py")]:
        assert b"SABOTAGE" not in path.read_bytes() and b"written by a student" not in path.read_bytes()
    now = {p.name: p.read_bytes() for p in attacked["out"].glob("*.*")}
    assert now == attacked["reports"] and not any(b"SABOTAGE" in v for v in now.values())
    assert "daemon started" in executed_text(attacked, "saboteur")


def test_the_memory_hog_is_refused_and_the_rest_of_its_notebook_runs(attacked):
    text = executed_text(attacked, "hog")
    assert "HOG-REFUSED" in text and "HOG-ALLOCATED" not in text


def test_symlinked_submissions_are_rejected_unread(attacked):
    for student in ("linker", "pw"):
        assert attacked["notebooks"][student]["outcome"] == "rejected"
        assert "symbolic link" in attacked["notebooks"][student]["problems"]
    assert not any(b"root:" in v for v in attacked["reports"].values())  # nothing of /etc/passwd leaked


def test_reports_stay_readable_with_hostile_names(attacked):
    out = attacked["out"]
    feedback = sorted(p.name for p in (out / "feedback").glob("ann*"))
    assert len(feedback) == 2 and feedback[0] != feedback[1]
    pages = {p.read_text(encoding="utf-8").splitlines()[0]: p.read_text(encoding="utf-8") for p in (out / "feedback").glob("ann*")}
    assert "2 of 2" in pages["# Feedback for ann lee"] and "1 of 2" in pages[r"# Feedback for ann\_lee"]
    assert len(list((out / "executed").iterdir())) == len(HONEST) + len(ATTACKERS)
    formula = [r["student"] for r in attacked["rows"] if "HYPERLINK" in r["student"]]
    assert formula and all(s.startswith("'=") for s in formula)  # a spreadsheet shows it as text
    row = next(line for line in attacked["reports"]["summary.md"].decode().splitlines() if "HYPERLINK" in line)
    assert row.count(" | ") == 3 and r"\|" in row  # the name's "|" does not add a column
