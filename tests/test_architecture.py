"""The package's shape, checked by tools: import-linter's layer contracts, private names, module size."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ner"


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_import_linter_contracts_hold():
    # The layers and the matplotlib ban are written in pyproject.toml; lint-imports reads them there.
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if linter is None:
        pytest.fail("lint-imports is missing: install the dev extra")
    run = subprocess.run([linter], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in run.stdout


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_another_modules_private_names(path):
    tree = ast.parse(path.read_text())
    private = [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names
               if alias.name.startswith("_") and not alias.name.startswith("__")
               and (node.level or (node.module or "").startswith("ner"))]
    assert not private, f"{path.name} imports private names {private}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_short(path):
    assert len(path.read_text().splitlines()) <= 400, f"{path} has grown past 400 lines: split it"


def test_subpackages_are_attributes_and_data_stays_light():
    # `import ner; ner.data.load_session` used to raise AttributeError; ner.data must not pull torch or CEBRA.
    code = ("import sys, ner; ner.data.load_session; ner.evaluation.decode_session; "
            "assert 'torch' not in sys.modules and 'cebra' not in sys.modules, sorted(sys.modules); "
            "ner.NER; assert 'cebra' in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
