"""Queue, stack and bloom filter maps."""

from __future__ import annotations

import errno

import ebpfvm
import pytest
from ebpfvm import maps


def test_queue_is_fifo() -> None:
    q = maps.QueueMap("u32", 3, name="q")
    assert q.map_type == "queue" and q.key_size == 0 and q.value_size == 4
    assert len(q) == 0 and not q
    for v in (1, 2, 3):
        q.push(v)
    assert len(q) == 3
    with pytest.raises(ebpfvm.MapError) as e:
        q.push(4)
    assert e.value.map_name == "q" and e.value.errno in (errno.E2BIG, errno.ENOSPC)
    assert q.peek() == 1
    assert [q.pop(), q.pop(), q.pop()] == [1, 2, 3]
    with pytest.raises(KeyError, match="empty"):
        q.pop()
    with pytest.raises(KeyError, match="empty"):
        q.peek()


def test_full_queue_with_bpf_exist_drops_the_oldest() -> None:
    q = maps.QueueMap("u32", 2)
    q.push(1)
    q.push(2)
    q.push(3, flags=maps.BPF_EXIST)
    assert [q.pop(), q.pop()] == [2, 3]


def test_stack_is_lifo() -> None:
    s = maps.StackMap("u64", 4, name="s")
    assert s.map_type == "stack"
    for v in (10, 20, 30):
        s.push(v)
    assert s.peek() == 30
    assert [s.pop(), s.pop(), s.pop()] == [30, 20, 10]
    with pytest.raises(KeyError):
        s.pop()


def test_bloom_filter_has_no_false_negatives() -> None:
    bf = maps.BloomFilterMap("u32", 100, nr_hashes=3, name="bf")
    assert bf.map_type == "bloom_filter" and bf.core.map_extra == 3
    for v in range(0, 100, 3):
        bf.add(v)
    assert all(v in bf for v in range(0, 100, 3))
    absent = sum(1 for v in range(1000, 2000) if v not in bf)
    assert absent > 900  # a filter sized for 100 entries rarely says yes


def test_queue_of_structs() -> None:
    q = maps.QueueMap("<IH", 4)
    q.push((1, 2))
    assert q.pop() == (1, 2)
