"""Objects compiled with ``clang -target bpf``: :class:`Object`, the bcc-like
:class:`BPF` façade, and what running a program as its type returns.

An :class:`Object` is what libbpf's ``bpf_object`` is: the parsed file, its
maps (created when the object is opened, pinned ones reused), and its
programs, loaded together (so program arrays can be filled from their
``.maps`` initialisers) the first time one of them is loaded or run.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from enum import IntEnum
from typing import Any

from ebpfvm import _core
from ebpfvm._core import Error, Executable, MapError
from ebpfvm.maps import Map, view
from ebpfvm.maps._codec import Codec, make_codec

__all__ = [
    "BPF",
    "GlobalData",
    "Object",
    "ObjectProgram",
    "TcAction",
    "XdpAction",
    "read_trace",
]


class XdpAction(IntEnum):
    """What an XDP program returns (``enum xdp_action``)."""

    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


class TcAction(IntEnum):
    """What a tc (``sched_cls``) program returns (``TC_ACT_*``)."""

    UNSPEC = -1
    OK = 0
    RECLASSIFY = 1
    SHOT = 2
    PIPE = 3
    STOLEN = 4
    QUEUED = 5
    REPEAT = 6
    REDIRECT = 7


def read_trace(timeout: float | None = None) -> list[str]:
    """Lines ``bpf_trace_printk`` wrote since the last call, oldest first
    (the kernel's ``trace_pipe``); waits up to ``timeout`` seconds for the
    first line when there is none."""
    return _core.read_trace(timeout)


#: Map types whose keys are u32 indexes.
_INDEXED = frozenset(
    {
        "array",
        "percpu_array",
        "prog_array",
        "perf_event_array",
        "array_of_maps",
        "cgroup_array",
        "devmap",
        "cpumap",
        "xskmap",
        "sockmap",
    }
)


#: Map types whose declared value type is that of the records they carry.
_RECORD_STREAMS = frozenset({"perf_event_array", "ringbuf", "user_ringbuf"})


def default_pin_root() -> str:
    """Where maps pinned by name live unless ``pin_root`` says otherwise:
    ``$EBPFVM_PIN_ROOT``, else ``<tmp>/ebpfvm-bpffs`` (user space's stand-in
    for ``/sys/fs/bpf``)."""
    return os.environ.get("EBPFVM_PIN_ROOT") or os.path.join(tempfile.gettempdir(), "ebpfvm-bpffs")


class GlobalData:
    """The variables of a global data section (``.bss``, ``.data``,
    ``.rodata``, ``.data.<name>``, ...) by name, with their BTF types:
    ``obj.bss.counter``, ``obj.rodata.limit = 5``.

    ``.rodata`` is frozen once the object's programs are loaded, as libbpf
    freezes it: programs may rely on its values never changing.
    """

    def __init__(self, obj: Object, section: str, info: dict[str, Any]) -> None:
        codecs: dict[str, tuple[int, Codec]] = {}
        for var in info["vars"]:
            spec = var["type"] if var["type"] is not None else None
            codecs[var["name"]] = (
                var["offset"],
                make_codec(spec, var["size"], "value", f"{section}.{var['name']}"),
            )
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_section", section)
        object.__setattr__(self, "_vars", codecs)

    def _core(self) -> _core.Map:
        return self._obj.maps[self._section].core

    def _var(self, name: str) -> tuple[int, Codec]:
        try:
            return self._vars[name]
        except KeyError:
            raise AttributeError(
                f"section {self._section} has no variable {name!r} "
                f"(it has: {', '.join(sorted(self._vars)) or 'none'})"
            ) from None

    def __getattr__(self, name: str) -> Any:
        off, codec = self._var(name)
        raw = self._core().lookup(b"\0\0\0\0")
        assert raw is not None
        return codec.decode(raw[off : off + codec.size])

    def __setattr__(self, name: str, value: Any) -> None:
        off, codec = self._var(name)
        if self._section.startswith(".rodata") and self._obj.loaded:
            raise MapError(
                f"{self._section} is frozen: its programs are loaded and may "
                f"rely on {name} never changing; set it before the first load"
            )
        core = self._core()
        raw = bytearray(core.lookup(b"\0\0\0\0") or b"")
        raw[off : off + codec.size] = codec.encode(value)
        core.update(b"\0\0\0\0", bytes(raw), 0)

    def __dir__(self) -> list[str]:
        return sorted(self._vars)

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._vars}

    def __repr__(self) -> str:
        return f"<GlobalData {self._section}: {self.as_dict()!r}>"


class ObjectProgram:
    """A program of an :class:`Object`: its name, section and type, and
    ``load``/``run`` that go through the object, so every program of the
    object shares its maps and program arrays are filled before any runs.
    Everything else (``disassemble``, ``code``, ``functions``,
    ``helper_ids``, ``verify``, ...) is the underlying
    :class:`ebpfvm.Program`'s, available as ``.program``."""

    def __init__(self, obj: Object, program: _core.Program) -> None:
        self._obj = obj
        self.program = program

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def section(self) -> str | None:
        return self.program.section

    @property
    def prog_type(self) -> str | None:
        return self.program.prog_type

    def load(self, engine: str = "auto", **options: Any) -> Executable:
        """The loaded program (the object's programs are loaded together
        once per set of options). Verified unless ``verify=False``: see
        :meth:`Object.load`."""
        return self._obj.load(engine, **options)[self.name]

    def run(self, mem: Any = None, ctx: Any = None) -> Any:
        """Runs with the default engine (loading, and so verifying, on first
        use): a ``RunResult`` for packet and tracing programs, r0 for raw
        ones."""
        return self.load().run(mem, ctx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.program, name)

    def __len__(self) -> int:
        return len(self.program)

    def __repr__(self) -> str:
        return (
            f"<ebpfvm.ObjectProgram {self.name!r}: section {self.section!r}, "
            f"type {self.prog_type}, {len(self.program)} instructions>"
        )


class Object:
    """An object file compiled with ``clang -O2 -g -target bpf``.

    ``Object.open(path)`` parses it and creates its maps; ``obj.programs``
    maps C function names to programs, ``obj.maps`` map names to typed map
    views (global data under its section name, e.g. ``".bss"``), and
    ``obj.bss``/``obj.data``/``obj.rodata`` give global variables by name.
    Maps pinned by name (``LIBBPF_PIN_BY_NAME``) live under ``pin_root``.
    """

    def __init__(
        self,
        elf: _core.ElfObject,
        *,
        path: str | None = None,
        pin_root: str | os.PathLike[str] | None = None,
        prog_types: Mapping[str, str] | None = None,
    ) -> None:
        self._elf = elf
        self.path = path
        self.pin_root = os.fspath(pin_root) if pin_root is not None else default_pin_root()
        self._map_info = elf.maps()
        pinned = any(m["pinning"] != "none" for m in self._map_info)
        cores, map_warnings = elf.create_maps(self.pin_root if pinned else None)
        #: What the loader noted but did not refuse (unpinnable maps, CO-RE
        #: relocations left as compiled, ...).
        self.warnings: list[str] = [*elf.warnings, *map_warnings]
        self._cores = cores
        maps: dict[str, Map] = {}
        for info, core in zip(self._map_info, cores, strict=True):
            key_type, value_type = info["key_type"], info["value_type"]
            if info["map_type"] in _RECORD_STREAMS:
                # Their BTF value type describes the records, not storage.
                key_type = value_type = None
            if key_type is None and info["key_size"] == 4 and info["map_type"] in _INDEXED:
                # Arrays are indexed by a u32 even when BTF does not say so
                # (legacy map definitions, global data sections).
                key_type = "u32"
            maps[info["name"]] = view(core, key_type, value_type)
        self.maps: Mapping[str, Map] = _ReadOnlyDict(maps)
        self._data = {
            info["name"]: GlobalData(self, info["name"], info)
            for info in self._map_info
            if info["kind"] == "data"
        }
        types = dict(prog_types or {})
        progs: dict[str, ObjectProgram] = {}
        self.load_errors: dict[str, str] = {}
        listed = elf.programs()
        # Functions in .text are subprograms (BPF-to-BPF call targets), as
        # libbpf treats them, unless the object has nothing else: then they
        # are its programs (objects built without SEC() annotations).
        standalone = all(p["subprogram"] for p in listed)
        for p in listed:
            if p["subprogram"] and not standalone:
                continue
            if p["error"] is not None:
                self.load_errors[p["name"]] = p["error"]
                continue
            program = elf.program(p["name"], cores)
            t = types.pop(p["name"], None) or types.get(p["section"])
            if t is not None:
                program = program.with_type(t)
            progs[p["name"]] = ObjectProgram(self, program)
        self.programs: Mapping[str, ObjectProgram] = _ReadOnlyDict(progs)
        self._loaded: dict[tuple[Any, ...], dict[str, Executable]] = {}
        self._any_loaded = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        pin_root: str | os.PathLike[str] | None = None,
        prog_types: Mapping[str, str] | None = None,
    ) -> Object:
        """Parses the object at ``path`` and creates its maps.
        ``prog_types`` gives the type of programs whose section name does
        not say (``{"function_or_section": "sched_cls"}``)."""
        with open(path, "rb") as f:
            data = f.read()
        return cls(
            _core.ElfObject.parse(data),
            path=os.fspath(path),
            pin_root=pin_root,
            prog_types=prog_types,
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        pin_root: str | os.PathLike[str] | None = None,
        prog_types: Mapping[str, str] | None = None,
    ) -> Object:
        return cls(_core.ElfObject.parse(data), pin_root=pin_root, prog_types=prog_types)

    def close(self) -> None:
        """Empties the object's program arrays, as the kernel does when the
        last user reference to a program array goes: programs and the
        arrays holding them would otherwise keep each other alive. Loaded
        programs keep running; their tail calls then fall through."""
        for core in getattr(self, "_cores", ()):
            if core.map_type == "prog_array":
                _core.prog_array_clear(core)

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    @property
    def license(self) -> str | None:
        return self._elf.license

    @property
    def loaded(self) -> bool:
        """Whether any program of the object has been loaded."""
        return self._any_loaded

    def globals(self, section: str) -> GlobalData:
        """The variables of global data section ``section``."""
        try:
            return self._data[section]
        except KeyError:
            raise KeyError(
                f"the object has no global data section {section!r} "
                f"(it has: {', '.join(sorted(self._data)) or 'none'})"
            ) from None

    @property
    def bss(self) -> GlobalData:
        return self.globals(".bss")

    @property
    def data(self) -> GlobalData:
        return self.globals(".data")

    @property
    def rodata(self) -> GlobalData:
        return self.globals(".rodata")

    @property
    def kconfig(self) -> GlobalData:
        return self.globals(".kconfig")

    def load(self, engine: str = "auto", **options: Any) -> dict[str, Executable]:
        """Loads every program (with a known type) and fills program arrays
        from the object's initialisers; returns the executables by name.
        Loading again with the same options returns the same executables.

        ``options`` are :meth:`ebpfvm.Program.load`'s. As with libbpf, every
        program is verified (the JIT then compiles it without run-time
        checks), and one the verifier refuses raises ``VerifierError``, so
        that none is loaded; ``verify=False`` loads them all in checked mode
        instead, where every memory access is bounds-checked at run time."""
        key: tuple[Any, ...] | None = (engine, *sorted(options.items(), key=lambda kv: kv[0]))
        try:
            hash(key)
        except TypeError:
            # Unhashable options (a helpers dict): load afresh, keep nothing.
            key = None
        if key is not None and key in self._loaded:
            return self._loaded[key]
        exes: dict[str, Executable] = {}
        for name, p in self.programs.items():
            if p.prog_type is None:
                continue
            exes[name] = p.program.load(engine=engine, **options)
        self._elf.init_prog_arrays(list(self._cores), exes)
        self._any_loaded = True
        if key is not None:
            self._loaded[key] = exes
        return exes

    def program(self, name: str | None = None, section: str | None = None) -> ObjectProgram:
        """The program called ``name``, or the only one in ``section``, or
        the object's only program."""
        if name is not None:
            try:
                return self.programs[name]
            except KeyError:
                raise KeyError(self._missing(f"no program named {name!r}")) from None
        found = [p for p in self.programs.values() if section is None or p.section == section]
        if len(found) != 1:
            what = f"in section {section!r}" if section is not None else "in the object"
            raise KeyError(
                self._missing(f"{len(found)} programs {what}; name one")
                if found
                else self._missing(f"no program {what}")
            )
        return found[0]

    def _missing(self, what: str) -> str:
        listing = ", ".join(f"{p.name} ({p.section})" for p in self.programs.values())
        msg = f"{what}; the object has: {listing or 'no programs'}"
        if self.load_errors:
            msg += "; unloadable: " + ", ".join(
                f"{n}: {e}" for n, e in sorted(self.load_errors.items())
            )
        return msg

    def __repr__(self) -> str:
        return (
            f"<ebpfvm.Object {self.path or '<bytes>'}: {len(self.programs)} programs, "
            f"{len(self.maps)} maps>"
        )


class _ReadOnlyDict(Mapping[str, Any]):
    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def __getitem__(self, key: str) -> Any:
        try:
            return self._d[key]
        except KeyError:
            raise KeyError(f"{key!r} (available: {', '.join(self._d) or 'none'})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return repr(self._d)


_TRACE_LINE = re.compile(
    r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+"
    r"(?P<ts>[\d.]+):\s+(?:bpf_trace_printk:\s+)?(?P<msg>.*)$"
)


class BPF:
    """A bcc-like façade over an object file: ``b = BPF(obj_file="x.o")``,
    ``b["map_name"]``, ``b.load_func("name", "xdp")``, ``b.trace_print()``."""

    def __init__(
        self,
        obj_file: str | os.PathLike[str] | None = None,
        *,
        pin_root: str | os.PathLike[str] | None = None,
    ) -> None:
        if obj_file is None:
            raise Error(
                "BPF(obj_file=...) is required: ebpfvm runs objects compiled with "
                "clang -target bpf (it does not compile C at run time)"
            )
        self.obj = Object.open(obj_file, pin_root=pin_root)
        self._pending: list[str] = []

    def __getitem__(self, name: str) -> Map:
        return self.obj.maps[name]

    def get_table(self, name: str) -> Map:
        return self.obj.maps[name]

    def __contains__(self, name: str) -> bool:
        return name in self.obj.maps

    def load_func(self, name: str, prog_type: str | None = None, **options: Any) -> Executable:
        """The loaded function ``name`` (``prog_type`` overrides the type its
        section gives), verified unless ``verify=False`` is among ``options``."""
        p = self.obj.program(name)
        if prog_type is not None and prog_type != p.prog_type:
            return p.program.with_type(prog_type).load(**options)
        return p.load(**options)

    def trace_fields(self, timeout: float | None = None) -> tuple[str, int, int, str, float, str]:
        """The next ``bpf_trace_printk`` line, split as bcc splits it:
        ``(task, pid, cpu, flags, timestamp, message)``."""
        lines = self._pending or read_trace(timeout)
        if not lines:
            raise TimeoutError("no trace line arrived")
        line, self._pending = lines[0], lines[1:]
        m = _TRACE_LINE.match(line)
        if m is None:
            return ("", 0, 0, "", 0.0, line)
        return (
            m["task"],
            int(m["pid"]),
            int(m["cpu"]),
            m["flags"],
            float(m["ts"]),
            m["msg"],
        )

    def trace_print(self, timeout: float | None = 0.0) -> None:
        """Prints every pending ``bpf_trace_printk`` line (waiting up to
        ``timeout`` seconds for the first)."""
        lines = self._pending + read_trace(timeout)
        self._pending = []
        for line in lines:
            print(line)
