"""Every object of ../shared/verifier-corpus through the Python API, as a
user would open it: ``ebpfvm.Object.open`` creates its maps and lists its
programs with typed map views, or raises an ``ebpfvm.Error`` saying why —
never another exception, never a crash (``invalid/`` included)."""

from __future__ import annotations

from pathlib import Path

import ebpfvm
import pytest

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "verifier-corpus"
OBJECTS = sorted(CORPUS.rglob("*.o"))

#: Objects a kernel loader refuses too, with the reason ebpfvm must give.
REFUSED = {
    "build/badrelo.o": "value_size must be positive",
    "build/exposeptr2.o": "needs 4-byte keys",
    "falco/probe.o": "max_entries must be positive",
    "invalid/badsymsize.o": "Invalid ELF section index",
}


def test_the_corpus_is_there() -> None:
    assert len(OBJECTS) > 150, f"expected the verifier corpus at {CORPUS}"


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: str(p.relative_to(CORPUS)))
def test_object_opens_or_says_why(path: Path, tmp_path: Path) -> None:
    rel = str(path.relative_to(CORPUS))
    try:
        obj = ebpfvm.Object.open(path, pin_root=tmp_path)
    except ebpfvm.Error as e:
        if rel.startswith("invalid/") and rel not in REFUSED:
            return  # broken on purpose: any precise refusal will do
        assert rel in REFUSED, f"{rel} refused: {e}"
        assert REFUSED[rel] in str(e)
        return
    assert rel not in REFUSED, f"{rel} opened but a kernel loader refuses it"
    assert len(obj.programs) + len(obj.load_errors) > 0
    for name, prog in obj.programs.items():
        assert prog.name == name
        assert len(prog) > 0
    for name, view in obj.maps.items():
        assert view.name == name


def test_program_without_a_known_type_must_be_given_one(tmp_path: Path) -> None:
    # Cilium names sections after hooks ("from-netdev"); its loader, not the
    # section name, makes them tc programs.
    obj = ebpfvm.Object.open(CORPUS / "bpf_cilium_test" / "bpf_lb-DLB_L3.o", pin_root=tmp_path)
    prog = obj.programs["from-netdev"]
    assert prog.prog_type is None
    with pytest.raises(ValueError, match="from-netdev"):
        prog.verify()
    with pytest.raises(ValueError, match="with_type"):
        prog.program.load()
    typed = prog.program.with_type("sched_cls")
    assert typed.verify()["insns_processed"] > 0
    typed_obj = ebpfvm.Object.open(
        CORPUS / "bpf_cilium_test" / "bpf_lb-DLB_L3.o",
        pin_root=tmp_path / "again",
        prog_types={"from-netdev": "sched_cls"},
    )
    assert typed_obj.programs["from-netdev"].prog_type == "sched_cls"
