"""The Linux kernel as an oracle: load a BPF object with the system's libbpf
(through ctypes) and run its programs with BPF_PROG_TEST_RUN, so that tests
can compare ebpfvm with what the kernel itself does on the same packets.

Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), a kernel that allows
the bpf() system call here, and libbpf's shared library (Debian: libbpf1,
installed with libbpf-dev). ``kernel_unavailable()`` says why it cannot run.
Programs are only loaded and test-run, never attached to anything.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
from pathlib import Path

_LIBBPF_NAMES = ("libbpf.so.1", "libbpf.so")
_c_void_p = ctypes.c_void_p


class _TestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts (libbpf >= 0.7)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", _c_void_p),
        ("data_out", _c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", _c_void_p),
        ("ctx_out", _c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


def _load_libbpf() -> ctypes.CDLL | None:
    for name in _LIBBPF_NAMES:
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        signatures = {
            "bpf_object__open_file": (_c_void_p, [ctypes.c_char_p, _c_void_p]),
            "bpf_object__load": (ctypes.c_int, [_c_void_p]),
            "bpf_object__close": (None, [_c_void_p]),
            "bpf_object__next_map": (_c_void_p, [_c_void_p, _c_void_p]),
            "bpf_map__name": (ctypes.c_char_p, [_c_void_p]),
            "bpf_map__fd": (ctypes.c_int, [_c_void_p]),
            "bpf_map__key_size": (ctypes.c_uint32, [_c_void_p]),
            "bpf_map__value_size": (ctypes.c_uint32, [_c_void_p]),
            "bpf_map__initial_value": (_c_void_p, [_c_void_p, ctypes.POINTER(ctypes.c_size_t)]),
            "bpf_map__set_initial_value": (ctypes.c_int, [_c_void_p, _c_void_p, ctypes.c_size_t]),
            "bpf_object__find_program_by_name": (_c_void_p, [_c_void_p, ctypes.c_char_p]),
            "bpf_program__fd": (ctypes.c_int, [_c_void_p]),
            "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, _c_void_p, _c_void_p]),
            "bpf_map_update_elem": (
                ctypes.c_int,
                [ctypes.c_int, _c_void_p, _c_void_p, ctypes.c_uint64],
            ),
            "bpf_map_delete_elem": (ctypes.c_int, [ctypes.c_int, _c_void_p]),
            "bpf_map_get_next_key": (ctypes.c_int, [ctypes.c_int, _c_void_p, _c_void_p]),
            "bpf_prog_test_run_opts": (ctypes.c_int, [ctypes.c_int, _c_void_p]),
            "libbpf_num_possible_cpus": (ctypes.c_int, []),
            "libbpf_set_print": (_c_void_p, [_c_void_p]),
            "bpf_object__next_program": (_c_void_p, [_c_void_p, _c_void_p]),
            "bpf_program__set_log_buf": (ctypes.c_int, [_c_void_p, _c_void_p, ctypes.c_size_t]),
            "bpf_program__set_log_level": (ctypes.c_int, [_c_void_p, ctypes.c_uint32]),
        }
        try:
            for func, (restype, argtypes) in signatures.items():
                getattr(lib, func).restype = restype
                getattr(lib, func).argtypes = argtypes
        except AttributeError:
            continue
        lib.libbpf_set_print(None)  # keep libbpf's own logging off the test output
        return lib
    return None


_LIB = _load_libbpf()


def kernel_unavailable() -> str | None:
    """Why the kernel cannot be used as an oracle here, or None if it can."""
    if _LIB is None:
        return "libbpf's shared library (libbpf1) is not installed"
    # BPF_MAP_CREATE of a one-entry array: the cheapest probe of bpf().
    attr = ctypes.create_string_buffer(struct.pack("<IIII", 2, 4, 8, 1) + bytes(112))
    libc = ctypes.CDLL(None, use_errno=True)
    nr_bpf = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)
    if nr_bpf is None:
        return f"bpf() system call number unknown on {os.uname().machine}"
    fd = libc.syscall(nr_bpf, 0, attr, len(attr))
    if fd < 0:
        return f"bpf() is not permitted here: {os.strerror(ctypes.get_errno())}"
    os.close(fd)
    return None


def elf_symbol(path: Path, name: str) -> tuple[str, int]:
    """(section name, value) of the symbol ``name`` in a 64-bit little-endian
    ELF object: where a global variable lives in its data section."""
    data = path.read_bytes()
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]

    def string(table: int, offset: int) -> str:
        start = sections[table][4] + offset
        return data[start : data.index(b"\0", start)].decode()

    symtab = next(i for i, s in enumerate(sections) if s[1] == 2)  # SHT_SYMTAB
    _, _, _, _, sym_off, sym_size, strtab, _, _, entsize = sections[symtab]
    for pos in range(sym_off, sym_off + sym_size, entsize):
        st_name, _info, _other, st_shndx, st_value, _size = struct.unpack_from("<IBBHQQ", data, pos)
        if st_name and string(strtab, st_name) == name:
            return string(shstrndx, sections[st_shndx][0]), st_value
    raise KeyError(f"{path.name} has no symbol {name}")


class KernelObject:
    """A BPF object loaded into the running kernel."""

    def __init__(self, path: Path, rodata: dict[str, bytes] | None = None) -> None:
        assert _LIB is not None
        self.path = path
        self._obj = _LIB.bpf_object__open_file(str(path).encode(), None)
        if not self._obj:
            raise OSError(ctypes.get_errno(), f"libbpf cannot open {path}")
        self._maps: dict[str, int] = {}
        m = None
        while True:
            m = _LIB.bpf_object__next_map(self._obj, m)
            if not m:
                break
            self._maps[_LIB.bpf_map__name(m).decode()] = m
        for var, value in (rodata or {}).items():
            section, offset = elf_symbol(path, var)
            self._patch_initial_value(section, offset, value)
        err = _LIB.bpf_object__load(self._obj)
        if err:
            _LIB.bpf_object__close(self._obj)
            raise OSError(-err, f"the kernel refused {path.name}: {os.strerror(-err)}")
        self.num_cpus = _LIB.libbpf_num_possible_cpus()

    def close(self) -> None:
        if self._obj:
            _LIB.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> KernelObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _map(self, name: str) -> int:
        # libbpf names global-data maps "<object prefix>.<section>".
        for map_name, m in self._maps.items():
            if map_name == name or (name.startswith(".") and map_name.endswith(name)):
                return m
        raise KeyError(f"no map {name} in {sorted(self._maps)}")

    def _patch_initial_value(self, section: str, offset: int, value: bytes) -> None:
        m = self._map(section)
        size = ctypes.c_size_t()
        current = _LIB.bpf_map__initial_value(m, ctypes.byref(size))
        buf = bytearray(ctypes.string_at(current, size.value))
        buf[offset : offset + len(value)] = value
        raw = ctypes.create_string_buffer(bytes(buf), len(buf))
        assert _LIB.bpf_map__set_initial_value(m, raw, len(buf)) == 0

    def lookup(self, map_name: str, key: bytes, *, percpu: bool = False) -> bytes | None:
        """The value's bytes (per-CPU maps: every CPU's value, each padded to
        8 bytes, as the kernel returns them), or None for a missing key."""
        m = self._map(map_name)
        size = _LIB.bpf_map__value_size(m)
        if percpu:
            size = (size + 7) // 8 * 8 * self.num_cpus
        value = ctypes.create_string_buffer(size)
        k = ctypes.create_string_buffer(key, len(key))
        if _LIB.bpf_map_lookup_elem(_LIB.bpf_map__fd(m), k, value):
            return None
        return value.raw

    def update(self, map_name: str, key: bytes, value: bytes, flags: int = 0) -> None:
        m = self._map(map_name)
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        err = _LIB.bpf_map_update_elem(_LIB.bpf_map__fd(m), k, v, flags)
        if err:
            raise OSError(-err, f"update of {map_name} failed")

    def delete(self, map_name: str, key: bytes) -> None:
        m = self._map(map_name)
        k = ctypes.create_string_buffer(key, len(key))
        err = _LIB.bpf_map_delete_elem(_LIB.bpf_map__fd(m), k)
        if err:
            raise OSError(-err, f"delete from {map_name} failed")

    def items(self, map_name: str) -> dict[bytes, bytes]:
        m = self._map(map_name)
        fd = _LIB.bpf_map__fd(m)
        key_size = _LIB.bpf_map__key_size(m)
        out: dict[bytes, bytes] = {}
        prev = None
        while True:
            key = ctypes.create_string_buffer(key_size)
            if _LIB.bpf_map_get_next_key(fd, prev, key):
                return out
            value = self.lookup(map_name, key.raw)
            if value is not None:
                out[key.raw] = value
            prev = key

    def program_fd(self, name: str) -> int:
        prog = _LIB.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise KeyError(f"no program {name} in {self.path.name}")
        return _LIB.bpf_program__fd(prog)

    def run(self, prog: str, data: bytes, *, ctx_out_size: int = 0) -> tuple[int, bytes, bytes]:
        """BPF_PROG_TEST_RUN once: (r0, the packet after the run, the context
        after the run when ``ctx_out_size`` asks for it)."""
        opts = _TestRunOpts()
        opts.sz = ctypes.sizeof(_TestRunOpts)
        data_in = ctypes.create_string_buffer(data, max(len(data), 1))
        data_out = ctypes.create_string_buffer(len(data) + 256)
        opts.data_in = ctypes.cast(data_in, _c_void_p)
        opts.data_size_in = len(data)
        opts.data_out = ctypes.cast(data_out, _c_void_p)
        opts.data_size_out = len(data_out)
        ctx_out = ctypes.create_string_buffer(max(ctx_out_size, 1))
        if ctx_out_size:
            opts.ctx_out = ctypes.cast(ctx_out, _c_void_p)
            opts.ctx_size_out = ctx_out_size
        opts.repeat = 1
        err = _LIB.bpf_prog_test_run_opts(self.program_fd(prog), ctypes.byref(opts))
        if err:
            raise OSError(-err, f"test run of {prog} failed: {os.strerror(-err)}")
        return (
            opts.retval,
            data_out.raw[: opts.data_size_out],
            ctx_out.raw[:ctx_out_size],
        )


def kernel_verdict(path: Path) -> tuple[bool, str]:
    """Loads the object's programs into the kernel with verifier log level 1:
    (whether the kernel accepted them, the verifier's log)."""
    assert _LIB is not None
    obj = _LIB.bpf_object__open_file(str(path).encode(), None)
    if not obj:
        raise OSError(ctypes.get_errno(), f"libbpf cannot open {path}")
    try:
        log = ctypes.create_string_buffer(1 << 22)
        prog = _LIB.bpf_object__next_program(obj, None)
        assert prog, f"{path.name} has no program"
        assert _LIB.bpf_program__set_log_buf(prog, log, len(log)) == 0
        assert _LIB.bpf_program__set_log_level(prog, 1) == 0
        err = _LIB.bpf_object__load(obj)
        return err == 0, log.value.decode(errors="replace")
    finally:
        _LIB.bpf_object__close(obj)


def failing_pc(log: str) -> int:
    """The instruction a kernel verifier log stops at: the last one it shows."""
    pcs = re.findall(r"^(\d+): \(", log, re.MULTILINE)
    if not pcs:
        raise ValueError(f"no instruction in the log:\n{log[-2000:]}")
    return int(pcs[-1])
