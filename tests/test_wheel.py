"""A wheel built from the repo carries both packages and the profiles (DESIGN.md, Layout)."""

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_lists_profiles(tmp_path):
    # build from a copy, so that setuptools' build/ folder does not land in the work tree
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "out",
        ".hypothesis", "notebooks", "benchmarks", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(src)], check=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "solver/simulate.py" in names and "poet/cli.py" in names
    assert "solver/baselines/dtr.py" in names
    assert len([n for n in names if n.startswith("poet/profiles_data/") and n.endswith(".toml")]) >= 8

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # The wheel's own files come from the wheel; its dependencies (already installed here) are
    # reached through a .pth line, so the test needs no network and no second torch.
    new_site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    Path(new_site, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    out = subprocess.run([str(venv / "bin" / "poet"), "profiles"], check=True, capture_output=True,
                         text=True, cwd=tmp_path).stdout
    rows = [line for line in out.splitlines()[2:] if line.strip()]
    assert len(rows) >= 8
    where = subprocess.run([str(py), "-c", "import poet, solver; print(poet.__file__); "
                            "print(solver.__file__)"], check=True, capture_output=True, text=True,
                           cwd=tmp_path).stdout
    assert all(line.startswith(str(venv)) for line in where.split()), where
