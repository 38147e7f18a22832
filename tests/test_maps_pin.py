"""Pinned maps: file-backed, shared between processes, surviving SIGKILL."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import ebpfvm
import pytest
from ebpfvm import maps


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(code: str, *args: str) -> str:
    p = _python(code, *args)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return out


WRITER = """
    import sys
    from ebpfvm import maps
    m = maps.HashMap("u32", "u64", 4096, name="shared", pin=sys.argv[1])
    m.update_batch({i: i * 3 for i in range(1000)})
    for i in range(1000, 2000):
        m[i] = i * 3
    a = maps.ArrayMap("u32", "u32", 16, name="arr", pin=sys.argv[2])
    a.as_numpy()[:] = 7
    a[3] = 33
    print("done", flush=True)
"""

READER = """
    import sys
    from ebpfvm import maps
    m = maps.HashMap.pinned(sys.argv[1], "u32", "u64", 4096, name="shared")
    a = maps.ArrayMap.pinned(sys.argv[2], "u32", "u32", 16)
    ok = len(m) == 2000 and all(m[i] == i * 3 for i in range(2000))
    print(len(m), ok, a.values())
"""


def test_a_second_process_reads_what_the_first_wrote(tmp_path: Path) -> None:
    h, a = str(tmp_path / "h.map"), str(tmp_path / "a.map")
    assert _run(WRITER, h, a).strip() == "done"
    out = _run(READER, h, a).split(" ", 2)
    assert out[:2] == ["2000", "True"]
    assert out[2].strip() == str([7, 7, 7, 33] + [7] * 12)


def test_updates_survive_the_writer_being_killed(tmp_path: Path) -> None:
    h, a = str(tmp_path / "h.map"), str(tmp_path / "a.map")
    writer = _python(textwrap.dedent(WRITER) + "import time\ntime.sleep(600)\n", h, a)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "done"
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=60) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    m = maps.HashMap("u32", "u64", 4096, name="shared", pin=h)
    assert len(m) == 2000
    assert m.lookup_batch(range(2000)) == [i * 3 for i in range(2000)]
    assert maps.ArrayMap("u32", "u32", 16, pin=a)[3] == 33
    # the map stays usable after its writer died (its lock is taken over)
    m[5000 % 4096] = 1
    assert m[5000 % 4096] == 1


def test_both_processes_see_each_others_updates(tmp_path: Path) -> None:
    path = str(tmp_path / "live.map")
    m = maps.HashMap("u32", "u64", 64, pin=path)
    m[1] = 1
    out = _run(
        """
        import sys
        from ebpfvm import maps
        m = maps.HashMap("u32", "u64", 64, pin=sys.argv[1])
        m[2] = m[1] + 41
        print(m[1])
        """,
        path,
    )
    assert out.strip() == "1"
    assert m[2] == 42  # written by the other process into the same file


def test_pin_path_and_reopen_in_process(tmp_path: Path) -> None:
    path = tmp_path / "p.map"
    m = maps.ArrayMap("u32", "u64", 8, pin=path)
    assert m.pin_path == str(path) and path.exists()
    m[0] = 99
    del m
    again = maps.ArrayMap("u32", "u64", 8, pin=path)
    assert again[0] == 99


def test_a_pin_with_another_definition_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "def.map"
    maps.HashMap("u32", "u64", 8, pin=path, name="orig")
    with pytest.raises(ebpfvm.MapError) as e:
        maps.HashMap("u32", "u32", 8, pin=path, name="other")
    assert e.value.map_name == "other"
    with pytest.raises(ebpfvm.MapError):
        maps.ArrayMap("u32", "u64", 8, pin=path)


def test_unpinnable_types_and_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ebpfvm.MapError):
        maps.HashMap("u32", "u64", 8, pin=tmp_path / "missing-dir" / "x.map")
    with pytest.raises(ebpfvm.MapError) as e:
        maps.QueueMap("u32", 8, pin=tmp_path / "q.map")
    assert e.value.errno in (errno.EOPNOTSUPP, errno.EINVAL)


def test_open_a_pin_by_path_alone(tmp_path: Path) -> None:
    path = tmp_path / "counts.map"
    m = maps.HashMap("u32", "u64", 64, name="counts", pin=path, flags=0)
    m[3] = 30
    again = maps.Map.pinned(path, key_type="u32", value_type="u64")
    assert isinstance(again, maps.HashMap)
    assert (again.key_size, again.value_size, again.max_entries) == (4, 8, 64)
    assert again[3] == 30 and again.name == "counts"
    raw = maps.HashMap.pinned(path)
    assert raw[(3).to_bytes(4, "little")] == (30).to_bytes(8, "little")
    with pytest.raises(ebpfvm.MapError, match="holds a 'hash' map, not 'array'"):
        maps.ArrayMap.pinned(path)
    with pytest.raises(ebpfvm.MapError, match="cannot open pinned map") as e:
        maps.Map.pinned(tmp_path / "missing.map")
    assert e.value.errno == errno.ENOENT
    (tmp_path / "junk.map").write_bytes(b"not a map at all, really not" * 4)
    with pytest.raises(ebpfvm.MapError, match="is not a pinned ebpfvm map"):
        maps.Map.pinned(tmp_path / "junk.map")
