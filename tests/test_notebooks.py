"""The notebooks: committed without outputs, and executed top to bottom in a kernel of this interpreter.

Each notebook runs in a fresh ``python3`` kernel (the venv's: ``kernel.json`` says ``python``, which
jupyter_client replaces with this interpreter) whose working directory is a temporary folder, so a
stray relative write would show up there instead of in the repository. The kernel (and the command-line
run it starts) gets one intra-op thread unless ``OMP_NUM_THREADS`` is set: on a 2-core machine shared
with other work, two-thread torch ops slowed the tour's distillation steps 4-15x (1.3 s vs 17 s a step,
measured), while one thread costs little on a quiet machine.

    .venv/bin/python -m pytest tests/test_notebooks.py -q
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_tour.ipynb", "02_your_own_models.ipynb", "03_sra_in_your_trainer.ipynb"]
PLOTLY = "application/vnd.plotly.v1+json"


def _execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600) -> float:
    """Run every cell in a fresh python3 kernel with ``cwd`` as working directory; seconds taken."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(cwd)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on the first cell that raises
    return time.perf_counter() - start


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def test_committed_notebooks_are_valid_and_have_no_outputs():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and any(c.cell_type == "markdown" for c in nb.cells), name
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{name} cell {i} has outputs: clear them before committing"
                assert cell.execution_count is None, f"{name} cell {i} has an execution count"
            assert "execution" not in cell.metadata, f"{name} cell {i} keeps execution timings"


def test_heavy_cells_are_off_by_default():
    nb = nbformat.read(NOTEBOOKS / "02_your_own_models.ipynb", as_version=4)
    flags = [line for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()]
    assert any(line.startswith("RUN_HEAVY = False") for line in flags)
    tour = nbformat.read(NOTEBOOKS / "01_tour.ipynb", as_version=4)
    assert any(line.startswith("USE_UMAP = False") for c in tour.cells for line in c.source.splitlines())


@pytest.mark.slow
def test_kernel_runs_this_interpreter(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import json, sys; print(json.dumps([sys.executable, sys.prefix]))")
    ]
    _execute(nb, tmp_path, timeout=120)
    (out,) = _outputs(nb)
    executable, prefix = json.loads(out["text"])
    assert prefix == sys.prefix, f"the notebook kernel runs {executable}, not this venv's {sys.executable}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, tmp_path, monkeypatch):
    if "OMP_NUM_THREADS" not in os.environ:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # read by the kernel at start (see module docstring)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    seconds = _execute(nb, tmp_path)
    print(f"{name}: executed in {seconds:.0f} s")
    outputs = _outputs(nb)
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    figures = [o for o in outputs if PLOTLY in o.get("data", {})]
    assert len(figures) >= (9 if name.startswith("01") else 2), f"{len(figures)} plotly figures rendered"
    for fig in figures:
        assert fig["data"][PLOTLY]["data"], "a figure without traces"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Traceback" not in text
    assert list(tmp_path.iterdir()) == [], "the notebook wrote into its working directory"
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before, "the notebook wrote next to itself"
