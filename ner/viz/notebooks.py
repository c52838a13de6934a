"""Executing the figure notebooks: what ``ner figures`` does."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ner.workflow.store import REPOSITORY

__all__ = ["notebooks_dir", "run_notebooks"]


def notebooks_dir() -> Path:
    """The repository's ``notebooks`` folder."""
    return REPOSITORY / "notebooks"


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
                               resources={"metadata": {"path": str(folder)}}).execute()
            except CellExecutionError as error:
                raise RuntimeError(f"notebook {path.name} failed:\n{error}") from None
            finally:
                if kernel.has_kernel:
                    kernel.shutdown_kernel()
        timings[path.name] = round(time.perf_counter() - start, 2)
    return timings
