"""Executing the figure notebooks: what ``ner figures`` does."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ner.data.download import REFERENCE_ENV
from ner.data.sessions import DATA_DIR_ENV
from ner.viz.figures import FIGURES_DIR_ENV
from ner.viz.maze import REFERENCE_ENV as MAZE_REFERENCE_ENV
from ner.workflow.store import CACHE_DIR_ENV, REPOSITORY

__all__ = ["notebooks_dir", "kernel_environment", "run_notebooks"]


def notebooks_dir() -> Path:
    """The repository's ``notebooks`` folder."""
    return REPOSITORY / "notebooks"


def kernel_environment() -> dict[str, str]:
    """This process's environment with every folder variable the figures read made absolute: the
    kernels run in ``notebooks/``, where a relative folder would name another one (or none)."""
    folders = (DATA_DIR_ENV, REFERENCE_ENV, CACHE_DIR_ENV, FIGURES_DIR_ENV, MAZE_REFERENCE_ENV)
    return {**os.environ, **{name: str(Path(os.environ[name]).resolve())
                             for name in folders if os.environ.get(name)}}


def run_notebooks(names: Iterable[str] | None = None, timeout: int = 600, progress: bool = True) -> dict:
    """Execute the figure notebooks (all, or those whose file name starts with one of ``names``) in a
    fresh kernel each, in their folder. Returns {notebook: seconds}; the first failing one raises
    with the notebook's name and the error it printed.
    """
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from tqdm.auto import tqdm

    folder = notebooks_dir()
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if names is not None:
        names = list(names)
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(name) for name in names)]
        if not notebooks:
            raise ValueError(f"no notebook in {folder} starts with {', '.join(names)}")
    timings = {}
    for path in tqdm(notebooks, desc="notebooks", unit="nb", disable=not progress):
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        # Local sockets (IPC) rather than TCP: nothing else on the machine can reach the kernel, and the
        # kernel has no reason to warn about unencrypted traffic on every run.
        with tempfile.TemporaryDirectory() as sockets:
            kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
            try:
                NotebookClient(notebook, km=kernel, timeout=timeout,
                               resources={"metadata": {"path": str(folder)}}).execute(env=kernel_environment())
            except CellExecutionError as error:
                raise RuntimeError(f"notebook {path.name} failed:\n{error}") from None
            finally:
                if kernel.has_kernel:
                    kernel.shutdown_kernel()
        timings[path.name] = round(time.perf_counter() - start, 2)
    return timings
