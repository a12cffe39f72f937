"""Tests of ``toyattn.grading.confine``: the pieces a root grader confines a sandbox with that run as any user
(fresh uids, the seccomp program refusing new user namespaces). The confinement itself is exercised by the
sandbox tests (``test_grading_sandbox*.py``)."""

from __future__ import annotations

import struct

import pytest

from toyattn.grading import confine


def test_fresh_uids_lie_in_the_sandbox_range_and_differ():
    low, high = confine.SANDBOX_UID_RANGE
    uids = {confine.fresh_uid() for _ in range(20)}
    assert all(low <= uid < high for uid in uids)
    assert len(uids) > 1


@pytest.mark.parametrize("machine", sorted(confine._ARCHES))
def test_userns_filter_is_a_bpf_program_that_checks_the_arch_and_ends_by_allowing(monkeypatch, machine):
    monkeypatch.setattr(confine.platform, "machine", lambda: machine)
    prog = confine.userns_filter()
    assert isinstance(prog, bytes) and len(prog) % 8 == 0
    instructions = [struct.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    audit = confine._ARCHES[machine][0]
    assert instructions[1][3] == audit  # compares the architecture before reading syscall numbers
    assert instructions[-1] == (0x06, 0, 0, 0x7FFF0000)  # RET ALLOW: anything else goes on
    assert (0x15, 0, 1, confine._ARCHES[machine][3]) in instructions  # clone3 is caught


def test_userns_filter_is_none_on_a_machine_it_does_not_know(monkeypatch):
    monkeypatch.setattr(confine.platform, "machine", lambda: "pdp11")
    assert confine.userns_filter() is None
