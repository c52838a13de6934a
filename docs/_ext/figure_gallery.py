"""Gallery pages for the figure notebooks, rendered by myst-nb without running them.

The notebooks in ``notebooks/`` are committed without outputs; ``ner figures`` runs them and writes each
figure as ``figures/figNN*.png``. At the start of a build this extension copies every notebook into
``docs/gallery/generated/`` with one markdown cell added under its title: which figure of the paper it
reproduces, the committed PNG(s) and how to redraw it. It also writes ``generated/overview.inc``, the
table that ``gallery/index.md`` includes. Files are rewritten only when their content changes, so that
incremental builds stay incremental; the folder is build output (ignored by git).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# What each notebook's figure is in the paper. The notebooks number their figures as the paper does
# (1-8 main text, 9-15 supplementary); 16, 17 and 18 have no counterpart there.
ADDED = {
    16: "No figure of the paper: added here to set the paper's evaluation protocol beside the corrected one.",
    17: "No figure of the paper: an ablation this reproduction adds (positives ranked by their own labels, "
        "and searched on all three label columns).",
    18: "No figure of the paper: beyond it, one latent space for many sessions (multi-session NER) decoded "
        "with no alignment, and a new day calibrated into it.",
}
NEEDS_MC_MAZE = {8, 11}
_NOTEBOOK = re.compile(r"^(\d\d)_(.+)\.ipynb$")
_TITLE = re.compile(r"^#\s+(.*)$", re.MULTILINE)


def paper_figure(number: int, title: str) -> str:
    """The sentence naming the paper's figure that notebook ``number`` reproduces."""
    if number in ADDED:
        return ADDED[number]
    where = "supplementary material" if "supplementary" in title.lower() or number > 8 else "main text"
    return f"Reproduces Figure {number} of the paper ({where})."


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def build_gallery(root: Path, out: Path) -> list[str]:
    """Write one notebook page per ``root/notebooks/NN_*.ipynb`` into ``out``; return the names written."""
    out.mkdir(parents=True, exist_ok=True)
    written, rows = [], []
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        match = _NOTEBOOK.match(notebook.name)
        if not match:
            continue
        number = int(match.group(1))
        content = json.loads(notebook.read_text(encoding="utf-8"))
        cells = content.get("cells", [])
        first_markdown = next((i for i, c in enumerate(cells) if c.get("cell_type") == "markdown"), None)
        heading = _TITLE.search(_source(cells[first_markdown])) if first_markdown is not None else None
        title = heading.group(1).strip() if heading else f"Figure {number}"
        if heading is None:  # every page needs a title
            cells.insert(0, {"cell_type": "markdown", "id": "gallery-title", "metadata": {},
                             "source": f"# {title}\n"})
            first_markdown = 0

        pngs = sorted((root / "figures").glob(f"fig{number:02d}*.png"))
        lines = [f"**{paper_figure(number, title)}**", ""]
        for png in pngs:
            _write_if_changed(out / png.name, png.read_bytes())
            written.append(png.name)
            lines += [f"```{{image}} {png.name}", f":alt: {png.stem}", ":width: 100%", "```", ""]
        if not pngs:
            if number in NEEDS_MC_MAZE:
                lines += ["No PNG is committed for this figure: it needs MC_Maze results, which are not shipped "
                          "(`ner mc-maze --nwb FILE`, then `ner figures --only 08 11`; see the README).", ""]
            else:
                lines += ["No PNG is committed for this figure yet (`ner figures` draws it).", ""]
        lines += [f"Notebook: `notebooks/{notebook.name}` (shown below without outputs). Redraw it with "
                  f"`ner figures --only {number:02d}`, which writes "
                  + (", ".join(f"`figures/{p.name}`" for p in pngs) if pngs else f"`figures/fig{number:02d}_*`")
                  + " (and PDFs).", ""]
        cells.insert(first_markdown + 1, {"cell_type": "markdown", "id": "gallery-figure", "metadata": {},
                                          "source": "\n".join(lines)})
        content["cells"] = cells
        name = notebook.name
        _write_if_changed(out / name, (json.dumps(content, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        written.append(name)

        short = re.sub(r"^Figure\s+\d+\s*(\(supplementary\))?\s*[—-]\s*", "", title)
        figure = ("new" if number in ADDED else
                  f"Fig. {number}" + (" (suppl.)" if number > 8 else ""))
        rows.append(f"| {{doc}}`{number:02d} <generated/{notebook.stem}>` | {figure} | {short} | "
                    f"{len(pngs) if pngs else 'none'} |")

    overview = ["| page | paper figure | what it shows | PNGs |", "|---|---|---|---|", *rows, ""]
    _write_if_changed(out / "overview.inc", "\n".join(overview).encode("utf-8"))
    written.append("overview.inc")
    for stale in out.iterdir():
        if stale.is_file() and stale.name not in written:
            stale.unlink()
    return written


def _on_builder_inited(app: Sphinx) -> None:
    srcdir = Path(app.srcdir)
    written = build_gallery(srcdir.parent, srcdir / "gallery" / "generated")
    logger.info("figure gallery: %d notebook pages", sum(name.endswith(".ipynb") for name in written))


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
