"""What keeps a sandbox from privileges and from resources it shares: no capability, no new user namespace, a cgroup.

Used by :mod:`toyattn.grading.sandbox` (the ``bwrap`` command) and :mod:`toyattn.grading.runner`
(the first process inside). Three pieces, each where the machine allows it:

* :func:`userns_filter` - a seccomp program (x86-64 and arm64) that refuses new user namespaces
  (``unshare``/``clone`` with ``CLONE_NEWUSER``; ``clone3`` answers ENOSYS so libc falls back to
  ``clone``). ``bwrap --disable-userns`` does the same where bwrap makes the user namespace itself.
* :func:`drop_to` - when the grader is root, the runner leaves root before any student code exists:
  every capability out of the bounding set, no groups, an unprivileged uid of its own (so Linux
  applies ``RLIMIT_NPROC``, which it never applies to root), ``no_new_privs``.
* :class:`Cgroup` - memory and processes of the sandbox as a whole (cgroup v2, or v1's ``memory``
  and ``pids`` hierarchies), where this process may create a child cgroup; else None and a note.
"""

from __future__ import annotations

import ctypes
import os
import platform
import secrets
import struct
from pathlib import Path

CLONE_NEWUSER = 0x10000000
#: uids handed to sandboxes when the grader is root: one fresh uid each, so no two share a process count.
SANDBOX_UID_RANGE = (1_500_000_000, 2_000_000_000)
_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 24, 38
# (audit arch, unshare, clone, clone3) per machine
_ARCHES = {"x86_64": (0xC000003E, 272, 56, 435), "aarch64": (0xC00000B7, 97, 220, 435)}


def fresh_uid() -> int:
    """A uid no account and no other sandbox is likely to have (random in :data:`SANDBOX_UID_RANGE`)."""
    return SANDBOX_UID_RANGE[0] + secrets.randbelow(SANDBOX_UID_RANGE[1] - SANDBOX_UID_RANGE[0])


def userns_filter() -> bytes | None:
    """A classic-BPF seccomp program refusing new user namespaces; None on a machine it does not know."""
    arch = _ARCHES.get(platform.machine())
    if arch is None:
        return None
    audit, unshare, clone, clone3 = arch
    ld_w_abs, jeq_k, jge_k, jset_k, ret_k = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    eperm, enosys = 0x00050000 | 1, 0x00050000 | 38

    def ins(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    prog = [
        ins(ld_w_abs, 0, 0, 4),  # 0: arch
        ins(jeq_k, 1, 0, audit),  # 1: native arch -> 3
        ins(ret_k, 0, 0, kill),  # 2: another ABI (ia32 programs) could dodge the numbers below
        ins(ld_w_abs, 0, 0, 0),  # 3: syscall number
        ins(jge_k, 0, 1, 0x40000000),  # 4: nr >= 0x40000000 (x32) -> kill
        ins(ret_k, 0, 0, kill),  # 5
        ins(jeq_k, 0, 1, clone3),  # 6
        ins(ret_k, 0, 0, enosys),  # 7
        ins(jeq_k, 1, 0, unshare),  # 8 -> 10
        ins(jeq_k, 0, 3, clone),  # 9 -> 13 (allow) when neither
        ins(ld_w_abs, 0, 0, 16),  # 10: flags (first argument, low half)
        ins(jset_k, 0, 1, CLONE_NEWUSER),  # 11
        ins(ret_k, 0, 0, eperm),  # 12
        ins(ret_k, 0, 0, allow),  # 13
    ]
    return b"".join(prog)


def _status_caps() -> dict[str, int]:
    caps = {}
    with open("/proc/self/status", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("Cap"):
                name, value = line.split(":", 1)
                caps[name] = int(value.strip(), 16)
    return caps


def drop_to(uid: int) -> None:
    """Leave root for ``uid`` for good: no capability (bounding set included), no groups, no_new_privs.

    Raises OSError when any capability is left afterwards (the runner then stops before the notebook).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    libc.capset(header, bytes(24))  # effective, permitted and inheritable: all empty
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    left = {k: hex(v) for k, v in _status_caps().items() if v}
    if left or os.getuid() == 0 or os.geteuid() == 0:
        raise OSError(f"capabilities left after leaving root: {left}")


class Cgroup:
    """A child cgroup holding one sandbox: ``memory`` bytes and ``pids`` processes for all of it together."""

    def __init__(self, dirs: list[Path]):
        self.dirs = dirs

    @classmethod
    def create(cls, memory: int | None, pids: int | None) -> Cgroup | None:
        """A new cgroup with these limits, or None where this machine or user does not allow one."""
        name = f"toyattn-{secrets.token_hex(6)}"
        made: list[Path] = []
        try:
            for base, limits in _hierarchies(memory, pids):
                d = base / name
                d.mkdir()
                made.append(d)
                for file, value in limits:
                    (d / file).write_text(str(value))
            return cls(made) if made and _covers(made, memory, pids) else _remove(made)
        except OSError:
            return _remove(made)

    def join(self) -> None:
        """Move the calling process in (``preexec_fn`` of the sandbox: all it starts stays inside)."""
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as f:
                f.write("0")

    def remove(self) -> None:
        import time

        for _ in range(50):  # the sandbox's last processes may still be leaving
            _remove(self.dirs)
            if not any(d.exists() for d in self.dirs):
                return
            time.sleep(0.05)


def mount_tmpfs(path: Path, size: int | None) -> bool:
    """A root grader's scratch folder as a size-capped tmpfs (False where this process may not mount)."""
    if size is None or os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    ms_nosuid, ms_nodev = 2, 4
    return libc.mount(b"toyattn-scratch", os.fsencode(path), b"tmpfs", ms_nosuid | ms_nodev,
                      f"size={int(size)},mode=0700".encode()) == 0


def unmount(path: Path) -> None:
    ctypes.CDLL(None, use_errno=True).umount2(os.fsencode(path), 2)  # MNT_DETACH


def _remove(dirs: list[Path]) -> None:  # returns None: Cgroup.create gives it back
    for d in dirs:
        try:
            os.rmdir(d)
        except OSError:
            pass
    return None


def _own_cgroups() -> dict[str, str]:
    """controller (or '' for v2) -> this process's cgroup path."""
    found = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                found[c] = path
    except (OSError, ValueError):
        pass
    return found


def _hierarchies(memory: int | None, pids: int | None) -> list[tuple[Path, list[tuple[str, int]]]]:
    own, root = _own_cgroups(), Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # cgroup v2 only
        base = root / own.get("", "/").lstrip("/")
        return [(base, [(f, v) for f, v in (("memory.max", memory), ("memory.swap.max", 0 if memory else None),
                                             ("pids.max", pids)) if v is not None])]
    out = []
    if memory is not None and "memory" in own and (root / "memory").is_dir():
        out.append((root / "memory" / own["memory"].lstrip("/"),
                    [("memory.limit_in_bytes", memory)]))
    if pids is not None and "pids" in own and (root / "pids").is_dir():
        out.append((root / "pids" / own["pids"].lstrip("/"), [("pids.max", pids)]))
    return out


def _covers(dirs: list[Path], memory: int | None, pids: int | None) -> bool:
    """Every limit asked for is in one of ``dirs`` (a v2 tree without the controllers enabled has no file)."""
    have = {f.name for d in dirs for f in d.iterdir()}
    return ((memory is None or bool({"memory.max", "memory.limit_in_bytes"} & have))
            and (pids is None or "pids.max" in have))
