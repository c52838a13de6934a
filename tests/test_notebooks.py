"""The 18 figure notebooks (the paper's 17 and one beyond it) run for real, on the committed data_NER/ caches, into a temporary figures folder."""

import ast
import json

import matplotlib.image
import pytest

from ner.data.download import paper_results_dir
from ner.viz import figures
from ner.viz.notebooks import notebooks_dir, run_notebooks

# Figures each notebook writes (08 and 11 only where MC_Maze results exist).
EXPECTED = {
    "01": ["fig01_motivation"], "02": ["fig02_pipeline_latents"], "03": ["fig03_m1_latents_aligned"],
    "04": ["fig04_decoding_all_areas"], "05": ["fig05_m1_cross_session"],
    "06": ["fig06a_pmd_latents_aligned", "fig06b_m1_pmd_matrices"], "07": ["fig07a_s1_latents_aligned", "fig07b_s1_matrices"],
    "09": ["fig09_umap"], "10": ["fig10_pca_dpca"], "12": ["fig12_convergence"], "13": ["fig13_accuracy_pmd_s1"],
    "14": ["fig14_knn_cebra16d"], "15": ["fig15_mihili"], "16": ["fig16_protocols"], "17": ["fig17_ablation"],
    "18": ["fig18_shared_space"],
}
MC_MAZE = {"08": ["fig08_mc_maze"], "11": ["fig11_cebra_mc_maze"]}


def code_of(path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


@pytest.mark.parametrize("path", sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name[:2])
def test_notebooks_only_read_and_draw(path):
    """A notebook imports only the library, numpy and matplotlib, and reads data through ner.viz.figures."""
    tree = ast.parse(code_of(path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    allowed = {"numpy", "matplotlib.pyplot", "ner.viz"}
    assert imported <= allowed, f"{path.name} imports {sorted(imported - allowed)}"
    calls = {node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id in ("figures", "maze")}
    readers = {"embedding", "decoding", "cross_session", "result", "shared_space", "parity_report", "published",
               "load_runs"}
    assert calls & readers, f"{path.name} reads no cache through the library"


def test_there_is_one_notebook_per_figure():
    numbers = sorted(path.name[:2] for path in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    assert numbers == [f"{n:02d}" for n in range(1, 19)]


@pytest.mark.slow
def test_all_18_notebooks_write_their_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("NER_FIGURES_DIR", str(tmp_path))
    monkeypatch.delenv("NER_CACHE_DIR", raising=False)
    expected = dict(EXPECTED)
    # The paper's stored results ($NER_REFERENCE_DIR in CI, or what `ner fetch --paper-results` put in the data
    # directory): their Fig8, the original's MC_Maze results, draws figures 8 and 11.
    stored = paper_results_dir()
    if stored is not None and (stored / "Fig8").is_dir():
        expected.update(MC_MAZE)
    cache_files = {path: path.stat().st_mtime_ns for path in figures.cache_dir().rglob("*.npz")}

    timings = run_notebooks(progress=False)

    assert len(timings) == 18
    names = [name for listed in expected.values() for name in listed]
    for name in names:
        assert (tmp_path / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
        image = matplotlib.image.imread(tmp_path / f"{name}.png")
        # A drawn figure: a real size, and more than one colour in it.
        assert min(image.shape[:2]) > 300 and image[..., :3].std() > 0.05, name
    assert sorted(path.stem for path in tmp_path.glob("*.png")) == sorted(names)
    # Notebooks only read the caches.
    assert {path: path.stat().st_mtime_ns for path in figures.cache_dir().rglob("*.npz")} == cache_files


def test_a_missing_cache_fails_naming_the_notebook_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("NER_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("NER_FIGURES_DIR", str(tmp_path / "figures"))
    with pytest.raises(RuntimeError, match="(?s)01_motivation.ipynb failed.*ner reproduce --methods cebra3d"):
        run_notebooks(["01"], progress=False)
    assert not (tmp_path / "figures").exists()
    with pytest.raises(ValueError, match="no notebook .* starts with 99"):
        run_notebooks(["99"], progress=False)


def test_running_a_notebook_prints_no_kernel_warning(tmp_path, monkeypatch, capfd):
    # Over TCP every kernel warned that its traffic was unencrypted; the runner talks to it over local sockets.
    monkeypatch.setenv("NER_FIGURES_DIR", str(tmp_path))
    monkeypatch.delenv("NER_CACHE_DIR", raising=False)
    run_notebooks(["13"], progress=False)
    assert "WARNING" not in capfd.readouterr().err
    assert (tmp_path / "fig13_accuracy_pmd_s1.png").exists()


def test_a_notebook_run_twice_writes_the_same_bytes(tmp_path, monkeypatch):
    # Fig 16 draws the paper's protocol, whose rotation pick is rounding noise: its numbers come from the
    # figure data computed once, so the figure, and every file's metadata, repeat exactly.
    monkeypatch.delenv("NER_CACHE_DIR", raising=False)
    written = []
    for run in ("first", "second"):
        monkeypatch.setenv("NER_FIGURES_DIR", str(tmp_path / run))
        run_notebooks(["16"], progress=False)
        written.append({path.name: path.read_bytes() for path in sorted((tmp_path / run).iterdir())})
    assert sorted(written[0]) == ["fig16_protocols.pdf", "fig16_protocols.png"]
    assert written[0] == written[1]
