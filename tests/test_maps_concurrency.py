"""Maps under concurrent use from Python threads."""

from __future__ import annotations

import threading

from ebpfvm import maps


def _run_threads(n: int, target) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_threads_inserting_disjoint_keys() -> None:
    m = maps.HashMap("u32", "u64", 8 * 2000)

    def work(i: int) -> None:
        for k in range(2000):
            m[i * 2000 + k] = k

    _run_threads(8, work)
    assert len(m) == 8 * 2000
    assert sum(m.values()) == 8 * sum(range(2000))


def test_threads_updating_shared_keys_and_deleting() -> None:
    m = maps.HashMap("u32", "u64", 64)

    def work(i: int) -> None:
        for r in range(3000):
            k = (r + i) % 64
            m[k] = r
            if r % 7 == 0:
                m.pop(k, None)
            m.get((k + 1) % 64)
            if r % 500 == 0:
                m.items()

    _run_threads(6, work)
    assert len(m) <= 64
    assert all(0 <= k < 64 for k in m)


def test_threads_batching_into_one_array() -> None:
    a = maps.ArrayMap("u32", "u64", 4096)

    def work(i: int) -> None:
        for _ in range(20):
            a.update_batch({k: i + 1 for k in range(i, 4096, 8)})

    _run_threads(8, work)
    values = a.values()
    assert all(values[k] == k % 8 + 1 for k in range(4096))


def test_threads_on_a_queue_lose_nothing() -> None:
    q = maps.QueueMap("u32", 100_000)

    def work(i: int) -> None:
        for k in range(5000):
            q.push(i * 5000 + k)

    _run_threads(4, work)
    got = []
    while q:
        got.append(q.pop())
    assert sorted(got) == list(range(20000))
