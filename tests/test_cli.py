"""The command line (``ebpfvm.cli``): ``run`` verifies by default, for the one
input it is given; ``--no-verify`` runs in checked mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from ebpfvm import cli

#: Reads 4 bytes of the input without checking its length.
UNGUARDED = "ldxw %r0, [%r1+0]\nexit\n"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "prog.s"
    path.write_text(text)
    return str(path)


def test_run_verifies_for_the_input_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Proven for the 4-byte input it runs on.
    assert cli.main(["run", write(tmp_path, UNGUARDED), "--mem", "05000000"]) == 0
    assert "r0 = 0x5 (5)" in capsys.readouterr().out


def test_run_refuses_what_it_cannot_prove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two bytes of input: the 4-byte read cannot be proven, so nothing runs.
    assert cli.main(["run", write(tmp_path, UNGUARDED), "--mem", "0500"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "VerifierError" in captured.err
    assert "--no-verify" in captured.err


def test_no_verify_runs_in_checked_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, UNGUARDED)
    assert cli.main(["run", path, "--no-verify", "--mem", "0500"]) == 1
    assert "ExecutionError" in capsys.readouterr().err  # the bounds check at run time
    assert cli.main(["run", path, "--no-verify", "--mem", "07000000", "--stats"]) == 0
    out = capsys.readouterr().out
    assert "r0 = 0x7 (7)" in out and "instructions executed: 2" in out
