"""Fixed cost of ``Executable.run`` next to an empty Python-to-Rust call.

An empty program (``mov %r0, 0; exit``) is run with no memory, with a
74-byte ``bytes`` (copied into the VM) and with a 74-byte ``bytearray``
(used in place); ``ebpfvm._core._noop`` with the same argument is the
baseline: the difference is what ``run`` itself costs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ebpfvm
import pytest

from benches import _harness as h

#: The 74-byte TCP SYN of parse.bin, as a realistic small packet.
PACKET = h.read_input("parse")


@pytest.fixture(scope="module")
def empty_exe() -> ebpfvm.Executable:
    exe = ebpfvm.Program(h.EMPTY_PROGRAM).load(engine="interpreter", verify=False)
    assert exe.run() == 0
    assert exe.run_counted(None) == (0, 2)
    return exe


def _argument(kind: str) -> tuple[object, ...]:
    if kind == "empty":
        return ()
    if kind == "bytes":
        return (bytes(PACKET),)
    if kind == "bytearray":
        return (bytearray(PACKET),)
    raise ValueError(kind)


# The baseline (_noop) of each kind runs first, so the run() benchmark can
# report its overhead in extra_info.
@pytest.mark.parametrize("side", ["noop", "run"])
@pytest.mark.parametrize("kind", list(h.CALL_KINDS))
def test_call_overhead(
    benchmark: Any,
    kind: str,
    side: str,
    empty_exe: ebpfvm.Executable,
    results: h.Results,
    timing_settings: h.TimingSettings,
) -> None:
    args = _argument(kind)
    fn: Callable[..., object] = empty_exe.run if side == "run" else ebpfvm._core._noop
    expected = 0 if side == "run" else None
    assert fn(*args) == expected
    assert len(PACKET) == 74
    goal = h.GOAL_EMPTY_RUN_NS if kind == "empty" else None
    h.time_call(benchmark, kind, side, fn, args, h.CALL_KINDS[kind], goal, results, timing_settings)
