"""Per-CPU maps: one slot per virtual CPU, reductions."""

from __future__ import annotations

import threading

import ebpfvm
import pytest
from ebpfvm import maps


def test_percpu_array_values_are_lists_per_cpu() -> None:
    pc = maps.PerCpuArrayMap("u32", "u64", 4, name="pc")
    n = pc.num_cpus
    assert n >= 1 and pc.map_type == "percpu_array"
    assert pc[0] == [0] * n
    pc[0] = list(range(1, n + 1))
    assert pc[0] == list(range(1, n + 1))
    assert pc.sum(0) == n * (n + 1) // 2
    assert pc.max(0) == n and pc.min(0) == 1
    assert pc.average(0) == (n + 1) / 2
    pc[1] = 7  # one value: stored in every CPU's slot
    assert pc[1] == [7] * n
    with pytest.raises(ebpfvm.MapError, match=f"needs {n} values"):
        pc[2] = [1] * (n + 1)
    del pc[0]
    assert pc[0] == [0] * n
    assert [k for k, _ in pc.items()] == [0, 1, 2, 3]
    pc.clear()
    assert pc.values() == [[0] * n] * 4


def test_percpu_slots_are_padded_to_8_bytes() -> None:
    pc = maps.PerCpuArrayMap("u32", "u32", 2, name="pad")
    n = pc.num_cpus
    assert pc.core.user_value_size == 8 * n
    pc[1] = list(range(n))
    raw = pc.core.lookup((1).to_bytes(4, "little"))
    assert raw is not None
    assert [int.from_bytes(raw[i * 8 : i * 8 + 4], "little") for i in range(n)] == list(range(n))
    assert pc.lookup_batch([0, 1, 5]) == [[0] * n, list(range(n)), None]


def test_percpu_hash_and_lru_percpu_hash() -> None:
    for cls, kind in [
        (maps.PerCpuHashMap, "percpu_hash"),
        (maps.LruPerCpuHashMap, "lru_percpu_hash"),
    ]:
        m = cls("u32", "i32", 8, name=kind)
        n = m.num_cpus
        assert m.map_type == kind
        m[5] = -1
        assert m[5] == [-1] * n and m.sum(5) == -n
        m.update_batch({6: [2] * n, 7: 3})
        assert sorted(m.items()) == [(5, [-1] * n), (6, [2] * n), (7, [3] * n)]
        del m[5]
        with pytest.raises(KeyError):
            m[5]
        with pytest.raises(KeyError):
            m.sum(5)


def test_num_cpus_setting() -> None:
    before = maps.num_cpus()
    assert before >= 1
    with pytest.raises(ValueError, match="between 1 and 4096"):
        maps.set_num_cpus(0)
    assert maps.num_cpus() == before


# Increments the u64 at index 0 of per-CPU array map 0 (this CPU's slot).
INCREMENT = """
stw [%r10-4], 0
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
call 1
jeq %r0, 0, +3
ldxdw %r1, [%r0]
add %r1, 1
stxdw [%r0], %r1
mov %r0, 0
exit
"""


def test_programs_on_threads_count_per_cpu_and_sum_adds_up() -> None:
    pc = maps.PerCpuArrayMap("u32", "u64", 1, name="runs")
    exe = ebpfvm.Program.from_asm(INCREMENT, maps=[pc]).load(engine="interpreter")
    packet = bytes(8)
    runs_per_thread = 500

    def work() -> None:
        for _ in range(runs_per_thread):
            exe.run(packet)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pc.sum(0) == 4 * runs_per_thread
    per_cpu = pc[0]
    assert len(per_cpu) == pc.num_cpus
    # each thread keeps one virtual CPU, so every slot holds whole threads' runs
    assert all(v % runs_per_thread == 0 for v in per_cpu)
    assert pc.max(0) >= runs_per_thread
