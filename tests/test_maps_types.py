"""Key and value types: names, struct formats, ctypes, raw bytes, BTF."""

from __future__ import annotations

import ctypes
import enum
import errno

import ebpfvm
import numpy as np
import pytest
from ebpfvm import maps


def test_int_types_round_trip_at_their_limits() -> None:
    for name, low, high in [
        ("u8", 0, 255),
        ("i8", -128, 127),
        ("u16", 0, 65535),
        ("i32", -(2**31), 2**31 - 1),
        ("u64", 0, 2**64 - 1),
        ("i64", -(2**63), 2**63 - 1),
    ]:
        m = maps.HashMap(name, name, 4, name=name)
        m[low] = high
        m[high] = low
        assert (m[low], m[high]) == (high, low)
        with pytest.raises(ebpfvm.MapError, match="out of range"):
            m[high + 1] = 0
        with pytest.raises(ebpfvm.MapError, match="out of range"):
            m[0] = low - 1


def test_ints_are_little_endian_in_the_map() -> None:
    m = maps.HashMap("u32", "u64", 4)
    m[0x01020304] = 0x1122334455667788
    assert m.core.lookup((0x01020304).to_bytes(4, "little")) == (0x1122334455667788).to_bytes(
        8, "little"
    )


def test_floats() -> None:
    m = maps.ArrayMap("u32", "f64", 2)
    m[0] = 1.5
    assert m[0] == 1.5 and isinstance(m[0], float)
    f = maps.ArrayMap("u32", "f32", 2)
    f[1] = 0.25
    assert f[1] == 0.25
    with pytest.raises(TypeError):
        f[1] = "x"


def test_struct_format_strings() -> None:
    m = maps.HashMap("<IH", "<QQ", 8, name="fmt")
    assert (m.key_size, m.value_size) == (6, 16)
    m[(1, 2)] = (3, 4)
    assert m[(1, 2)] == (3, 4)
    assert list(m.items()) == [((1, 2), (3, 4))]
    with pytest.raises(ebpfvm.MapError, match="fmt"):
        m[(1, 70000)] = (0, 0)
    s = maps.HashMap("16s", "<I", 4)
    s[b"comm"] = 7  # a one-field format reads and writes the field itself
    assert list(s) == [b"comm" + bytes(12)]
    assert s[b"comm"] == 7


def test_ctypes_scalars_give_ints() -> None:
    m = maps.HashMap(ctypes.c_uint32, ctypes.c_int64, 4)
    m[7] = -5
    assert m[7] == -5 and isinstance(m[7], int)
    with pytest.raises(ebpfvm.MapError, match="out of range"):
        m[2**32] = 0


class Flow(ctypes.Structure):
    _fields_ = [("saddr", ctypes.c_uint32), ("dport", ctypes.c_uint16), ("proto", ctypes.c_uint8)]


class Stats(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def test_ctypes_structures_give_instances() -> None:
    m = maps.HashMap(Flow, Stats, 16, name="flows")
    assert (m.key_size, m.value_size) == (8, 16)
    m[Flow(1, 80, 6)] = Stats(2, 100)
    m[{"saddr": 2, "dport": 443, "proto": 6}] = (1, 60)
    v = m[Flow(1, 80, 6)]
    assert isinstance(v, Stats) and (v.packets, v.bytes) == (2, 100)
    keys = sorted((k.saddr, k.dport) for k in m)
    assert keys == [(1, 80), (2, 443)]
    assert m[Flow(2, 443, 6)].bytes == 60
    with pytest.raises(TypeError, match="flows"):
        m[1] = Stats()


def test_raw_bytes_when_no_type() -> None:
    m = maps.HashMap(bytes, None, 4, key_size=3, value_size=5)
    m[b"abc"] = b"12345"
    assert m[b"abc"] == b"12345"
    with pytest.raises(TypeError):
        m["abc"] = b"12345"
    with pytest.raises(ebpfvm.MapError) as e:
        m[b"abc"] = b"1234"
    assert e.value.errno == errno.EINVAL and "value must be 5 bytes, got 4" in str(e.value)


def test_unknown_type_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown key type 'u33'"):
        maps.HashMap("u33", "u32", 4)
    with pytest.raises(TypeError, match="key_type"):
        maps.HashMap(3.5, "u32", 4)


U32 = {"kind": "int", "size": 4, "signed": False, "name": "__u32"}
U16 = {"kind": "int", "size": 2, "signed": False, "name": "__u16"}
S32 = {"kind": "int", "size": 4, "signed": True, "name": "int"}
U64 = {"kind": "int", "size": 8, "signed": False, "name": "__u64"}
CHAR = {"kind": "char", "size": 1}

FLOW_BTF = {
    "kind": "struct",
    "name": "flow",
    "size": 12,
    "members": [
        {"name": "saddr", "offset": 0, "bit_offset": 0, "bit_size": 0, "type": U32},
        {"name": "dport", "offset": 4, "bit_offset": 0, "bit_size": 0, "type": U16},
        {"name": "proto", "offset": 6, "bit_offset": 0, "bit_size": 0,
         "type": {"kind": "int", "size": 1, "signed": False, "name": "__u8"}},
        {"name": "flags", "offset": 8, "bit_offset": 0, "bit_size": 0,
         "type": {"kind": "enum", "size": 4, "signed": False, "name": "fl",
                  "values": {"SYN": 1, "ACK": 2}}},
    ],
}  # fmt: skip

EVENT_BTF = {
    "kind": "struct",
    "name": "event",
    "size": 40,
    "members": [
        {"name": "pid", "offset": 0, "bit_offset": 0, "bit_size": 0,
         "type": {"kind": "typedef", "name": "pid_t", "type": S32}},
        {"name": "comm", "offset": 4, "bit_offset": 0, "bit_size": 0,
         "type": {"kind": "array", "len": 8, "elem": CHAR, "size": 8}},
        {"name": "hist", "offset": 12, "bit_offset": 0, "bit_size": 0,
         "type": {"kind": "array", "len": 3, "elem": U32, "size": 12}},
        {"name": "ratio", "offset": 24, "bit_offset": 0, "bit_size": 0,
         "type": {"kind": "float", "size": 8}},
        {"name": "", "offset": 32, "bit_offset": 0, "bit_size": 0,
         "type": {"kind": "union", "size": 4, "members": [
             {"name": "as_int", "offset": 0, "bit_offset": 0, "bit_size": 0, "type": U32},
             {"name": "low", "offset": 0, "bit_offset": 0, "bit_size": 0, "type": U16},
         ]}},
        {"name": "a", "offset": 36, "bit_offset": 0, "bit_size": 3, "type": U32},
        {"name": "b", "offset": 36, "bit_offset": 3, "bit_size": 5,
         "type": {"kind": "int", "size": 4, "signed": True, "name": "int"}},
        {"name": "ok", "offset": 37, "bit_offset": 0, "bit_size": 0,
         "type": {"kind": "bool", "size": 1}},
    ],
}  # fmt: skip


def test_btf_scalars_read_and_write_python_ints() -> None:
    m = maps.HashMap(U32, U64, 8, name="btf")
    m[1] = 2**40
    assert m[1] == 2**40
    assert m.key_type == "__u32"
    with pytest.raises(ebpfvm.MapError, match="out of range for __u32"):
        m[-1] = 0


def test_btf_structs_decode_to_attribute_objects() -> None:
    m = maps.HashMap(FLOW_BTF, U64, 8, name="flows")
    assert m.key_size == 12
    m[{"saddr": 0x0A000001, "dport": 80, "proto": 6, "flags": "SYN"}] = 1
    (key,) = list(m)
    assert (key.saddr, key.dport, key.proto, key.flags) == (0x0A000001, 80, 6, 1)
    assert type(key).__name__ == "flow" and isinstance(key, maps.Struct)
    assert m[key] == 1  # a decoded struct encodes back
    assert {key: 1} == {key: 1} and hash(key) == hash(m.keys()[0])
    assert key._asdict() == {"saddr": 0x0A000001, "dport": 80, "proto": 6, "flags": 1}
    m[(2, 53, 17, 0)] = 5  # a tuple in member order works too
    assert m[{"saddr": 2, "dport": 53, "proto": 17}] == 5  # missing members are zero
    with pytest.raises(ebpfvm.MapError, match="no member 'port'"):
        m[{"port": 1}] = 0
    with pytest.raises(ebpfvm.MapError, match=r"key\.dport 70000 is out of range"):
        m[{"dport": 70000}] = 0


def test_btf_nested_types_bitfields_and_anonymous_unions() -> None:
    m = maps.ArrayMap("u32", EVENT_BTF, 2, name="events")
    assert m.value_size == 40
    m[0] = {
        "pid": -7,
        "comm": b"python",
        "hist": [1, 2, 3],
        "ratio": 0.5,
        "as_int": 0x12345678,
        "a": 5,
        "b": -3,
        "ok": True,
    }
    v = m[0]
    assert v.pid == -7 and v.comm == b"python" and v.hist == [1, 2, 3] and v.ratio == 0.5
    assert v.as_int == 0x12345678 and v.low == 0x5678
    assert (v.a, v.b, v.ok) == (5, -3, 1)
    raw = m.core.lookup((0).to_bytes(4, "little"))
    assert raw is not None
    assert raw[36] == (5 | ((-3 & 0x1F) << 3))
    v.pid = 9
    m[1] = v  # what was read can be written back
    assert m[1].pid == 9 and m[1].comm == b"python"
    with pytest.raises(ebpfvm.MapError, match="does not fit in 3 bits"):
        m[0] = {"a": 8}
    with pytest.raises(ebpfvm.MapError, match="holds 8 chars"):
        m[0] = {"comm": b"123456789"}


def test_bad_btf_descriptions_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        maps.HashMap({"kind": "wat", "size": 4}, "u32", 4)
    with pytest.raises(ValueError, match="no size"):
        maps.HashMap({"kind": "struct", "members": []}, "u32", 4)


def test_byte_arrays_take_bytes() -> None:
    mac = {
        "kind": "struct",
        "name": "hop",
        "size": 8,
        "members": [
            {"name": "dmac", "offset": 0, "bit_offset": 0, "bit_size": 0,
             "type": {"kind": "array", "len": 6, "size": 6,
                      "elem": {"kind": "int", "size": 1, "signed": False}}},
            {"name": "port", "offset": 6, "bit_offset": 0, "bit_size": 0, "type": U16},
        ],
    }  # fmt: skip
    m = maps.ArrayMap("u32", mac, 1, name="hops")
    m[0] = {"dmac": b"\x02\xaa\x00\x00\x00\x01", "port": 7}
    assert m[0].dmac == [2, 0xAA, 0, 0, 0, 1] and m[0].port == 7
    with pytest.raises(ebpfvm.MapError, match="has 6 elements, got 7 bytes"):
        m[0] = {"dmac": bytes(7)}


def test_int_maps_take_any_int_like_key() -> None:
    class Proto(enum.IntEnum):
        TCP = 6

    m = maps.HashMap("u32", "i64", 8, name="ints")
    m[np.uint32(6)] = np.int64(-5)
    assert m[Proto.TCP] == -5 and m[6] == -5 and Proto.TCP in m
    m[True] = 1  # bool is an int, as for struct.pack
    assert m[1] == 1
    assert m.core.lookup((6).to_bytes(4, "little")) == (-5).to_bytes(8, "little", signed=True)
    with pytest.raises(TypeError, match="ints"):
        m[1.5] = 0
    with pytest.raises(TypeError, match="ints"):
        m[1] = "x"
    with pytest.raises(ebpfvm.MapError, match=r"map 'ints'.*-2\b.*out of range for u32"):
        m.get(-2)
    assert m.get(7, "dflt") == "dflt"
    assert 2**40 not in m
