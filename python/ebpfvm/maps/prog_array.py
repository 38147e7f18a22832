"""Program arrays (``BPF_MAP_TYPE_PROG_ARRAY``): the jump tables of
``bpf_tail_call``. Slots hold loaded programs::

    jmp = obj.maps["jmp_table"]
    jmp[1] = obj.programs["stage2"]      # or an Executable
    jmp[1]                               # the program's id
    del jmp[1]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ebpfvm import _core
from ebpfvm.maps._base import KeyValueMap, register_view

__all__ = ["ProgArray"]


def _executable(program: Any) -> Any:
    """The loaded program to place: an ``Executable``, or something with a
    ``load()`` giving one (an object's program)."""
    if isinstance(program, _core.Executable):
        return program
    load = getattr(program, "load", None)
    if callable(load):
        exe = load()
        if isinstance(exe, _core.Executable):
            return exe
    raise TypeError(
        "a program array holds loaded programs: give an ebpfvm.Executable or an object's "
        f"program, not {type(program).__name__}"
    )


@register_view
class ProgArray(KeyValueMap):
    """A program array of ``max_entries`` slots. Reading a slot gives the
    id of the program in it; iteration covers the filled slots."""

    MAP_TYPES = ("prog_array",)

    def __init__(
        self,
        max_entries: int | None = None,
        *,
        name: str = "",
        flags: int = 0,
        pin: str | os.PathLike[str] | None = None,
    ) -> None:
        self._create(self.MAP_TYPES[0], "u32", "u32", max_entries, name=name, flags=flags, pin=pin)

    def __setitem__(self, index: Any, program: Any) -> None:
        self._kenc(index)  # the index must be a u32
        _core.prog_array_set(self._core, index, _executable(program))  # type: ignore[attr-defined]

    def update_elem(self, key: Any, value: Any, flags: int = 0) -> None:
        self[key] = value

    def update_batch(self, items: Any, flags: int = 0) -> None:
        pairs = items.items() if hasattr(items, "items") else items
        for index, program in pairs:
            self[index] = program

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def keys(self) -> list[Any]:  # type: ignore[override]
        return [k for k, _ in self.items()]
