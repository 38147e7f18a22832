"""bcc-style histogram printing."""

from __future__ import annotations

import ctypes

from ebpfvm import maps
from ebpfvm.maps.hist import linear_hist_text, log2_hist_text

# bcc prints exactly these lines for slots 1..3 holding 1, 4 and 2.
LOG2_EXPECTED = (
    "     usecs               : count     distribution\n"
    "         0 -> 1          : 1        |**********                              |\n"
    "         2 -> 3          : 4        |****************************************|\n"
    "         4 -> 7          : 2        |********************                    |\n"
)


def test_log2_hist_layout(capsys) -> None:  # type: ignore[no-untyped-def]
    h = maps.ArrayMap("u32", "u64", 65, name="hist")
    h.update_batch({1: 1, 2: 4, 3: 2})
    h.print_log2_hist("usecs")
    assert capsys.readouterr().out == LOG2_EXPECTED


def test_log2_hist_strips_leading_zeros_and_widens_for_large_slots() -> None:
    text = log2_hist_text(_Items({5: 3, 6: 1}), "ns", strip_leading_zero=True)
    lines = text.splitlines()
    assert lines[1].startswith("        16 -> 31         : 3 ")
    assert len(lines) == 3
    wide = log2_hist_text(_Items({40: 2}), "ns").splitlines()
    assert wide[0] == "               ns                            : count     distribution"
    assert wide[-1] == (
        "        549755813888 -> 1099511627775        : 2        |********************|"
    )


def test_linear_hist_layout(capsys) -> None:  # type: ignore[no-untyped-def]
    h = maps.HashMap("u32", "u64", 16)
    h.update_batch({0: 2, 2: 8})
    h.print_linear_hist("bucket")
    assert capsys.readouterr().out == (
        "     bucket        : count     distribution\n"
        "        0          : 2        |**********                              |\n"
        "        1          : 0        |                                        |\n"
        "        2          : 8        |****************************************|\n"
    )


def test_empty_hist_prints_nothing() -> None:
    assert log2_hist_text(_Items({})) == ""
    assert linear_hist_text(_Items({})) == ""


class Key(ctypes.Structure):
    _fields_ = [("disk", ctypes.c_uint32), ("slot", ctypes.c_uint32)]


def test_sections_from_struct_keys() -> None:
    h = maps.HashMap(Key, "u64", 64)
    h[Key(1, 1)] = 5
    h[Key(2, 2)] = 3
    text = log2_hist_text(h, "usecs", section_header="disk", section_print_fn=lambda d: f"sd{d}")
    sections = {}
    for part in text.split("\ndisk = ")[1:]:
        name, _, body = part.partition("\n")
        sections[name] = body
    assert set(sections) == {"sd1", "sd2"}
    assert "0 -> 1          : 5 " in sections["sd1"]
    assert sections["sd2"].splitlines()[-1].startswith("         2 -> 3          : 3 ")
    assert "2 -> 3" not in sections["sd1"]


def test_percpu_counts_are_summed() -> None:
    h = maps.PerCpuArrayMap("u32", "u64", 4)
    h[2] = 1
    n = h.num_cpus
    assert f"2 -> 3          : {n} " in log2_hist_text(h)


class _Items:
    """A plain mapping-like stand-in: the printers accept anything with items()."""

    def __init__(self, d: dict[int, int]) -> None:
        self.d = d

    def items(self) -> list[tuple[int, int]]:
        return list(self.d.items())
