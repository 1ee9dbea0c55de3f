"""Every notebook executes cleanly in its small-size mode, labels every plot axis with a unit,
and is committed with its outputs (so a reader sees the plots without running it)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"energy_per_update.ipynb", "spice_crosscheck.ipynb", "learning_on_crossbar.ipynb", "devices.ipynb",
            "training_on_crossbar.ipynb", "wires_and_amplifiers.ipynb"}
SMALL_MODE_VARIABLE = "ANALOGDP_NOTEBOOK_SMALL"
CELL_TIMEOUT_S = 300

# Run right after the parameters cell: keep every figure open so that the last cell can
# inspect them (the inline backend closes figures once shown).
KEEP_FIGURES = "%config InlineBackend.close_figures = False"

# Appended: every axes that shows data has a y label and (itself or an axes sharing its x)
# an x label, and each label names a unit in parentheses, e.g. "time (ns)".
CHECK_AXES = textwrap.dedent('''
    import re as _re
    import matplotlib.pyplot as _plt

    def _has_unit(label):
        return bool(_re.search(r"\\([^)]+\\)", label))

    _problems, _checked = [], 0
    for _number in _plt.get_fignums():
        _figure = _plt.figure(_number)
        _title = _figure._suptitle.get_text() if _figure._suptitle else f"figure {_number}"
        for _ax in _figure.axes:
            if not (_ax.lines or _ax.patches or _ax.collections or _ax.images):
                continue
            _checked += 1
            _x_labels = [_ax.get_xlabel()] + [_other.get_xlabel() for _other in _figure.axes
                                               if _ax.get_shared_x_axes().joined(_ax, _other)]
            if not any(_has_unit(label) for label in _x_labels):
                _problems.append(f"{_title} / {_ax.get_title()!r}: x label {_ax.get_xlabel()!r} without a unit")
            if not _has_unit(_ax.get_ylabel()):
                _problems.append(f"{_title} / {_ax.get_title()!r}: y label {_ax.get_ylabel()!r} without a unit")
    assert _checked > 0, "no plot was drawn"
    assert not _problems, _problems
''')


def test_the_notebooks_are_there():
    assert {p.name for p in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_small_mode_with_labelled_axes(path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    parameters = notebook.cells[1] if notebook.cells[0].cell_type == "markdown" else notebook.cells[0]
    assert "parameters" in parameters.metadata.get("tags", []), "the parameters cell comes first"
    assert SMALL_MODE_VARIABLE in parameters.source and "SMALL" in parameters.source
    position = notebook.cells.index(parameters) + 1
    notebook.cells.insert(position, nbformat.v4.new_code_cell(KEEP_FIGURES))
    notebook.cells.append(nbformat.v4.new_code_cell(CHECK_AXES))
    monkeypatch.setenv(SMALL_MODE_VARIABLE, "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_with_its_plots(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code), "run it before committing"
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_the_axis_check_catches_a_label_without_unit():
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(KEEP_FIGURES),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\n"
                                  "plt.plot([0, 1], [0, 1]); plt.xlabel('time (ns)'); plt.ylabel('voltage')\n"
                                  "plt.show()"),
        nbformat.v4.new_code_cell(CHECK_AXES)])
    with pytest.raises(CellExecutionError, match="without a unit"):
        NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3").execute()
