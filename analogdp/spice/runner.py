"""Run a netlist in ngspice and collect what its ``wrdata`` commands wrote.

Two runners, one result type (:class:`SpiceRun`):

- ``subprocess``: ``ngspice -b FILE`` with stdin closed, in a fresh temporary directory; the
  results are the ``wrdata`` files it leaves there. PySpice's own subprocess mode is not used:
  PySpice 1.5 cannot parse the output of newer ngspice releases.
- ``shared``: the same netlist in-process through libngspice, by way of PySpice's
  :class:`NgSpiceShared`. PySpice 1.5 treats every stderr line that is not a warning as an
  error, yet ngspice prints harmless notes there ("Note: No compatibility mode selected!",
  "Using SPARSE 1.3 as Direct Linear Solver"); :class:`_SharedNgspice` collects the output and
  lets :func:`_ngspice_errors` judge it, as for the subprocess. The ``.control`` block is cut at
  its ``run``: the commands before it run as part of loading the circuit, the transient runs in
  libngspice's background thread (``bg_run``) while Python watches for Ctrl-C, SIGTERM and the
  timeout and stops it (``bg_halt``) on any of them, and the commands after it run from a script
  of their own (``source``) once the transient is done; its ``quit`` is dropped, which would end
  the library. ``wrdata`` paths are pointed into a temporary directory; after each run ``destroy
  all`` and ``remcirc`` free the plots and the circuit so memory does not grow from run to run.

Errors: :class:`NgspiceNotFound` when the executable or the library is missing;
:class:`NgspiceError` when ngspice rejects the netlist or the run fails, with ngspice's own words.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NgspiceError, NgspiceNotFound

RUNNERS = ("subprocess", "shared")
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
INSTALL_HINT = "install it with: sudo apt-get install ngspice libngspice0-dev"

# ngspice prints these on stderr (or stdout) although nothing is wrong
_HARMLESS = re.compile(r"^\s*(Note:|Using SPARSE|Using KLU|Warning: .*compatibility|$)", re.IGNORECASE)
_FAILURE = re.compile(r"error|aborted|timestep too small|singular matrix|no such|not parsed|fatal",
                      re.IGNORECASE)
_NOT_A_FAILURE = re.compile(r"^\s*(Circuit:|Warning)", re.IGNORECASE)
_WRDATA = re.compile(r"^\s*wrdata\s+(\S+)", re.IGNORECASE)
# every control command that names a file it writes (the in-process run points them into its
# temporary directory, as the subprocess runner's working directory does)
_WRITES_FILE = re.compile(r"^\s*(?:wrdata|write)\s+(\S+)", re.IGNORECASE)


@dataclass
class DataFile:
    """One ``wrdata`` file: its scale (e.g. time) and its named vectors (ngspice's names)."""

    scale_name: str
    scale: np.ndarray
    vectors: dict[str, np.ndarray]


@dataclass
class SpiceRun:
    """What an ngspice run produced.

    ``time_s`` and ``vectors`` come from the transient ``wrdata`` file (the one whose scale is
    ``time``); ``files`` holds every ``wrdata`` file by name (e.g. the operating point);
    ``wall_time_s`` covers loading the netlist and simulating (not writing it).
    """

    time_s: np.ndarray
    vectors: dict[str, np.ndarray]
    files: dict[str, DataFile]
    wall_time_s: float
    ngspice_version: str
    runner: str
    output: str
    warnings: list[str] = field(default_factory=list)

    def vector(self, name: str) -> np.ndarray:
        """A transient vector by ngspice's (case-insensitive) name, e.g. ``v(s1_n0_p)``."""
        try:
            return self.vectors[name.lower()]
        except KeyError:
            raise KeyError(f"no vector {name!r} in the ngspice results (have {len(self.vectors)}: "
                           f"{', '.join(list(self.vectors)[:8])}...)") from None


def _ngspice_errors(lines: list[str]) -> list[str]:
    """The lines of ngspice's output that report a failure, each with the line after it
    (ngspice explains an error on the next line, e.g. by quoting the offending netlist line)."""
    keep: set[int] = set()
    for index, line in enumerate(lines):
        if _HARMLESS.match(line) or _NOT_A_FAILURE.match(line) or not _FAILURE.search(line):
            continue
        keep.add(index)
        if index + 1 < len(lines) and lines[index + 1].strip():
            keep.add(index + 1)
    return [lines[index].strip() for index in sorted(keep)]


def _warnings(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines
            if line.strip().lower().startswith("warning") and not _HARMLESS.match(line)]


def wrdata_files(netlist_text: str) -> list[str]:
    """File names the netlist's ``.control`` block writes with ``wrdata``."""
    return [m.group(1) for m in (_WRDATA.match(line) for line in netlist_text.splitlines()) if m]


def read_wrdata(path: Path) -> DataFile:
    """Parse a ``wrdata`` file written with ``wr_singlescale`` and ``wr_vecnames``."""
    with open(path) as handle:
        names = handle.readline().split()
        table = np.loadtxt(handle, ndmin=2)
    if table.shape[1] != len(names):
        raise NgspiceError(f"{path.name}: {len(names)} column names but {table.shape[1]} columns")
    return DataFile(scale_name=names[0].lower(), scale=table[:, 0],
                    vectors={name.lower(): table[:, q] for q, name in enumerate(names) if q > 0})


def _collect(directory: Path, netlist_text: str, output_lines: list[str], wall_time_s: float,
             version: str, runner: str) -> SpiceRun:
    files = {}
    for name in wrdata_files(netlist_text):
        path = directory / Path(name).name
        if not path.exists():
            raise NgspiceError(_failure_message(f"ngspice did not write {name}", output_lines))
        files[name] = read_wrdata(path)
    transient = next((f for f in files.values() if f.scale_name == "time"), None)
    return SpiceRun(time_s=transient.scale if transient else np.empty(0),
                    vectors=transient.vectors if transient else {}, files=files,
                    wall_time_s=wall_time_s, ngspice_version=version, runner=runner,
                    output="\n".join(output_lines), warnings=_warnings(output_lines))


def _failure_message(summary: str, output_lines: list[str]) -> str:
    errors = _ngspice_errors(output_lines)
    quoted = errors if errors else [line for line in output_lines if line.strip()][-12:]
    return summary + ". ngspice said:\n  " + "\n  ".join(quoted)


# ---- subprocess ---------------------------------------------------------------------------------
def ngspice_executable() -> str:
    """Path of the ``ngspice`` executable: ``$NGSPICE`` when set, else the PATH."""
    explicit = os.environ.get("NGSPICE")
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise NgspiceNotFound(f"ngspice not found at {explicit} (the NGSPICE environment "
                                  f"variable); unset it or {INSTALL_HINT}")
        return explicit
    path = shutil.which("ngspice")
    if path is None:
        raise NgspiceNotFound(f"ngspice not found on the PATH; {INSTALL_HINT}")
    return path


_version_cache: dict[str, str] = {}


def ngspice_version(executable: str | None = None) -> str:
    """e.g. 'ngspice-39', from ``ngspice -v``."""
    executable = executable or ngspice_executable()
    if executable not in _version_cache:
        done = subprocess.run([executable, "-v"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60)
        match = re.search(r"ngspice-(\S+)", done.stdout + done.stderr)
        _version_cache[executable] = f"ngspice-{match.group(1)}" if match else "ngspice (unknown version)"
    return _version_cache[executable]


def _end_with_parent() -> None:
    """In the ngspice child: die with the Python process, so that a simulation killed by a
    signal does not leave a long ngspice run behind (Linux's PR_SET_PDEATHSIG; elsewhere a
    no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _run_subprocess(netlist_text: str, timeout_s: float | None) -> SpiceRun:
    executable = ngspice_executable()
    version = ngspice_version(executable)
    with tempfile.TemporaryDirectory(prefix="analogdp-ngspice-") as tmp:
        directory = Path(tmp)
        (directory / "circuit.cir").write_text(netlist_text)
        start = time.perf_counter()
        try:
            done = subprocess.run([executable, "-b", "circuit.cir"], cwd=directory,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout_s, preexec_fn=_end_with_parent)
        except subprocess.TimeoutExpired as exc:
            raise NgspiceError(f"ngspice did not finish within its timeout of {timeout_s:.3g} s and was "
                               f"stopped") from exc
        wall = time.perf_counter() - start
        lines = (done.stderr + "\n" + done.stdout).splitlines()
        if done.returncode != 0 or _ngspice_errors(lines):
            raise NgspiceError(_failure_message(f"ngspice failed (exit status {done.returncode})", lines))
        return _collect(directory, netlist_text, lines, wall, version, "subprocess")


# ---- shared library -----------------------------------------------------------------------------
def _library_path() -> str:
    explicit = os.environ.get("NGSPICE_LIBRARY_PATH")
    if explicit:
        return explicit
    found = ctypes.util.find_library("ngspice")
    if not found:
        raise NgspiceNotFound(f"libngspice not found; {INSTALL_HINT}")
    return found


_shared_lock = threading.Lock()
_shared_instance = None


def _shared_ngspice():
    """The one in-process ngspice (libngspice can be initialised once per process)."""
    global _shared_instance
    if _shared_instance is None:
        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi
        except ImportError as exc:  # pragma: no cover - PySpice is a dependency
            raise NgspiceNotFound(f"PySpice is not installed ({exc})") from exc

        class _SharedNgspice(NgSpiceShared):
            """NgSpiceShared that records ngspice's output and leaves the judging to us."""

            @staticmethod
            def _send_char(message_c, ngspice_id, user_data):
                self = ffi.from_handle(user_data)
                message = ffi.string(message_c).decode("utf-8", errors="replace")
                prefix, _, content = message.partition(" ")
                (self._stderr if prefix == "stderr" else self._stdout).append(content)
                return 0

            @staticmethod
            def _background_thread_running(is_running, ngspice_id, user_data):
                # PySpice's returns None, which cffi reports on stderr at every bg_run
                ffi.from_handle(user_data)._is_running = is_running
                return 0

        _SharedNgspice.LIBRARY_PATH = _library_path()
        pyspice_logger = logging.getLogger("PySpice")
        level = pyspice_logger.level
        pyspice_logger.setLevel(logging.ERROR)  # "Unsupported Ngspice version" is harmless
        try:
            _shared_instance = _SharedNgspice(ngspice_id=0, send_data=False)
        except OSError as exc:
            raise NgspiceNotFound(f"libngspice could not be loaded ({exc}); {INSTALL_HINT}") from exc
        finally:
            pyspice_logger.setLevel(level)
    return _shared_instance


def _shared_text(netlist_text: str, directory: Path) -> str:
    """The netlist as the library runs it: ``wrdata`` and ``write`` into ``directory`` (never
    the process's working directory), no ``quit``."""
    lines = []
    for line in netlist_text.splitlines():
        match = _WRITES_FILE.match(line)
        if match:
            line = line.replace(match.group(1), str(directory / Path(match.group(1)).name), 1)
        elif line.strip().lower() in ("quit", "exit"):
            continue
        lines.append(line)
    return "\n".join(lines)


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM while the in-process ngspice runs, and deliver them afterwards.

    Loading the circuit (with the operating point) and the commands after the transient run
    inside C calls of libngspice. Python runs a signal's handler only when it regains control,
    which during such a call is in the output callbacks, where cffi prints and swallows the
    exception: the interrupt would be lost. Recorded here instead (the list yielded), each signal
    is raised again once the block ends, so the command ends as interrupted; the transient itself
    runs in the library's background thread, and :func:`_run_in_background` stops it as soon as
    a signal is recorded.
    Only the main thread can set handlers; elsewhere the signals are left as they are."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum, frame):
        if not received:
            print(f"{signal.Signals(signum).name} received: stopping ngspice", file=sys.stderr, flush=True)
        received.append(signum)

    # a signal the process ignores (e.g. SIGINT of a job started in the background) stays ignored
    held = [number for number in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(number) != signal.SIG_IGN]
    previous = {number: signal.signal(number, record) for number in held}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(received):
            signal.raise_signal(number)


def _split_at_run(text: str) -> tuple[str, str | None]:
    """(the deck with its ``.control`` block cut before ``run``, the commands after ``run`` as a
    script of their own); (text, None) for a deck without a ``run`` in its control block."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().lower() == ".control"]
    if not starts:
        return text, None
    start = starts[0]
    ends = [i for i, line in enumerate(lines) if i > start and line.strip().lower() == ".endc"]
    runs = [i for i, line in enumerate(lines) if start < i < (ends[0] if ends else len(lines))
            and line.strip().lower() == "run"]
    if not ends or not runs:
        return text, None
    end, run = ends[0], runs[0]
    deck = "\n".join(lines[:run] + lines[end:])
    script = "\n".join(["* the commands after the transient", ".control", *lines[run + 1:end], ".endc"])
    return deck, script


POLL_S = 0.02  # how often a background transient is checked for signals and the timeout


def _run_in_background(ng, received: list[int], timeout_s: float | None) -> None:
    """The loaded transient in libngspice's background thread, stopped at once (``bg_halt``) when
    a signal is recorded or ``timeout_s`` passes; NgspiceError then (the signal itself is raised
    again when the signals are released)."""
    library = ng._ngspice_shared
    started = time.perf_counter()
    library.ngSpice_Command(b"bg_run")
    while True:
        time.sleep(POLL_S)  # first, so that the thread has started before it is asked about
        overdue = timeout_s is not None and time.perf_counter() - started > timeout_s
        if received or overdue:
            break
        if not library.ngSpice_running():
            return
    library.ngSpice_Command(b"bg_halt")
    while library.ngSpice_running():
        time.sleep(POLL_S)
    if received:
        raise NgspiceError(f"ngspice stopped by {signal.Signals(received[0]).name}")
    raise NgspiceError(f"ngspice did not finish within its timeout of {timeout_s:.3g} s and was stopped")


def _run_shared(netlist_text: str, timeout_s: float | None = None) -> SpiceRun:
    with _shared_lock, _signals_held() as received:
        ng = _shared_ngspice()
        version = f"ngspice-{ng.ngspice_version or '(unknown version)'}"
        with tempfile.TemporaryDirectory(prefix="analogdp-ngspice-") as tmp:
            directory = Path(tmp)
            if re.search(r"\s", str(directory)):
                raise NgspiceError(f"temporary directory {directory} contains white space, "
                                   "which wrdata cannot handle")
            deck, after_run = _split_at_run(_shared_text(netlist_text, directory))
            ng.clear_output()
            try:
                start = time.perf_counter()
                try:
                    ng.load_circuit(deck)
                except Exception as exc:  # PySpice raises on what it takes for errors
                    raise NgspiceError(_failure_message(f"libngspice failed ({exc})",
                                                        ng._stderr + ng._stdout)) from exc
                if after_run is not None and not _ngspice_errors(ng._stderr + ng._stdout):
                    _run_in_background(ng, received, timeout_s)
                    script = directory / "after_run.cir"
                    script.write_text(after_run + "\n")
                    ng._ngspice_shared.ngSpice_Command(f"source {script}".encode())
                wall = time.perf_counter() - start
                lines = ng._stderr + ng._stdout
                if _ngspice_errors(lines):
                    raise NgspiceError(_failure_message("ngspice (shared library) failed", lines))
                return _collect(directory, netlist_text, lines, wall, version, "shared")
            finally:
                _free_shared(ng)


def _free_shared(ng) -> None:
    """Drop every plot and the circuit, so repeated runs do not accumulate memory."""
    for command in ("destroy all", "remcirc"):
        try:
            ng.exec_command(command)
        except Exception:  # nothing loaded (e.g. the netlist was rejected)
            pass
    ng.clear_output()


def run_ngspice(netlist_text: str, runner: str = "subprocess", *, timeout_s: float | None = None) -> SpiceRun:
    """Simulate ``netlist_text`` (a complete netlist with a ``.control`` block that writes its
    results with ``wrdata``) and return the time grid and named vectors it wrote.

    ``timeout_s`` bounds the transient of either runner (the in-process one stops its
    background run; SIGINT and SIGTERM stop it too and then end the command as interrupted).
    """
    if runner == "subprocess":
        return _run_subprocess(netlist_text, timeout_s)
    if runner == "shared":
        return _run_shared(netlist_text, timeout_s)
    raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
