"""gruq as an installed Python package: `pip install --no-deps .` into a fresh venv gives a
working `gruq` console script, and `scripts/setup`'s editable install does too.

The fresh venvs see the pinned dependencies of the project's .venv through a .pth
file (nothing is downloaded), and the builds run without build isolation (setuptools
comes with the venv). The project is copied to a temporary folder first, so that the
build leaves nothing in the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def fresh_venv(where: Path) -> Path:
    """A new, empty venv that also sees the packages of the interpreter running the tests."""
    venv.EnvBuilder(with_pip=False).create(where)  # pip and setuptools come from .venv, via the .pth
    (site_packages,) = (where / "lib").glob("python3*/site-packages")
    (site_packages / "gruq-test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return where / "bin"


def project_copy(where: Path) -> Path:
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, where / name)
    shutil.copytree(ROOT / "gruq", where / "gruq", ignore=shutil.ignore_patterns("__pycache__"))
    return where


def run(argv: list[str | Path], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv into which the project was pip-installed (not editable)."""
    tmp = tmp_path_factory.mktemp("pkg")
    bindir = fresh_venv(tmp / "venv")
    src = project_copy(tmp_path_factory.mktemp("src"))
    r = run([bindir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", src])
    assert r.returncode == 0, r.stderr
    return bindir


def test_pip_install_gives_a_gruq_console_script_with_help(installed, tmp_path):
    r = run([installed / "gruq", "--help"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: gruq ")
    for command in ("train", "evaluate", "search", "export", "runs"):
        assert command in r.stdout


def test_the_installed_gruq_is_the_package_in_the_venv_not_the_checkout(installed, tmp_path):
    r = run([installed / "python", "-c", "import gruq; print(gruq.__file__, gruq.__version__)"], cwd=tmp_path)
    path, version = r.stdout.split()
    assert Path(path).is_relative_to(installed.parent)
    assert version == __import__("gruq").__version__


def test_the_installed_gruq_runs_a_command_with_the_shipped_checkpoints(installed, tmp_path):
    """A wheel holds no checkpoints: GRUQ_ASSETS points at them (README, 'Install')."""
    env = {**os.environ, "GRUQ_ASSETS": str(ROOT / "assets")}
    r = run([installed / "gruq", "evaluate", "--task", "vowels", "--bits", "8", "--json"], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] > 0.9


def test_a_bad_argument_of_the_console_script_is_one_line_and_status_2(installed, tmp_path):
    r = run([installed / "gruq", "search", "--task", "vowels", "--pop", "1000000000"], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--pop" in r.stderr and "Traceback" not in r.stderr


def test_the_editable_install_of_scripts_setup_runs_the_checkout(tmp_path_factory, tmp_path):
    """The command scripts/setup runs (pip install --no-deps --no-build-isolation -e .)."""
    bindir = fresh_venv(tmp_path_factory.mktemp("editable") / "venv")
    src = project_copy(tmp_path_factory.mktemp("esrc"))
    r = run([bindir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", src])
    assert r.returncode == 0, r.stderr
    r = run([bindir / "python", "-c", "import gruq; print(gruq.__file__)"], cwd=tmp_path)
    assert Path(r.stdout.strip()) == src / "gruq" / "__init__.py"
    assert run([bindir / "gruq", "--help"], cwd=tmp_path).returncode == 0


def test_setup_never_installs_into_a_shared_venv():
    """A worktree's .venv is a symlink to another checkout's: scripts/setup must leave it alone."""
    text = (ROOT / "scripts" / "setup").read_text()
    assert "pip install -q --no-deps --no-build-isolation -e ." in text
    assert "! [ -L .venv ]" in text
    assert sys.prefix  # the suite itself runs in .venv


def test_help_works_where_none_of_the_dependencies_is_installed(tmp_path_factory, tmp_path):
    """`pip install --no-deps` into a bare venv (no numpy, no torch): `gruq --help` still
    answers, since registering the commands imports none of the dependencies."""
    src = project_copy(tmp_path_factory.mktemp("bsrc"))
    wheels = tmp_path_factory.mktemp("wheels")
    r = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", src, "-w", wheels])
    assert r.returncode == 0, r.stderr
    bare = tmp_path_factory.mktemp("bare") / "venv"
    venv.EnvBuilder(with_pip=False).create(bare)
    (wheel,) = wheels.glob("gruq-*.whl")
    r = run([sys.executable, "-m", "pip", "--python", bare / "bin" / "python", "install", "-q", "--no-deps", wheel])
    assert r.returncode == 0, r.stderr
    assert run([bare / "bin" / "python", "-c", "import numpy"]).returncode != 0  # really bare
    r = run([bare / "bin" / "gruq", "--help"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: gruq ") and "search" in r.stdout
