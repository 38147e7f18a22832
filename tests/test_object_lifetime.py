"""Objects whose programs tail-call each other through a program array are
freed when dropped: the array holds the programs, which hold the array, so
the object breaks that cycle (as the kernel does when the last user
reference to a program array goes)."""

from __future__ import annotations

import gc
import struct
from pathlib import Path

import ebpfvm

TAIL_CALLS = Path(__file__).resolve().parent.parent / "examples" / "bpf" / "tail_calls.o"


def tcp_packet() -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, b"\n\0\0\1", b"\n\0\0\2")
    return eth + ip + struct.pack("!HHIIBBHHH", 1, 80, 0, 0, 0x50, 2, 65535, 0, 0)


def test_close_empties_program_arrays_and_tail_calls_fall_through() -> None:
    with ebpfvm.Object.open(TAIL_CALLS) as obj:
        exe = obj.programs["dispatch"].load(engine="interpreter")
        before = exe.run(tcp_packet())
        assert before.tail_calls > 0
        assert len(obj.maps["jump_table"]) > 0
        table = obj.maps["jump_table"]
    assert len(table) == 0
    after = exe.run(tcp_packet())
    assert after.tail_calls == 0


def test_dropped_objects_do_not_keep_their_maps_alive() -> None:
    ids = []
    for _ in range(20):
        obj = ebpfvm.Object.open(TAIL_CALLS)
        obj.programs["dispatch"].load(engine="interpreter").run(tcp_packet())
        ids.append(obj.maps["jump_table"].id)
        del obj
    gc.collect()
    # Every map of every dropped object is gone (no program array left
    # holding the programs that hold it).
    assert [i for i in ids if ebpfvm.maps.Map.by_id(i) is not None] == []
