"""The instructor and cluster guides stay true: the options they document exist, the env file and the SLURM script parse."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from toyattn.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


DOCS = ROOT / "docs"


def _subparser(name: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[name]


def _section(heading: str) -> str:
    """The text of one section of instructors.md, up to the next heading of the same or a higher level."""
    text = (DOCS / "instructors.md").read_text(encoding="utf-8")
    level = heading.split(" ")[0]
    start = text.index(heading + "\n")
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", text, flags=re.M) if m.start() > start]
    return text[start:ends[0] if ends else len(text)]


@pytest.mark.parametrize(("command", "heading"), [("grade", "## Grading"), ("collect", "### Collecting from a JupyterHub")])
def test_every_option_is_documented_and_every_documented_one_exists(command, heading):
    parser = _subparser(command)
    real = {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")} - {"--help"}
    table = set(re.findall(r"^\| `(--[a-z-]+)", _section(heading), flags=re.M))
    assert table == real, f"documented {sorted(table)} vs real {sorted(real)}"


def test_commands_in_the_guides_parse():
    """Every `toyattn grade|run|collect ...` line in the guides is accepted by the real parser."""
    parser = build_parser()
    lines = []
    for doc in ("instructors.md", "cluster.md"):
        for line in (DOCS / doc).read_text(encoding="utf-8").splitlines():
            m = re.search(r"(?:toyattn|toyattn\.cli) ((?:grade|run|collect) [^#`|]*)", line)
            if m:
                lines.append(m.group(1).strip().rstrip("\\").strip())
    assert len(lines) >= 4
    for cmd in lines:
        args = [a for a in cmd.split() if not a.startswith("<")]
        parser.parse_args(args)  # raises SystemExit on an unknown option


def test_environment_file_installs_the_course_with_a_supported_python():
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert env["name"] == "toyattn"
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    major, minor = (int(x) for x in python.split("=")[1].split(".")[:2])
    assert (major, minor) >= (3, 10)
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-e .[dev]" in pip  # the course itself, editable, with the grading/test tools


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_script_is_valid_bash_and_asks_for_a_gpu():
    script = DOCS / "slurm" / "run_lesson.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text(encoding="utf-8")
    assert re.search(r"^#SBATCH --gres=gpu:1$", text, flags=re.M)
    assert "toyattn.cli run" in text and "toyattn.cli doctor" in text


def test_slurm_script_fails_fast_without_a_notebook(tmp_path):
    res = subprocess.run(
        ["bash", str(DOCS / "slurm" / "run_lesson.sbatch"), "notebooks/no_such_lesson.ipynb"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "TOYATTN_RESULTS": str(tmp_path)},
    )
    assert res.returncode == 2 and "no notebook at" in res.stderr
