"""`make gpu-check`: the course on one device in one command, with a table of what ran and how long it took.

Runs, in order, on ``--device`` (default ``cuda``):

1. the GPU-marked tests (``pytest -m gpu``);
2. every lecture and solution notebook, each executed by nbclient with ``TOYATTN_DEVICE`` set to the device,
   timed one by one;
3. the benchmarks that take a device (``--device``), their printed ratios kept.

It writes ``gpu-check.md`` (a table: device name, torch, each notebook's time and result, each benchmark's
ratio lines) and ``gpu-check.json`` to ``--out`` (default ``artifacts/gpu/``), and exits 1 when a test, a
notebook or a benchmark failed, so a broken notebook on a GPU node fails the check.

    .venv/bin/python benchmarks/gpu_check.py [--device cuda] [--out artifacts/gpu] [--notebooks A.ipynb ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The benchmarks that measure a device; each takes --device.
BENCHMARKS = ["bench_attention_toy.py", "bench_stacked_runs.py", "bench_heads.py", "bench_symmetry.py"]
# A printed line worth keeping in the table: it carries a ratio ("2.4x", "3.24x the ideal") or a rate.
RATIO_LINE = re.compile(r"\d\s*x\b|\bratio\b|/s\b|%")


def device_facts(device: str) -> dict[str, str]:
    import torch

    facts = {"device": device, "torch": torch.__version__, "cuda_build": str(torch.version.cuda)}
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit(f"gpu-check: --device {device} but torch.cuda.is_available() is False "
                             f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
                             "run on a GPU node, install a CUDA build (`make install TORCH=cuda`), or pass --device cpu.")
        facts["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return facts


def run_gpu_tests() -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests", "-m", "gpu", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True)
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"rc": proc.returncode, "seconds": time.perf_counter() - start, "summary": summary}


def run_notebook(path: Path, device: str, timeout: int) -> dict:
    """Execute one notebook in its own folder with TOYATTN_DEVICE=device; never raises."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["TOYATTN_DEVICE"] = device  # the kernel inherits this process's environment
    start = time.perf_counter()
    try:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        error = ""
    except Exception as err:  # noqa: BLE001 - any failure is this notebook's result, the next one still runs
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"[:300]
    return {"notebook": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "seconds": time.perf_counter() - start, "ok": not error, "error": error}


def run_benchmark(name: str, device: str, timeout: int) -> dict:
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--device", device],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        rc, out = 124, f"timed out after {timeout} s"
    ratios = [ln.strip() for ln in out.splitlines() if RATIO_LINE.search(ln)]
    return {"benchmark": name, "seconds": time.perf_counter() - start, "rc": rc, "ratios": ratios[-24:],
            "tail": out.strip().splitlines()[-5:] if rc else []}


def write_report(out: Path, facts: dict, tests: dict | None, notebooks: list[dict], benchmarks: list[dict]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# gpu-check, {dt.date.today().isoformat()}", "",
             " | ".join(f"{k}: {v}" for k, v in facts.items()), ""]
    if tests is not None:
        lines += [f"`pytest -m gpu`: {tests['summary']} (rc {tests['rc']}, {tests['seconds']:.0f} s)", ""]
    lines += ["| notebook | seconds | result |", "| --- | ---: | --- |"]
    lines += [f"| {n['notebook']} | {n['seconds']:.1f} | {'pass' if n['ok'] else 'FAIL: ' + n['error'].replace('|', '/')} |"
              for n in notebooks]
    if benchmarks:
        lines += ["", "| benchmark | seconds | rc | printed ratios |", "| --- | ---: | ---: | --- |"]
        lines += [f"| {b['benchmark']} | {b['seconds']:.1f} | {b['rc']} | {'<br>'.join(b['ratios']).replace('|', '/')} |"
                  for b in benchmarks]
    report = out / "gpu-check.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "gpu-check.json").write_text(json.dumps({"facts": facts, "tests": tests, "notebooks": notebooks,
                                                    "benchmarks": benchmarks}, indent=2), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "gpu")
    parser.add_argument("--notebooks", nargs="*", type=Path, default=None,
                        help="notebooks to run (default: notebooks/*.ipynb and solutions/*.ipynb)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run `pytest -m gpu`")
    parser.add_argument("--skip-benchmarks", action="store_true")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per notebook cell and per benchmark")
    args = parser.parse_args(argv)

    facts = device_facts(args.device)
    tests = None if args.skip_tests else run_gpu_tests()
    paths = args.notebooks if args.notebooks is not None else sorted(
        [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("solutions/*.ipynb")])
    notebooks = []
    for path in paths:
        result = run_notebook(path.resolve(), args.device, args.timeout)
        print(f"{result['notebook']}: {'pass' if result['ok'] else 'FAIL ' + result['error']} ({result['seconds']:.1f} s)",
              flush=True)
        notebooks.append(result)
    benchmarks = [] if args.skip_benchmarks else [run_benchmark(b, args.device, args.timeout) for b in BENCHMARKS]
    report = write_report(args.out, facts, tests, notebooks, benchmarks)
    print(report.read_text(encoding="utf-8"))
    failed = (tests is not None and tests["rc"] not in (0, 5)) or not all(n["ok"] for n in notebooks) or any(
        b["rc"] for b in benchmarks)
    print(f"gpu-check: {'FAILED' if failed else 'passed'}; the table is in {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
