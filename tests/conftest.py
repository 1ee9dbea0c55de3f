"""Shared test set-up.

ngspice is part of the required set-up (the circuit solver is cross-checked against it), so a
missing ngspice fails the tests that need it instead of skipping them quietly. Machines that
knowingly lack it can opt out with ANALOGDP_ALLOW_NO_NGSPICE=1, which turns those failures
into skips with the same reason.
"""

from __future__ import annotations

import os
import shutil

import pytest

# Tests draw figures without a display; set before anything imports matplotlib.
os.environ.setdefault("MPLBACKEND", "Agg")

NGSPICE_MISSING = "ngspice not found: install the Debian packages ngspice and libngspice0-dev"


def require_ngspice() -> str:
    """Path of the ngspice executable; fails the calling test if it is missing (skips instead
    when ANALOGDP_ALLOW_NO_NGSPICE=1)."""
    path = shutil.which("ngspice")
    if path is not None:
        return path
    if os.environ.get("ANALOGDP_ALLOW_NO_NGSPICE") == "1":
        pytest.skip(f"{NGSPICE_MISSING} (skipped because ANALOGDP_ALLOW_NO_NGSPICE=1)")
    pytest.fail(
        f"{NGSPICE_MISSING} (or set ANALOGDP_ALLOW_NO_NGSPICE=1 to skip these tests)",
        pytrace=False,
    )


@pytest.fixture
def ngspice() -> str:
    """Path of the ngspice executable, with the fail-or-skip policy of require_ngspice()."""
    return require_ngspice()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked @pytest.mark.ngspice get the same check without asking for the fixture."""
    if item.get_closest_marker("ngspice") is not None:
        require_ngspice()


@pytest.fixture
def run_cli(capsys):
    """Run a command line's ``main(argv)`` in-process: (exit status, stdout, stderr), with
    argparse's own exits turned into a status like the real command's."""

    def run(main, argv) -> tuple[int, str, str]:
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
        out, err = capsys.readouterr()
        return status, out, err

    return run
