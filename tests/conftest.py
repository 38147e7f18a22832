"""Shared pytest configuration for the ebpfvm test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Root of the repository (the parent of tests/).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Shared test data, next to the repository: ../shared from the repository root.
SHARED = (REPO_ROOT / ".." / "shared").resolve()
#: The conformance suites (format described in CONFORMANCE / "FORMAT.md").
CONFORMANCE = SHARED / "conformance"

if not (CONFORMANCE / "FORMAT.md").is_file():
    # Never skip: a missing data folder would silently turn hundreds of tests off.
    raise RuntimeError(
        f"shared test data not found: expected {CONFORMANCE} (../shared/conformance "
        "from the repository root). The test suite cannot run without it."
    )


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared test-data folder (../shared from the repository root)."""
    if not SHARED.is_dir():
        pytest.fail(f"shared test data folder missing: {SHARED}")
    return SHARED
