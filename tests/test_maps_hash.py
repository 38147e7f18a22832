"""Hash, LRU hash and array map views: dict semantics, flags, errors, batches."""

from __future__ import annotations

import errno

import ebpfvm
import pytest
from ebpfvm import maps


def test_hash_map_is_a_dict_of_ints() -> None:
    m = maps.HashMap("u32", "u64", max_entries=16, name="counts")
    m[1] = 10
    m[2] = 20
    assert m[1] == 10 and isinstance(m[1], int)
    assert len(m) == 2
    assert 1 in m and 3 not in m
    assert sorted(m) == [1, 2]
    assert sorted(m.items()) == [(1, 10), (2, 20)]
    assert sorted(m.values()) == [10, 20]
    assert m.get(3) is None and m.get(3, 7) == 7
    del m[1]
    assert 1 not in m and len(m) == 1
    assert dict(m) == {2: 20}
    m.clear()
    assert len(m) == 0 and list(m) == []


def test_missing_keys_raise_key_error_with_the_key() -> None:
    m = maps.HashMap("u32", "u64", 4)
    with pytest.raises(KeyError) as e:
        m[5]
    assert e.value.args == (5,)
    with pytest.raises(KeyError):
        del m[5]
    assert m.pop(5, "gone") == "gone"


def test_definition_attributes() -> None:
    m = maps.HashMap("u32", "u64", max_entries=1024, name="counts")
    assert m.map_type == "hash"
    assert (m.key_size, m.value_size, m.max_entries) == (4, 8, 1024)
    assert m.name == "counts" and m.flags == 0 and m.pin_path is None
    assert isinstance(m.id, int) and m.id > 0
    assert m.core.id == m.id and m.core.map_type == "hash"
    assert "counts" in repr(m) and "u32 -> u64" in repr(m)


def test_update_flags_follow_the_kernel() -> None:
    m = maps.HashMap("u32", "u32", 8, name="flags")
    m.update_elem(1, 1, flags=maps.BPF_NOEXIST)
    with pytest.raises(ebpfvm.MapError) as e:
        m.update_elem(1, 2, flags=maps.BPF_NOEXIST)
    assert e.value.errno == errno.EEXIST and e.value.map_name == "flags"
    assert "flags" in str(e.value)
    with pytest.raises(ebpfvm.MapError) as e:
        m.update_elem(2, 2, flags=maps.BPF_EXIST)
    assert e.value.errno == errno.ENOENT
    m.update_elem(1, 3, flags=maps.BPF_EXIST)
    assert m[1] == 3
    with pytest.raises(ebpfvm.MapError) as e:
        m.update_elem(1, 3, flags=maps.BPF_EXIST | maps.BPF_NOEXIST)
    assert e.value.errno == errno.EINVAL


def test_full_hash_map_rejects_new_keys_but_updates_old_ones() -> None:
    m = maps.HashMap("u32", "u32", 4, name="small")
    for i in range(4):
        m[i] = i
    with pytest.raises(ebpfvm.MapError) as e:
        m[99] = 1
    assert e.value.errno == errno.E2BIG and e.value.map_name == "small"
    m[3] = 33
    assert m[3] == 33 and len(m) == 4


def test_lru_hash_evicts_the_least_recently_used() -> None:
    m = maps.LruHashMap("u32", "u32", 4, name="lru")
    assert m.map_type == "lru_hash"
    for i in range(4):
        m[i] = i
    m[0] = 100  # an update counts as use (a lookup from user space does not)
    m[1]
    m[10] = 10
    assert len(m) == 4
    assert sorted(m) == [0, 2, 3, 10]  # 1 was the least recently used


def test_values_out_of_range_and_wrong_sizes_name_the_map() -> None:
    m = maps.HashMap("u8", "i16", 4, name="tiny")
    with pytest.raises(ebpfvm.MapError, match=r"map 'tiny'.*256.*out of range") as e:
        m[256] = 1
    assert e.value.errno == errno.EINVAL and e.value.map_name == "tiny"
    with pytest.raises(ebpfvm.MapError, match="out of range"):
        m[1] = 40000
    with pytest.raises(ebpfvm.MapError, match="out of range"):
        m[-1] = 0
    with pytest.raises(TypeError, match="tiny"):
        m["a"] = 1
    m[255] = -32768
    assert m[255] == -32768
    raw = maps.HashMap(None, None, 4, key_size=4, value_size=2, name="raw")
    with pytest.raises(ebpfvm.MapError, match=r"map 'raw'.*key must be 4 bytes, got 3"):
        raw[b"abc"] = b"xy"
    raw[b"abcd"] = bytearray(b"xy")
    assert raw[b"abcd"] == b"xy"


def test_wrong_keys_are_not_contained() -> None:
    m = maps.HashMap("u32", "u32", 4)
    m[1] = 1
    assert "x" not in m and -1 not in m and 2**40 not in m


def test_batches_are_one_call_each() -> None:
    m = maps.HashMap("u32", "u64", 1000, name="batch")
    m.update_batch({i: i * i for i in range(500)})
    assert len(m) == 500
    assert m.lookup_batch([3, 700, 499]) == [9, None, 499 * 499]
    m.update_batch([(1, 5), (2, 6)])
    assert (m[1], m[2]) == (5, 6)
    m.delete_batch(range(100))
    assert len(m) == 400 and 99 not in m and 100 in m
    with pytest.raises(KeyError) as e:
        m.delete_batch([100, 101, 5, 102])
    assert e.value.args == (5,)
    # keys before the missing one are deleted, the rest are not (kernel order)
    assert 100 not in m and 101 not in m and 102 in m


def test_update_batch_stops_at_the_first_failure() -> None:
    m = maps.HashMap("u32", "u32", 3, name="b")
    with pytest.raises(ebpfvm.MapError) as e:
        m.update_batch([(i, i) for i in range(5)])
    assert e.value.errno == errno.E2BIG and e.value.index == 3
    assert sorted(m) == [0, 1, 2]
    with pytest.raises(ebpfvm.MapError) as e:
        m.update_batch([(0, 1), (7, 1)], flags=maps.BPF_EXIST)
    assert e.value.errno == errno.ENOENT and e.value.index == 1
    assert m[0] == 1


def test_batch_with_bad_values_names_the_culprit() -> None:
    m = maps.HashMap("u32", "u8", 8, name="culprit")
    with pytest.raises(ebpfvm.MapError, match="300"):
        m.update_batch([(1, 1), (2, 300)])
    assert len(m) == 0


def test_next_key_walks_every_key() -> None:
    m = maps.HashMap("u32", "u32", 8)
    for i in (5, 6, 7):
        m[i] = i
    seen = []
    k = m.next_key()
    while k is not None:
        seen.append(k)
        k = m.next_key(k)
    assert sorted(seen) == [5, 6, 7]


def test_iteration_is_a_snapshot_so_deleting_while_iterating_works() -> None:
    m = maps.HashMap("u32", "u32", 64)
    m.update_batch([(i, i) for i in range(50)])
    for k in m:
        if k % 2:
            del m[k]
    assert sorted(m) == list(range(0, 50, 2))


def test_mutable_mapping_mixins() -> None:
    m = maps.HashMap("u32", "u32", 8)
    m.update({1: 2, 3: 4})
    assert m.setdefault(5, 6) == 6 and m[5] == 6
    assert m.pop(1) == 2 and 1 not in m
    assert m == {3: 4, 5: 6}


def test_array_map_indexes_always_exist() -> None:
    a = maps.ArrayMap("u32", "u64", 8, name="arr")
    assert a.map_type == "array"
    assert len(a) == 8
    assert list(a) == list(range(8))
    assert a[3] == 0
    a[3] = 42
    assert a[3] == 42
    del a[3]  # zeroes, as bcc does
    assert a[3] == 0 and 3 in a
    with pytest.raises(KeyError):
        a[8]
    with pytest.raises(KeyError):
        del a[8]
    with pytest.raises(ebpfvm.MapError) as e:
        a[8] = 1
    assert e.value.errno == errno.E2BIG
    with pytest.raises(ebpfvm.MapError) as e:
        a.update_elem(1, 1, flags=maps.BPF_NOEXIST)
    assert e.value.errno == errno.EEXIST
    a.update_batch({i: i + 1 for i in range(8)})
    assert a.values() == [1, 2, 3, 4, 5, 6, 7, 8]
    a.clear()
    assert a.values() == [0] * 8


def test_array_default_key_type_is_u32() -> None:
    a = maps.ArrayMap(value_type="u32", max_entries=4)
    assert a.key_size == 4
    a[2] = 9
    assert a.items()[2] == (2, 9)


def test_create_by_type_name_gives_the_right_view() -> None:
    m = maps.create("hash", key_size=4, value_size=8, max_entries=8, name="c")
    assert isinstance(m, maps.HashMap)
    m[b"\x01\0\0\0"] = b"\x02" + bytes(7)
    assert m[b"\x01\0\0\0"] == b"\x02" + bytes(7)
    typed = maps.create("lru_hash", 4, 8, 8, key_type="u32", value_type="u64")
    assert isinstance(typed, maps.LruHashMap)
    typed[1] = 2
    assert typed[1] == 2
    a = maps.create(2, 4, 4, 4, value_type="u32")  # the kernel's number works too
    assert isinstance(a, maps.ArrayMap)


def test_bad_definitions_raise_map_errors() -> None:
    with pytest.raises(ebpfvm.MapError, match="max_entries"):
        maps.HashMap("u32", "u32", 0, name="zero")
    with pytest.raises(ValueError, match="unknown map type"):
        maps.create("nope", 4, 4, 4)
    with pytest.raises(ebpfvm.MapError, match="4 bytes but the map's keys are 8 bytes"):
        maps.HashMap("u32", "u32", 4, key_size=8)
    with pytest.raises(ebpfvm.MapError, match="4-byte keys"):
        maps.ArrayMap("u64", "u32", 4, name="arr8")


def test_views_of_the_same_core_map_share_contents() -> None:
    m = maps.HashMap("u32", "u32", 8)
    other = maps.view(m.core, "u32", "u32")
    assert isinstance(other, maps.HashMap)
    m[1] = 5
    assert other[1] == 5
    assert maps.Map.by_id(m.id) is m
    assert ebpfvm._core.Map.by_id(m.id) == m.core


def test_pop_on_arrays_zeroes() -> None:
    a = maps.ArrayMap("u32", "u32", 4)
    a[1] = 5
    assert a.pop(1) == 5 and a[1] == 0
    assert a.pop(9, "none") == "none"
    with pytest.raises(KeyError):
        a.pop(9)


def test_the_base_class_points_to_the_ways_of_creating_maps() -> None:
    with pytest.raises(TypeError, match=r"maps\.create"):
        maps.Map("hash", "u32", "u32", 4)
