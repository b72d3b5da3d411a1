"""The library installs as `semcorr` (from the core/ folder) and no top-level `core` is importable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core"


def test_every_library_package_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert conf["package-dir"] == {"semcorr": "core", "semcorr_cli": "semcorr_cli"}
    folders = {
        ".".join(["semcorr", *p.parent.relative_to(CORE).parts]) for p in CORE.rglob("__init__.py") if "__pycache__" not in p.parts
    }
    assert set(conf["packages"]) == folders | {"semcorr_cli"}
    assert (CORE / "weights").is_dir() and conf["package-data"]["semcorr"] == ["weights/*.safetensors", "weights/*.json"]


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_import_semcorr_works_and_import_core_does_not(tmp_path):
    # run outside the checkout, as a user would: only the installed names are importable
    r = _python("import semcorr, semcorr_cli; print(semcorr.__file__)", tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).parent.name in {"core", "semcorr"}  # editable: core/; wheel: site-packages/semcorr
    r = _python("import core", tmp_path)
    assert r.returncode != 0 and "No module named 'core'" in r.stderr


def test_the_command_line_starts_without_numpy_or_torch(tmp_path):
    # `semcorr <stage> --help` and option checks run before any heavy import (issue 18's start-up)
    code = "import sys, semcorr_cli.main; print(sorted(m for m in ('numpy', 'torch', 'h5py', 'PIL', 'torchvision') if m in sys.modules))"
    r = _python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
