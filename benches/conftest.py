"""pytest configuration of the benchmark suite (pytest-benchmark).

Run ``pytest benches/`` (or with ``--benchmark-only``) to time, and
``pytest benches/ --benchmark-disable`` for a quick check of every result.
The shared data must be at ``<repo root>/../shared``; without it the suite
refuses to run rather than skipping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benches import _harness as h

# Fail loudly at import: a missing data folder must not turn the suite off.
h.check_shared_data()

BENCHES_DIR = Path(__file__).resolve().parent
RESULTS_KEY = pytest.StashKey[h.Results]()


def _benches_requested(config: pytest.Config) -> bool:
    """True when a command-line path points at benches/ or inside it."""
    base = config.invocation_params.dir
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == BENCHES_DIR or BENCHES_DIR in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # A broad run such as `pytest .` from the repository root must not start
    # timing by accident: benches/ runs only when named (`pytest benches/`).
    if BENCHES_DIR in (collection_path, *collection_path.parents) and not _benches_requested(
        config
    ):
        return True
    return None


@pytest.fixture(scope="session")
def results(pytestconfig: pytest.Config) -> h.Results:
    """Timings of this run, read by the terminal summary."""
    if RESULTS_KEY not in pytestconfig.stash:
        pytestconfig.stash[RESULTS_KEY] = h.Results()
    return pytestconfig.stash[RESULTS_KEY]


@pytest.fixture(scope="session")
def timing_settings(pytestconfig: pytest.Config) -> h.TimingSettings:
    """Honours --benchmark-max-time and --benchmark-min-rounds."""
    return h.TimingSettings(
        max_time_s=float(pytestconfig.getoption("benchmark_max_time", 1.0)),
        min_rounds=int(pytestconfig.getoption("benchmark_min_rounds", 5)),
    )


@pytest.fixture(scope="session")
def native() -> h.NativeLib:
    """The native baseline (cffi, gcc -O2), built once and checked."""
    lib = h.build_native()
    h.check_native(lib)
    return lib


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    res = config.stash.get(RESULTS_KEY, None)
    if res is None:
        return
    terminalreporter.write_sep("=", "ebpfvm benchmark summary")
    if res.empty():
        terminalreporter.write_line(
            "no timings in this run (benchmarks disabled or skipped): results were only checked"
        )
        return
    lines = h.summary_lines(res)
    jit_lines = h.jit_summary_lines(res)
    if lines and jit_lines:
        lines.append("")
    for line in lines + jit_lines:
        terminalreporter.write_line(line)
