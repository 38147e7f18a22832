"""Maps of maps and program arrays."""

from __future__ import annotations

import ebpfvm
import pytest
from ebpfvm import maps


def test_array_of_maps_stores_views() -> None:
    inner = maps.HashMap("u32", "u64", 16, name="inner")
    outer = maps.ArrayOfMaps(inner, 4, name="outer")
    assert outer.map_type == "array_of_maps"
    assert outer.inner_def is not None and outer.inner_def["map_type"] == "hash"
    assert len(outer) == 0 and list(outer) == []
    outer[1] = inner
    assert outer[1] is inner  # the view stored, with its types
    outer[1][3] = 9
    assert inner[3] == 9
    assert list(outer) == [1] and len(outer) == 1
    with pytest.raises(KeyError):
        outer[0]
    del outer[1]
    assert 1 not in outer
    with pytest.raises(KeyError):
        del outer[1]


def test_inner_maps_must_match_the_template() -> None:
    template = maps.HashMap("u32", "u64", 16)
    outer = maps.ArrayOfMaps(template, 2, name="strict")
    with pytest.raises(ebpfvm.MapError) as e:
        outer[0] = maps.HashMap("u32", "u32", 16)
    assert e.value.map_name == "strict"
    with pytest.raises(ebpfvm.MapError):
        outer[0] = maps.ArrayMap("u32", "u64", 16)
    with pytest.raises(TypeError, match="values are maps"):
        outer[0] = "nope"
    with pytest.raises(TypeError, match="inner_map must be a map"):
        maps.ArrayOfMaps("u32", 4)  # type: ignore[arg-type]


def test_hash_of_maps() -> None:
    template = maps.ArrayMap("u32", "u32", 4)
    hom = maps.HashOfMaps("u64", template, 8, name="hom")
    a, b = maps.ArrayMap("u32", "u32", 4), maps.ArrayMap("u32", "u32", 4)
    hom[10] = a
    hom.update_elem(20, b, flags=maps.BPF_NOEXIST)
    with pytest.raises(ebpfvm.MapError):
        hom.update_elem(20, a, flags=maps.BPF_NOEXIST)
    assert sorted(hom) == [10, 20]
    assert hom[20] is b
    assert {k: v.id for k, v in hom.items()} == {10: a.id, 20: b.id}


TAIL_CALLER = """
lddw %r2, map_idx 0
mov %r3, 0
call 12
mov %r0, 1
exit
"""


def test_prog_array_slots_hold_programs() -> None:
    jmp = maps.ProgArray(4, name="jmp")
    assert jmp.map_type == "prog_array" and len(jmp) == 0 and list(jmp) == []
    target = ebpfvm.Program.from_asm("mov %r0, 7\nexit", prog_type="socket_filter").load()
    caller = ebpfvm.Program.from_asm(TAIL_CALLER, prog_type="socket_filter", maps=[jmp]).load()
    assert int(caller.run(bytes(64)).retval) == 1  # empty slot: the call falls through
    jmp[0] = target
    assert isinstance(jmp[0], int) and list(jmp) == [0] and len(jmp) == 1
    assert int(caller.run(bytes(64)).retval) == 7
    del jmp[0]
    assert int(caller.run(bytes(64)).retval) == 1
    with pytest.raises(ebpfvm.MapError):
        jmp[9] = target
    with pytest.raises(TypeError, match="loaded programs"):
        jmp[1] = "prog"
