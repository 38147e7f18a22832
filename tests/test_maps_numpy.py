"""Zero-copy NumPy views of array maps."""

from __future__ import annotations

import ctypes
import gc

import ebpfvm
import numpy as np
import pytest
from ebpfvm import maps


def test_as_numpy_shares_memory_both_ways() -> None:
    a = maps.ArrayMap("u32", "u64", 16, name="np")
    view = a.as_numpy()
    assert view.dtype == np.uint64 and view.shape == (16,)
    view[:] = np.arange(16, dtype=np.uint64) * 3
    assert a[5] == 15  # numpy writes are in the map (what programs read)
    a[7] = 1000
    assert view[7] == 1000  # and map writes are in the array
    a.update_batch({0: 1, 1: 2})
    assert view[:2].tolist() == [1, 2]
    assert view.flags.writeable
    assert not view.flags.owndata


def test_array_view_keeps_the_map_alive() -> None:
    a = maps.ArrayMap("u32", "u32", 4)
    view = a.as_numpy()
    a[2] = 77
    del a
    gc.collect()
    assert view[2] == 77
    view[3] = 5
    assert view.sum() == 82


def test_values_not_multiple_of_8_are_strided_like_the_kernel() -> None:
    a = maps.ArrayMap("u32", "u32", 5)
    view = a.as_numpy()
    assert view.strides == (8,)
    view[4] = 123
    assert a[4] == 123 and a.values() == [0, 0, 0, 0, 123]


class Pair(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint32), ("y", ctypes.c_int32)]


def test_structured_and_raw_dtypes() -> None:
    a = maps.ArrayMap("u32", Pair, 3)
    view = a.as_numpy()
    assert view.dtype.names == ("x", "y")
    view["y"][1] = -4
    assert a[1].y == -4
    raw = maps.ArrayMap("u32", None, 2, value_size=3)
    rv = raw.as_numpy()
    assert rv.shape == (2, 3) and rv.dtype == np.uint8
    rv[1] = [1, 2, 3]
    assert raw[1] == b"\x01\x02\x03"
    btf = maps.ArrayMap(
        "u32",
        {
            "kind": "struct",
            "name": "s",
            "size": 8,
            "members": [
                {"name": "a", "offset": 0, "bit_offset": 0, "bit_size": 0,
                 "type": {"kind": "int", "size": 4, "signed": False}},
                {"name": "b", "offset": 4, "bit_offset": 0, "bit_size": 0,
                 "type": {"kind": "int", "size": 4, "signed": True}},
            ],
        },
        2,
    )  # fmt: skip
    bv = btf.as_numpy()
    bv["b"] = -1
    assert btf[0].b == -1 and btf[1].b == -1


def test_only_arrays_have_a_numpy_view() -> None:
    h = maps.HashMap("u32", "u32", 4, name="h")
    assert not hasattr(h, "as_numpy")
    with pytest.raises(ebpfvm.MapError, match="no contiguous value storage") as e:
        h.core.value_memory()
    assert e.value.map_name == "h"


def test_memoryview_of_map_memory() -> None:
    a = maps.ArrayMap("u32", "u8", 2)
    mem = a.core.value_memory()
    mv = memoryview(mem)
    assert mv.nbytes == 16 and not mv.readonly
    mv[8] = 9
    assert a[1] == 9
