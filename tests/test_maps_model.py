"""Map views against a Python model: random operation sequences must give
the same answers as a dict with the kernel's rules."""

from __future__ import annotations

import errno

import ebpfvm
import pytest
from ebpfvm import maps
from hypothesis import given, settings
from hypothesis import strategies as st

KEYS = st.integers(0, 40)
VALUES = st.integers(0, 2**64 - 1)
FLAGS = st.sampled_from([maps.BPF_ANY, maps.BPF_NOEXIST, maps.BPF_EXIST])

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("update"), KEYS, VALUES, FLAGS),
        st.tuples(st.just("delete"), KEYS),
        st.tuples(st.just("lookup"), KEYS),
        st.tuples(st.just("batch_update"), st.lists(st.tuples(KEYS, VALUES), max_size=8)),
        st.tuples(st.just("batch_lookup"), st.lists(KEYS, max_size=8)),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


def _errno(fn) -> int | None:  # type: ignore[no-untyped-def]
    try:
        fn()
    except ebpfvm.MapError as e:
        return e.errno
    return None


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_hash_map_matches_the_model(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    cap = 16
    m = maps.HashMap("u32", "u64", cap, name="model")
    model: dict[int, int] = {}
    for op in ops:
        if op[0] == "update":
            _, k, v, flags = op
            if flags == maps.BPF_NOEXIST and k in model:
                want: int | None = errno.EEXIST
            elif flags == maps.BPF_EXIST and k not in model:
                want = errno.ENOENT
            elif k not in model and len(model) >= cap:
                want = errno.E2BIG
            else:
                want = None
                model[k] = v
            assert _errno(lambda k=k, v=v, flags=flags: m.update_elem(k, v, flags)) == want
        elif op[0] == "delete":
            if op[1] in model:
                del m[op[1]]
                del model[op[1]]
            else:
                with pytest.raises(KeyError):
                    del m[op[1]]
        elif op[0] == "lookup":
            assert m.get(op[1]) == model.get(op[1])
        elif op[0] == "batch_update":
            pairs = op[1]
            stored = 0
            for k, v in pairs:
                if k not in model and len(model) >= cap:
                    break
                model[k] = v
                stored += 1
            err = _errno(lambda pairs=pairs: m.update_batch(pairs))
            assert err == (errno.E2BIG if stored < len(pairs) else None)
        elif op[0] == "batch_lookup":
            assert m.lookup_batch(op[1]) == [model.get(k) for k in op[1]]
        else:
            m.clear()
            model.clear()
        assert len(m) == len(model)
    assert dict(m.items()) == model


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.binary(min_size=3, max_size=3)), max_size=40))
def test_array_of_raw_values_matches_the_model(writes: list[tuple[int, bytes]]) -> None:
    a = maps.ArrayMap("u32", None, 10, value_size=3)
    model = [bytes(3)] * 10
    for i, v in writes:
        a[i] = v
        model[i] = v
    assert a.values() == model
    assert a.as_numpy().tobytes() == b"".join(v for v in model)
    assert [bytes(row) for row in a.as_numpy()] == model


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=24), st.binary(max_size=24))
def test_raw_bytes_of_any_size_never_crash(key: bytes, value: bytes) -> None:
    m = maps.HashMap(None, None, 4, key_size=8, value_size=8, name="raw")
    ok = len(key) == 8 and len(value) == 8
    try:
        m[key] = value
    except ebpfvm.MapError as e:
        assert not ok and e.errno == errno.EINVAL and "raw" in str(e)
    else:
        assert ok and m[key] == value
    with pytest.raises(ebpfvm.MapError):
        m.core.update(key if len(key) != 8 else key + b"x", value)
    with pytest.raises(ebpfvm.MapError, match="8-byte keys, got 9 bytes"):
        m.core.lookup(b"\0" * 9)
