"""Every notebook in notebooks/ runs top to bottom without errors (executed with nbclient).

The kernel is the "python3" kernel spec that ipykernel installs into the environment; jupyter_client
starts it with this interpreter (sys.executable), so the notebook sees the same poet and torch. If no
such spec is installed, one is written to a temporary folder. Notebooks run in a temporary working
directory, so the files they save land there (and are checked) rather than in the repository.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
FAST = {"quickstart.ipynb"}                             # measured well under 20 s
EXPECTED_FILES = {"quickstart.ipynb": ["quickstart_losses.png"]}


def _kernel_manager(tmp_path: Path):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

    ksm = KernelSpecManager()
    try:
        ksm.get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel.kernelspec import write_kernel_spec

        kernels = tmp_path / "kernels"
        write_kernel_spec(kernels / "python3")
        ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


def _params():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        marks = [] if path.name in FAST else [pytest.mark.slow]
        yield pytest.param(path, id=path.stem, marks=marks)


def test_there_is_a_quickstart():
    assert (NOTEBOOKS / "quickstart.ipynb").is_file()


@pytest.mark.parametrize("path", list(_params()))
def test_notebook_runs(path: Path, tmp_path: Path):
    nb = nbformat.read(path, as_version=4)
    workdir = tmp_path / "run"
    workdir.mkdir()
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=600,
                                     resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and traceback) on any error
    seconds = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
    for name in EXPECTED_FILES.get(path.name, []):
        assert (workdir / name).stat().st_size > 0, f"{path.name} did not write {name}"
    if path.name in FAST:
        assert seconds < 60, f"{path.name} took {seconds:.0f} s; the quickstart should run in under a minute"
