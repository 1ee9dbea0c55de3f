"""What the command-line entry points of ``sims`` share: one-line errors and argument checks.

Every entry point (``python -m sims.crossbar``, ``sims.train``, ``sims.compare``,
``sims.spice_check``) reports bad input as a single stderr line,
``PROG: error: MESSAGE (see --help)``, with exit status 2, before any work. The argument
types below are meant for ``type=`` of ``add_argument``: each returns the parsed value or
raises ``argparse.ArgumentTypeError`` with a message that quotes the offending text
(argparse puts ``argument --OPTION:`` in front of it).

This module imports nothing heavy, so that option checks stay fast.
"""

from __future__ import annotations

import argparse
import math
import re
import sys

EXIT_USAGE = 2  # bad input, as argparse itself exits
# ngspice runs estimated longer than this need --force: a few minutes is what a user waiting
# at the prompt expects; beyond, they should know what they are starting.
SPICE_LONG_RUN_S = 180.0


def one_line(text) -> str:
    """``text`` with every run of white space (newlines too) folded to one space."""
    return " ".join(str(text).split())


class UsageError(Exception):
    """Bad input found after parsing: reported with :func:`print_error`, exit status 2."""


def print_error(prog: str, message) -> None:
    """``PROG: error: MESSAGE`` as one line on stderr."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one stderr line, ``PROG: error: MESSAGE (see --help)``, with
    exit status 2 (no usage dump)."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def attach_dash_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Join ``--opt -3x4`` into ``--opt=-3x4`` so that a value starting with '-' reaches the
    option's own check (and its message) instead of being taken for an unknown option."""
    takes_value = {s for a in parser._actions if a.nargs is None and a.option_strings
                   and not isinstance(a, (argparse._StoreTrueAction, argparse._HelpAction))
                   for s in a.option_strings}
    known = {s for a in parser._actions for s in a.option_strings}
    joined, i = [], 0
    while i < len(argv):
        token = argv[i]
        if (token in takes_value and i + 1 < len(argv) and argv[i + 1].startswith("-")
                and argv[i + 1].split("=")[0] not in known):
            joined.append(f"{token}={argv[i + 1]}")
            i += 2
        else:
            joined.append(token)
            i += 1
    return joined


# ------------------------------------------------------------------------------------------
# Argument types: numbers


def finite_float(text: str) -> float:
    """A finite number ('nan' and 'inf' are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def require(value, text: str, accept, what: str):
    """``value`` (parsed from ``text``) if ``accept(value)``; else the argument error
    ``'TEXT' is not WHAT``. For argument types with a bound of their own."""
    if not accept(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return require(finite_float(text), text, lambda v: v > 0, "a positive number")


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return require(finite_float(text), text, lambda v: v >= 0, "a non-negative number")


def unit_interval_float(text: str) -> float:
    """A number in [0, 1]."""
    return require(finite_float(text), text, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def timeout_seconds(text: str) -> float:
    """A time limit for an external program, 1 s to 1e6 s (below a second ngspice cannot even
    load a netlist)."""
    return require(finite_float(text), text, lambda v: 1.0 <= v <= 1e6, "a time limit from 1 to 1e6 seconds")


def integer(text: str) -> int:
    """An integer in decimal, as Python's int() reads it ('1.0' and '1e3' are refused)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return require(integer(text), text, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return require(integer(text), text, lambda v: v >= 0, "a non-negative integer")


# ------------------------------------------------------------------------------------------
# Argument types: sizes, 'x' or '-' between them (784x256x10, 784-256-10)

# A minus sign is let through, so that '-3x4' is told as a size that is not positive rather
# than as a malformed list; '-' is also a separator: '32-16-10', '3--4' = (3, -4).
_SIZES = re.compile(r"\s*(-?\d+)((?:\s*[xX-]\s*-?\d+)+)\s*")
_NEXT_SIZE = re.compile(r"[xX-]\s*(-?\d+)")


def _sizes(text: str, count: int | None, what: str, example: str) -> tuple[int, ...]:
    match = _SIZES.fullmatch(text or "")
    if match is None:
        how_many = "at least two" if count is None else "two" if count == 2 else str(count)
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {what}: {how_many} positive integers joined by 'x' or '-' "
            f"(e.g. {example})")
    sizes = (int(match.group(1)), *(int(v) for v in _NEXT_SIZE.findall(match.group(2))))
    if count is not None and len(sizes) != count:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {what}: expected exactly {count} sizes (e.g. {example})")
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r}: every size must be a positive integer (e.g. {example})")
    return sizes


def layer_sizes(text: str) -> tuple[int, ...]:
    """Layer sizes from the input to the output, at least two: '784x256x10' or '784-256-10'."""
    return _sizes(text, None, "a list of layer sizes", "784x256x10")


def size_pair(text: str) -> tuple[int, int]:
    """A crossbar size, rows x columns: '784x256' (or '784-256')."""
    return _sizes(text, 2, "RxC (rows x columns)", "784x256")


# ------------------------------------------------------------------------------------------
# Options generated from the library's dataclass fields (one source of truth for names,
# defaults and help)

CHECKS = {"positive": positive_float, "non_negative": non_negative_float, "finite": finite_float,
          "unit_interval": unit_interval_float, "positive_int": positive_int,
          "non_negative_int": non_negative_int}


def option_name(dataclass_field) -> str:
    return dataclass_field.metadata.get("option", "--" + dataclass_field.name.replace("_", "-"))


def _default_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def field_type(cls, name: str):
    """The argument type of a dataclass field: its ``check``, and its ``range`` when it has one."""
    from dataclasses import fields

    meta = next(f for f in fields(cls) if f.name == name).metadata
    check = CHECKS[meta["check"]]
    if "range" not in meta:
        return check
    low, high = meta["range"]
    return lambda text: require(check(text), text, lambda v: low <= v <= high, f"in [{low:g}, {high:g}]")


def add_field_options(group, cls, names=None, *, defaults: dict | None = None) -> None:
    """One option per field of dataclass ``cls`` (or the fields ``names``), its type from the
    field's ``check`` or ``choices`` metadata, its help from ``help`` with the field's default
    appended. The option's own default is None ('not given'), so that the library's default
    applies; ``defaults`` overrides the default shown (a default computed from other fields).
    A field with ``flag`` metadata becomes a switch (given: True; not given: None)."""
    from dataclasses import MISSING, fields

    by_name = {f.name: f for f in fields(cls)}
    for name in names or list(by_name):
        f = by_name[name]
        meta = f.metadata
        default = (defaults or {}).get(name, f.default if f.default is not MISSING else None)
        help_text = meta["help"]
        if "range" in meta:
            help_text += f"; range {meta['range'][0]:g} to {meta['range'][1]:g}"
        if default is not None:
            help_text += f" (default {_default_text(default)})"
        kwargs = {"default": None, "help": help_text, "dest": name}
        if meta.get("flag"):
            group.add_argument(option_name(f), action="store_true", default=None, help=meta["help"], dest=name)
            continue
        if meta.get("repeat"):
            kwargs.update(action="append", type=str, metavar=meta.get("metavar", "VALUE"))
            kwargs["help"] = meta["help"]
        elif "choices" in meta:
            kwargs["choices"] = meta["choices"]
        else:
            kwargs["type"] = field_type(cls, name) if "check" in meta else str
            kwargs["metavar"] = meta.get("metavar", name.split("_")[-1].upper())
        group.add_argument(option_name(f), **kwargs)


def given_options(args, names) -> dict:
    """The options among ``names`` the user gave (not None), as keyword arguments."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


# ------------------------------------------------------------------------------------------
# Running a command: one exit status per situation, the same in every command line

EXIT_FAILED = 1  # the run ended but its result is not good: not settled, SPICE disagrees, diverged
EXIT_NGSPICE = 3  # ngspice is missing, rejected the netlist, failed or timed out
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)
EXIT_STATUS_HELP = ("Exit status: 0 done; 1 the run failed (did not settle, diverged, a SPICE check "
                    "disagreed, out of memory); 2 bad input; 3 ngspice missing or failed; 130 "
                    "interrupted; 143 terminated. Outputs are written whole or not at all.")


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that clean-up code runs (temporary files and
    directories, the ngspice child) before the process ends."""


def _raise_terminated(signum, frame):
    raise Terminated()


def run_command(prog: str, body) -> int:
    """``body()`` with every way a run can end mapped to one stderr line and an exit status:
    bad input 2, ngspice 3, interrupted 130 (Ctrl-C) or 143 (SIGTERM), a failed run 1."""
    import signal

    from analogdp.data import DataError
    from analogdp.errors import CheckpointMismatch, NgspiceError, NgspiceNotFound, NonFiniteError, NotSettledError

    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return body()
    except (UsageError, DataError, CheckpointMismatch) as error:
        print_error(prog, error)
        return EXIT_USAGE
    except (NgspiceNotFound, NgspiceError) as error:
        print_error(prog, error)
        return EXIT_NGSPICE
    except (NonFiniteError, NotSettledError) as error:
        print_error(prog, error)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print_error(prog, "interrupted; outputs not yet written were not written")
        return EXIT_INTERRUPTED
    except Terminated:
        print_error(prog, "terminated; outputs not yet written were not written")
        return EXIT_TERMINATED
    except Exception as error:
        # an interrupt inside an extension module's import comes back as, e.g., an ImportError
        # raised from the KeyboardInterrupt: still an interrupt, not a failed run
        signal_error = _interrupt_cause(error)
        if signal_error is None:
            raise
        terminated = isinstance(signal_error, Terminated)
        print_error(prog, f"{'terminated' if terminated else 'interrupted'}; outputs not yet written were not written")
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt_cause(error: BaseException) -> BaseException | None:
    """The KeyboardInterrupt or Terminated that ``error`` was raised from (its cause or context
    chain), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (KeyboardInterrupt, Terminated)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def add_version_option(parser: argparse.ArgumentParser) -> None:
    from analogdp.report import package_version

    parser.add_argument("--version", action="version", version=f"%(prog)s (analogdp {package_version()})")


def command_line(prog: str, argv) -> str:
    """The command as a user would type it again."""
    import shlex

    return " ".join([prog] + [shlex.quote(a) for a in argv])


# ------------------------------------------------------------------------------------------
# Output files: one policy for every command line

OVERWRITE_POLICY = ("An existing output file is kept: the command refuses to start unless --force "
                    "is given, and then replaces it only when the new file is complete.")


def check_outputs(outputs: dict, *, force: bool, suffixes: dict | None = None) -> None:
    """Before any work: every output (option → Path or None) can be written — its directory
    exists and is writable, it is not a directory, two options do not name the same file, an
    existing file is replaced only with ``force`` (and must then be writable), and its suffix is
    one of ``suffixes[option]`` when given."""
    import os
    from pathlib import Path

    seen: dict = {}
    for option, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        parent = path.parent if str(path.parent) else Path(".")
        resolved = path.resolve()
        if resolved in seen:
            raise UsageError(f"{option} and {seen[resolved]} name the same file {path}")
        seen[resolved] = option
        if not parent.is_dir():
            raise UsageError(f"{option} {path}: directory {parent} does not exist")
        if path.is_dir():
            raise UsageError(f"{option} {path}: is a directory, expected a file name")
        if not os.access(parent, os.W_OK):
            raise UsageError(f"{option} {path}: directory {parent} is not writable")
        allowed = (suffixes or {}).get(option)
        if allowed and path.suffix.lower() not in allowed:
            raise UsageError(f"{option} {path}: the name must end in {', '.join(allowed)}")
        if path.exists():
            if not force:
                raise UsageError(f"{option} {path} exists; pass --force to overwrite it")
            # the mode bits too: root may write anything, but a read-only file says "keep me"
            if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
                raise UsageError(f"{option} {path} exists and is not writable")


def progress_counter(description: str, total: int, disabled: bool):
    """A callback ``(count)`` advancing a tqdm bar of examples on stderr, closed when full
    (None when disabled)."""
    if disabled:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=description, unit="example", file=sys.stderr, leave=False)

    def advance(count: int = 1) -> None:
        bar.update(count)
        if bar.n >= bar.total:
            bar.close()

    return advance


def progress_callback(description: str, total: int, disabled: bool):
    """A per-step callback ``(i, step)`` for the learning loop (None when disabled)."""
    advance = progress_counter(description, total, disabled)
    return None if advance is None else (lambda i, step: advance())


def report_problems(prog: str, problems: list[str]) -> int:
    """Each problem of a finished run on its own stderr line; exit status 1 if there was one."""
    for problem in problems:
        print(f"{prog}: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems else 0


def add_wire_options(parser: argparse.ArgumentParser) -> None:
    """The crossbar wires and tiling: two shortcuts (one resistance for every segment, one tile
    size) and every field of :class:`analogdp.circuit.wires.WireParams`."""
    from analogdp.circuit.wires import WireParams

    wires = parser.add_argument_group("crossbar wires and tiling (DESIGN §8.1; defaults: ideal wires, one array)")
    wires.add_argument("--r-wire-ohm", type=non_negative_float, default=None, metavar="OHM", dest="r_wire_ohm",
                       help="wire resistance per cell segment of rows and columns alike, ohm (NeuroSim 1T1R: "
                            "0.47 at 65 nm, 3.0 at 22 nm, 10 at 7 nm); the options below set each")
    wires.add_argument("--tile", type=size_pair, default=None, metavar="RxC", dest="tile",
                       help="physical array size, row lines x weight columns; larger layers are tiled and "
                            "their partial currents summed (a tile larger than the layer is one array)")
    add_field_options(wires, WireParams)


def add_amplifier_options(parser: argparse.ArgumentParser) -> None:
    """The finite-amplifier model: every field of :class:`analogdp.circuit.amplifiers.AmplifierParams`."""
    from analogdp.circuit.amplifiers import AmplifierParams

    group = parser.add_argument_group(
        "finite amplifiers (DESIGN §8.2; defaults: ideal): one single-pole model for the sense and "
        "compartment amplifiers")
    add_field_options(group, AmplifierParams)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where a sweep runs: an existing Dask scheduler, a LocalCluster of N workers, or serially."""
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                        help="address of a running dask scheduler (default: a LocalCluster on this machine)")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="worker processes of the LocalCluster (default: one per core)")
    parser.add_argument("--serial", action="store_true",
                        help="run in this process, one configuration after the other (no Dask)")
    parser.add_argument("--no-progress", action="store_true", help="no per-configuration lines on stderr")
