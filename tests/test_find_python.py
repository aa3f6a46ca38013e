"""`make` builds .venv with CPython 3.13 only: bin/find-python finds one (python3.13 on PATH,
else pyenv's newest 3.13.x), says what to install when there is none, and `make install`
rebuilds a .venv of another Python instead of reusing it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIND_PYTHON = REPO / "bin" / "find-python"
VERSION = "{}.{}".format(*sys.version_info[:2])
REAL_PYTHON = Path(sys.base_prefix) / "bin" / f"python{VERSION}"


def fake_python(path: Path, version: str) -> Path:
    """An executable `python` that is not CPython 3.13: it fails find-python's question."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexit 1  # CPython {version}, say\n")
    path.chmod(0o755)
    return path


def find(*arguments: str, path: Path, pyenv_root: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": f"{path}:/usr/bin:/bin",
        "PYENV_ROOT": str(pyenv_root),
        "HOME": str(pyenv_root.parent),
    }
    return subprocess.run(
        [str(FIND_PYTHON), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_the_running_interpreter_is_the_one_make_asks_for() -> None:
    assert VERSION == "3.13"
    assert REAL_PYTHON.exists()


def test_a_python_on_path_is_taken_when_it_is_the_right_version(tmp_path: Path) -> None:
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / f"python{VERSION}").symlink_to(REAL_PYTHON)
    found = find(VERSION, path=on_path, pyenv_root=tmp_path / "no-pyenv")
    assert found.stdout.strip() == str(on_path / f"python{VERSION}")


def test_pyenvs_newest_working_patch_release_is_taken(tmp_path: Path) -> None:
    # On PATH, a python3.13 that is not CPython 3.13 (e.g. a pyenv shim with no 3.13
    # selected): skipped. In pyenv, 3.13.10 is broken, 3.13.9 and 3.13.2 work.
    on_path = tmp_path / "bin"
    fake_python(on_path / f"python{VERSION}", "3.11")
    root = tmp_path / "pyenv"
    fake_python(root / "versions" / f"{VERSION}.10" / "bin" / f"python{VERSION}", "3.11")
    for patch in ("9", "2"):
        target = root / "versions" / f"{VERSION}.{patch}" / "bin" / f"python{VERSION}"
        target.parent.mkdir(parents=True)
        target.symlink_to(REAL_PYTHON)
    found = find(VERSION, path=on_path, pyenv_root=root)
    assert found.stdout.strip() == str(
        root / "versions" / f"{VERSION}.9" / "bin" / f"python{VERSION}"
    )


def test_nothing_found_says_what_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    assert find(VERSION, path=empty, pyenv_root=tmp_path / "none").stdout == ""
    advice = find("--help-install", VERSION, path=empty, pyenv_root=tmp_path / "none").stdout
    assert f"pyenv install {VERSION}" in advice
    assert f"make PYTHON=/path/to/python{VERSION}" in advice


def make_project(tmp_path: Path) -> Path:
    """The Makefile, bin/ and the CLI's package of the repository, with no requirements to
    install but setuptools, which installing the CLI needs."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(REPO / "Makefile", project / "Makefile")
    shutil.copytree(REPO / "bin", project / "bin")
    (project / "requirements.txt").write_text("")
    shutil.copy2(REPO / "pyproject.toml", project / "pyproject.toml")
    shutil.copytree(REPO / "media_pipeline", project / "media_pipeline")
    setuptools = next(
        line
        for line in (REPO / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("setuptools==")
    )
    (project / "requirements-dev.txt").write_text(f"-r requirements.txt\n{setuptools}\n")
    return project


def make_install(project: Path, python: Path = REAL_PYTHON) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "VIRTUAL"))}
    return subprocess.run(
        ["make", "--no-print-directory", "install", f"PYTHON={python}"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_a_venv_of_another_python_is_rebuilt(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    old = project / ".venv"
    fake_python(old / "bin" / "python", "3.11")
    (old / ".installed").touch()  # the stamp an earlier Makefile left
    (old / "lib" / "python3.11").mkdir(parents=True)

    done = make_install(project)

    assert done.returncode == 0, done.stderr
    assert f"rebuilding .venv with {REAL_PYTHON}" in done.stdout
    assert not (old / "lib" / "python3.11").exists()
    version = subprocess.run(
        [str(old / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == str(sys.version_info[:2])
    assert (old / f".installed-{VERSION}").exists()
    assert "Nothing to be done" in make_install(project).stdout


def test_make_refuses_a_named_python_of_another_version(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    other = fake_python(tmp_path / "other" / "python3", "3.11")
    done = make_install(project, other)
    assert done.returncode != 0
    assert f"{other} is not CPython {VERSION}" in done.stderr
    assert not (project / ".venv").exists()
