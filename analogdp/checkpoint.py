"""Resumable long runs: a training run's whole state saved now and then, so that a killed run
goes on from its last save instead of starting over (DESIGN §9.3).

A checkpoint is a pickle of the run's live objects (the circuit with its conductances, the
programmer with its device populations and random generators, the per-example columns, the
epoch order's generator and the position in it), written atomically (a temporary file renamed
into place, so a kill leaves the previous checkpoint or the new one, never half of one). It is
resumed only by the run that wrote it: the same algorithm, the same configuration and the same
analogdp source code (a fingerprint of every module), since a run continued under other code
would mix two sets of numbers in one result. Anything else is refused with the reason, and the
file is left alone.

Pickles execute code when loaded: resume only checkpoints you wrote.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import CheckpointMismatch

# Bumped whenever the saved state's layout changes.
CHECKPOINT_FORMAT = 1
# A training run's state is saved at most this often by default (s): a save of a 784-256-10 run
# costs ~0.1 s (≈ 30 MB) and a kill loses at most this much work.
DEFAULT_CHECKPOINT_EVERY_S = 300.0


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the text of every analogdp module (path and contents), in path order."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class Checkpoint:
    """Where a run's state is saved (``path``) and how often (``every_s``, wall seconds)."""

    path: Path
    every_s: float = DEFAULT_CHECKPOINT_EVERY_S
    _last_save_s: float = field(default=-float("inf"), init=False, repr=False)

    def __post_init__(self):
        self.path = Path(self.path)
        if not self.every_s > 0:
            raise ValueError(f"checkpoint every_s must be positive, got {self.every_s!r}")

    def due(self) -> bool:
        return time.monotonic() - self._last_save_s >= self.every_s

    def save(self, run_key: dict, state) -> None:
        """Write ``state`` for the run ``run_key`` (atomically; the clock of :meth:`due` restarts)."""
        from .report import atomic_path

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as temporary, open(temporary, "wb") as handle:
            pickle.dump({"format": CHECKPOINT_FORMAT, "key": _full_key(run_key), "state": state}, handle,
                        protocol=pickle.HIGHEST_PROTOCOL)
        self._last_save_s = time.monotonic()

    def load(self, run_key: dict):
        """The saved state of run ``run_key``, or None when there is no checkpoint yet. Raises
        CheckpointMismatch for a checkpoint of another run or code, and for a file that is not a
        checkpoint."""
        if not self.path.exists():
            return None
        try:
            with open(self.path, "rb") as handle:
                saved = pickle.load(handle)
        except Exception as error:
            raise CheckpointMismatch(f"checkpoint {self.path} cannot be read ({type(error).__name__}: {error}); "
                                     f"delete it to start the run over") from error
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointMismatch(f"checkpoint {self.path} is not a checkpoint of this format "
                                     f"({CHECKPOINT_FORMAT}); delete it to start the run over")
        key = _full_key(run_key)
        for name, what in (("run", "another run (algorithm or configuration)"),
                           ("code", "another version of the analogdp code")):
            if saved["key"].get(name) != key[name]:
                raise CheckpointMismatch(f"checkpoint {self.path} was written by {what}; resume it with the "
                                         f"same run and code, or delete it to start over")
        self._last_save_s = time.monotonic()
        return saved["state"]

    def remove(self) -> None:
        """Drop the checkpoint once the run's results are safely written."""
        self.path.unlink(missing_ok=True)


def _full_key(run_key: dict) -> dict:
    return {"run": json.dumps(run_key, sort_keys=True, default=str), "code": code_fingerprint()}
