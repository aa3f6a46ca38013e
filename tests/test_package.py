"""The Lambda deployment package: built offline from runtime wheels only, and nothing else.

The package is built once for the module, as `make package` builds it: the wheelhouse in
.cache/wheelhouse/<runtime>-<arch> is filled (online the first time, from the cache after that) and
`chalice package` runs with pip confined to it. The zip must then hold the app, and the
runtime requirements exactly as their manylinux wheels for the Lambda machine ship them:
no host-built object, no test, dev tool or AWS SDK, and for bytecode exactly one
unchecked-hash CPython 3.13 pyc per .py, which the runtime loads instead of compiling.
The checkers are themselves proven to fail on small synthetic packages.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import py_compile
import re
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import chalice
import chalice.app
import pytest
from chalice.config import Config

from infra import package

REPO = Path(__file__).resolve().parents[1]
STAGE = "dev"
CONFIG: dict[str, Any] = json.loads((REPO / ".chalice" / "config.json").read_text())
ARCH = package.configured_architecture(REPO, STAGE)
MACHINE = package.MACHINES[ARCH]
WORKER = "make_thumbnails"
EXTENSION = rf"\.cpython-313-{MACHINE}-linux-gnu\.so"
ALWAYS_FORBIDDEN = {"boto3", "botocore", "s3transfer"}  # the Lambda runtime provides them
CHALICE_RUNTIME = {"chalice/__init__.py", "chalice/app.py"}  # what Chalice vendors itself


@dataclass(frozen=True)
class Built:
    zip_path: Path
    template_path: Path
    wheelhouse: Path
    names: list[str]
    seconds: float


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    started = time.monotonic()
    wheelhouse = package.default_wheelhouse(ARCH, REPO)
    package.fill_wheelhouse(REPO / "requirements.txt", wheelhouse, ARCH)
    result = package.build_package(STAGE, tmp_path_factory.mktemp("package"), wheelhouse, ARCH)
    with zipfile.ZipFile(result.zip_path) as deployment:
        names = [info.filename for info in deployment.infolist() if not info.is_dir()]
    return Built(
        result.zip_path, result.template_path, wheelhouse, names, time.monotonic() - started
    )


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if found and not line.startswith("-"):
            names.add(package.normalise(found[0]))
    return names


def wheel_names(wheelhouse: Path) -> set[str]:
    return {package.Wheel.parse(path.name).name for path in wheelhouse.glob("*.whl")}


def dev_only_distributions(wheelhouse: Path) -> set[str]:
    """What development installs and Lambda must not get (unless the app needs it too)."""
    dev = requirement_names(REPO / "requirements-dev.txt") - wheel_names(wheelhouse)
    return dev | ALWAYS_FORBIDDEN


def top_level_names(distributions: Iterable[str]) -> set[str]:
    """The top-level packages and modules the (installed) distributions provide."""
    names = set()
    for name in distributions:
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in files:
            top = file.parts[0]
            if not top.startswith("..") and not top.endswith((".dist-info", ".data")):
                names.add(top)
    return names - {"__pycache__"}


def forbidden_entries(names: Iterable[str], dev_dists: set[str]) -> list[str]:
    """Entries Lambda must not get: project-only files, caches, dev tooling, the AWS SDK."""
    project_only = {path.name for path in REPO.iterdir()} - {"app.py", "chalicelib", "vendor"}
    project_only |= {"tests", "devstack", "infra", ".venv", ".cache", ".chalice"}
    dev_top_levels = top_level_names(dev_dists) | dev_dists
    names = list(names)
    compiled = {package.bytecode_path(name) for name in names if name.endswith(".py")}
    found = []
    for name in names:
        parts = PurePosixPath(name).parts
        top = parts[0]
        distribution = package.normalise(top.split("-")[0])
        if name in compiled:
            continue  # the bytecode of a packaged source: see the bytecode tests
        if top in project_only:
            found.append(f"{name}: project-only")
        elif "__pycache__" in parts or name.endswith((".pyc", ".pyo")):
            found.append(f"{name}: bytecode cache")
        elif top.endswith(".dist-info") and distribution in dev_dists:
            found.append(f"{name}: development distribution")
        elif top == "chalice":
            if name not in CHALICE_RUNTIME:
                found.append(f"{name}: Chalice beyond its runtime")
        elif top in dev_top_levels:
            found.append(f"{name}: development package")
    return found


# --- the built package ------------------------------------------------------------------


def test_wheelhouse_holds_only_runtime_wheels(built: Built) -> None:
    wheels = [package.Wheel.parse(path.name) for path in built.wheelhouse.iterdir()]
    assert {w.filename for w in wheels if not w.compatible(ARCH)} == set()
    assert requirement_names(REPO / "requirements.txt") <= {w.name for w in wheels}
    native = {w.name for w in wheels if w.native(ARCH)}
    assert {"pillow", "pillow-heif"} <= native


def test_template_targets_the_runtime_and_architecture(built: Built) -> None:
    functions = package.lambda_functions(built.template_path)
    assert set(functions) == set(CONFIG["lambda_functions"])
    for name, function in functions.items():
        assert function["runtime"] == "python3.13", name
        assert function["architectures"] == [ARCH], name
    assert package.template_problems(built.template_path, ARCH) == []


def test_template_applies_each_functions_settings(built: Built) -> None:
    functions = package.lambda_functions(built.template_path)
    for name, function in functions.items():
        settings = Config(chalice_stage=STAGE, function_name=name, config_from_disk=CONFIG)
        assert function["memory_size"] == settings.lambda_memory_size, name
        assert function["timeout"] == settings.lambda_timeout, name
        assert function.get("reserved_concurrent_executions") == settings.reserved_concurrency
        assert function["tracing_config"] == {"mode": "Active"}, name
    assert functions[WORKER]["reserved_concurrent_executions"] == 20
    assert functions[WORKER]["memory_size"] == 1769
    assert functions[WORKER]["timeout"] == 60


def test_shared_libraries_come_unchanged_from_runtime_wheels(built: Built) -> None:
    shared = [name for name in built.names if re.search(r"\.so(\.|$)", name)]
    assert len(shared) > 10
    assert package.shared_library_problems(built.zip_path, built.wheelhouse, ARCH) == []


def test_every_file_is_the_apps_or_a_wheels(built: Built) -> None:
    assert package.provenance_problems(built.zip_path, built.wheelhouse, REPO) == []


def test_no_tests_caches_dev_tooling_or_aws_sdk(built: Built) -> None:
    assert forbidden_entries(built.names, dev_only_distributions(built.wheelhouse)) == []
    chalice_files = {name for name in built.names if name.startswith("chalice/")}
    assert chalice_files == CHALICE_RUNTIME | {package.bytecode_path(n) for n in CHALICE_RUNTIME}


def test_everything_the_app_needs_is_there(built: Built) -> None:
    names = set(built.names)
    app = {name for name in package.app_files(REPO) if not name.startswith("chalice/")}
    assert {
        "app.py",
        "chalicelib/__init__.py",
        "chalicelib/imaging/__init__.py",
        "chalicelib/console_assets/console.html",  # the console's page, read at run time
    } <= app
    assert app - names == set()
    for pattern in (
        r"PIL/__init__\.py",
        rf"PIL/_imaging{EXTENSION}",
        rf"PIL/_webp{EXTENSION}",
        rf"PIL/_avif{EXTENSION}",
        r"pillow_heif/__init__\.py",
        rf"(pillow_heif/)?_pillow_heif{EXTENSION}",
        r"aws_lambda_powertools/__init__\.py",
        r"aws_lambda_powertools/logging/__init__\.py",
    ):
        assert any(re.fullmatch(pattern, name) for name in names), pattern
    installed = {
        package.normalise(PurePosixPath(name).parts[0].split("-")[0])
        for name in names
        if name.endswith(".dist-info/METADATA")
    }
    assert requirement_names(REPO / "requirements.txt") <= installed


# --- its bytecode -------------------------------------------------------------------------

# CPython 3.13's magic number (3571, unchanged through 3.13.x): the bytecode built on this
# interpreter is the bytecode Lambda's python3.13 loads.
PYTHON_313_MAGIC = b"\xf3\r\r\n"
PACKAGED_BY_APP = {"app", "chalicelib", "chalice", "aws_lambda_powertools", "jmespath"}

# Run in the extracted package: records every module the import system compiles from
# source (it does when a module's pyc is missing or stale), then imports the app.
IMPORT_APP_CHILD = """
import importlib.machinery, json, sys
compiled = []
loader = importlib.machinery.SourceFileLoader
source_to_code = loader.source_to_code
def recording(self, data, path, *, _optimize=-1):
    compiled.append(path)
    return source_to_code(self, data, path, _optimize=_optimize)
loader.source_to_code = recording
import app
modules = {
    name: {"file": module.__file__, "cached": getattr(module, "__cached__", None)}
    for name, module in sys.modules.items()
    if (getattr(module, "__file__", None) or "").startswith(sys.argv[1])
}
print(json.dumps({"compiled": compiled, "modules": modules}))
"""


def test_the_interpreter_builds_bytecode_for_the_runtime() -> None:
    assert importlib.util.MAGIC_NUMBER == PYTHON_313_MAGIC == package.RUNTIME_MAGIC
    assert sys.implementation.cache_tag == package.CACHE_TAG == "cpython-313"


def test_every_module_has_its_unchecked_hash_bytecode(built: Built) -> None:
    sources = [name for name in built.names if name.endswith(".py")]
    caches = {name for name in built.names if "__pycache__" in name or name.endswith(".pyc")}
    assert len(sources) > 100
    assert caches == {package.bytecode_path(name) for name in sources}
    with zipfile.ZipFile(built.zip_path) as deployment:
        for name in ("app.py", "chalicelib/api.py", "typing_extensions.py"):
            pyc = deployment.read(package.bytecode_path(name))
            assert pyc[:4] == PYTHON_313_MAGIC, name
            assert int.from_bytes(pyc[4:8], "little") == 0b01, name  # hash-based, unchecked
            assert pyc[8:16] == importlib.util.source_hash(deployment.read(name)), name
    assert "chalicelib/__pycache__/api.cpython-313.pyc" in caches
    assert package.bytecode_problems(built.zip_path) == []


def tree(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_packaged_app_imports_from_its_bytecode(built: Built, tmp_path: Path) -> None:
    """Bytecode writing stays on: a pyc the runtime found stale would be compiled (and
    recorded) and rewritten; none is, and every module of the package has its pyc."""
    root = tmp_path / "task"
    with zipfile.ZipFile(built.zip_path) as deployment:
        deployment.extractall(root)  # fresh mtimes: a timestamp pyc would now be stale
    before = tree(root)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_APP_CHILD, str(root) + os.sep],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["compiled"] == []
    modules = report["modules"]
    assert {name.split(".")[0] for name in modules} >= PACKAGED_BY_APP
    assert len(modules) > 50
    for name, module in modules.items():
        if module["file"].endswith(".py"):
            assert Path(module["cached"]).is_file(), name
    assert tree(root) == before


def test_build_refuses_an_interpreter_without_the_runtimes_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.implementation, "cache_tag", "cpython-314")
    with pytest.raises(package.PackagingError, match=r"CPython 3\.13"):
        package.build_package(STAGE, tmp_path / "out", package.default_wheelhouse(ARCH), ARCH)
    assert not (tmp_path / "out").exists()


def test_build_is_offline_and_refuses_a_missing_wheel(tmp_path: Path) -> None:
    empty = tmp_path / "wheelhouse"
    empty.mkdir()
    with pytest.raises(package.PackagingError, match=r"(?i)pillow"):
        package.build_package(STAGE, tmp_path / "out", empty, ARCH)
    assert not (tmp_path / "out" / package.DEPLOYMENT_ZIP).exists()


# --- the checkers, on synthetic packages ------------------------------------------------


def elf(e_machine: int, payload: bytes = b"") -> bytes:
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"  # 64-bit, little-endian, version 1
    header[16:18] = (3).to_bytes(2, "little")  # ET_DYN
    header[18:20] = e_machine.to_bytes(2, "little")
    return bytes(header) + payload


def elf_needing(e_machine: int, *versions: str) -> bytes:
    """A 64-bit ELF object whose GNU version-needs section asks libc.so.6 for `versions`
    (e.g. "GLIBC_2.17"), as the dynamic loader reads it: a string table and one Verneed
    entry with an aux entry per version."""
    strings = b"\0libc.so.6\0" + b"".join(v.encode() + b"\0" for v in versions)
    name_at, offsets = 11, []
    for version in versions:
        offsets.append(name_at)
        name_at += len(version) + 1
    strings_at = 64
    needs_at = strings_at + len(strings) + (-len(strings) % 8)
    needs = struct.pack("<HHIII", 1, len(versions), 1, 16, 0) + b"".join(
        struct.pack("<IHHII", 0, 0, 2 + i, at, 16 if i + 1 < len(versions) else 0)
        for i, at in enumerate(offsets)
    )
    sections_at = needs_at + len(needs)
    sections = (
        bytes(64)
        + struct.pack(  # the null section, .dynstr, .gnu.version_r
            "<IIQQQQIIQQ", 1, 3, 0, 0, strings_at, len(strings), 0, 0, 1, 0
        )
        + struct.pack("<IIQQQQIIQQ", 9, 0x6FFFFFFE, 0, 0, needs_at, len(needs), 1, 1, 8, 0)
    )
    header = bytearray(elf(e_machine))
    header[0x28:0x30] = sections_at.to_bytes(8, "little")
    header[0x3A:0x3E] = struct.pack("<HH", 64, 3)
    body = strings.ljust(needs_at - strings_at, b"\0") + needs
    return bytes(header) + body + sections


AARCH64, X86_64 = 183, 62


def make_wheel(wheelhouse: Path, filename: str, files: dict[str, bytes]) -> Path:
    name, version = filename.split("-")[:2]
    dist_info = f"{name}-{version}.dist-info"
    files = {**files, f"{dist_info}/METADATA": f"Name: {name}\nVersion: {version}\n".encode()}
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    wheelhouse.mkdir(exist_ok=True)
    contents = {**files, f"{dist_info}/RECORD": record.getvalue().encode()}
    return write_zip(wheelhouse / filename, contents)


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


GOOD_TAGS = "cp313-cp313-manylinux_2_28_aarch64"


@pytest.mark.parametrize(
    ("tags", "in_wheel", "in_zip", "expected"),
    [
        pytest.param(GOOD_TAGS, elf(AARCH64), elf(AARCH64), [], id="aarch64-wheel"),
        pytest.param("cp38-abi3-manylinux2014_aarch64", elf(AARCH64), elf(AARCH64), [], id="abi3"),
        pytest.param(
            GOOD_TAGS,
            elf(AARCH64),
            elf(X86_64),
            ["differs from the RECORD", "e_machine 62"],
            id="rebuilt-on-the-host",
        ),
        pytest.param(
            "cp313-cp313-manylinux_2_28_x86_64",
            elf(X86_64),
            elf(X86_64),
            ["not a manylinux wheel", "e_machine 62"],
            id="x86_64-wheel",
        ),
        pytest.param(
            "cp313-cp313-manylinux_2_35_aarch64",
            elf(AARCH64),
            elf(AARCH64),
            ["not a manylinux wheel"],
            id="glibc-newer-than-the-runtime",
        ),
        pytest.param(
            "py3-none-any", elf(AARCH64), elf(AARCH64), ["not a manylinux wheel"], id="pure-wheel"
        ),
        pytest.param(
            "cp312-cp312-manylinux_2_28_aarch64",
            elf(AARCH64),
            elf(AARCH64),
            ["not a manylinux wheel"],
            id="other-python",
        ),
        pytest.param(GOOD_TAGS, elf(X86_64), elf(X86_64), ["e_machine 62"], id="mislabelled"),
        pytest.param(GOOD_TAGS, b"not elf", b"not elf", ["not an ELF object"], id="not-elf"),
        pytest.param(
            GOOD_TAGS,
            elf_needing(AARCH64, "GLIBC_2.17", "GLIBC_2.34"),
            elf_needing(AARCH64, "GLIBC_2.17", "GLIBC_2.34"),
            [],
            id="needs-the-runtimes-glibc",
        ),
        pytest.param(
            GOOD_TAGS,
            elf_needing(AARCH64, "GLIBC_2.17", "GLIBC_2.38"),
            elf_needing(AARCH64, "GLIBC_2.17", "GLIBC_2.38"),
            ["needs GLIBC_2.38, newer than the runtime's 2.34"],
            id="object-built-for-a-newer-glibc",
        ),
        pytest.param(
            GOOD_TAGS,
            elf_needing(AARCH64, "GLIBC_2.17")[:-40],
            elf_needing(AARCH64, "GLIBC_2.17")[:-40],
            ["ELF version tables cannot be read"],
            id="truncated-version-tables",
        ),
    ],
)
def test_shared_library_checker(
    tmp_path: Path, tags: str, in_wheel: bytes, in_zip: bytes, expected: list[str]
) -> None:
    make_wheel(tmp_path / "wheels", f"fake-1.0-{tags}.whl", {"fake/_ext.so": in_wheel})
    deployment = write_zip(tmp_path / "deployment.zip", {"fake/_ext.so": in_zip})
    problems = package.shared_library_problems(deployment, tmp_path / "wheels", "arm64")
    assert all(any(e in p for p in problems) for e in expected), problems
    assert bool(problems) == bool(expected), problems


def test_every_packaged_library_loads_on_the_runtimes_glibc(built: Built) -> None:
    """The real objects, read as the loader reads them: Pillow's and pillow-heif's need
    glibc versions, all within the runtime's."""
    with zipfile.ZipFile(built.zip_path) as deployment:
        needed = {
            name: package.glibc_versions_needed(deployment.read(name))
            for name in built.names
            if package.is_shared_library(name, deployment.read(name))
        }
    assert any(name.startswith("PIL/") for name in needed)
    assert any(name.startswith("pillow_heif") for name in needed)
    assert all(versions for versions in needed.values()), needed
    assert max(max(versions) for versions in needed.values()) <= package.RUNTIME_GLIBC


def test_shared_library_checker_finds_a_library_no_wheel_ships(tmp_path: Path) -> None:
    make_wheel(tmp_path / "wheels", f"fake-1.0-{GOOD_TAGS}.whl", {"fake/_ext.so": elf(AARCH64)})
    deployment = write_zip(
        tmp_path / "deployment.zip",
        {"fake/_ext.so": elf(AARCH64), "fake.libs/libextra.so.1.2": elf(AARCH64, b"x")},
    )
    problems = package.shared_library_problems(deployment, tmp_path / "wheels", "arm64")
    assert problems == ["fake.libs/libextra.so.1.2: in no wheel's RECORD (built on this host?)"]


def synthetic_project(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A tiny project and the files of its correct package (app, Chalice runtime, a wheel)."""
    project = tmp_path / "project"
    (project / "chalicelib" / "__pycache__").mkdir(parents=True)
    (project / "app.py").write_text("from chalice import Chalice\n")
    (project / "chalicelib" / "__init__.py").write_text('"""lib"""\n')
    (project / "chalicelib" / "__pycache__" / "__init__.cpython-313.pyc").write_bytes(b"pyc")
    wheel = make_wheel(
        tmp_path / "wheels", "fake-1.0-py3-none-any.whl", {"fake/__init__.py": b"x = 1\n"}
    )
    files = {}
    with zipfile.ZipFile(wheel) as archive:
        files.update({name: archive.read(name) for name in archive.namelist()})
    files["app.py"] = (project / "app.py").read_bytes()
    files["chalicelib/__init__.py"] = (project / "chalicelib" / "__init__.py").read_bytes()
    files["chalice/app.py"] = Path(chalice.app.__file__).read_bytes()
    files["chalice/__init__.py"] = Path(chalice.__file__).read_bytes()
    return project, files


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({}, None, id="correct"),
        pytest.param({"tests/test_app.py": b"def test(): ..."}, "neither the app", id="tests"),
        pytest.param(
            {"chalicelib/__pycache__/__init__.cpython-312.pyc": b"pyc"},
            "neither the app",
            id="stray-bytecode",
        ),
        pytest.param({"fake/__init__.py": b"x = 2\n"}, "differs from its wheel", id="patched"),
        pytest.param({"fake/__init__.py": None}, "missing from fake-1.0", id="partial-wheel"),
        pytest.param({"app.py": b"# other\n"}, "differs from the project's", id="stale-app"),
        pytest.param({"chalicelib/__init__.py": None}, "chalicelib/__init__.py: missing", id="lib"),
    ],
)
def test_provenance_checker(
    tmp_path: Path, change: dict[str, bytes | None], expected: str | None
) -> None:
    project, files = synthetic_project(tmp_path)
    for name, data in change.items():
        if data is None:
            del files[name]
        else:
            files[name] = data
    deployment = write_zip(tmp_path / "deployment.zip", files)
    problems = package.provenance_problems(deployment, tmp_path / "wheels", project)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in problem for problem in problems), problems


def test_forbidden_entries_checker() -> None:
    dev = {"pytest", "moto", "boto3", "botocore"}
    clean = ["app.py", "chalicelib/api.py", "chalice/app.py", "PIL/Image.py", "jmespath/api.py"]
    assert forbidden_entries(clean, dev) == []
    bad = [
        "tests/test_api.py",
        "devstack/lambda_events.py",
        "infra/package.py",
        ".venv/bin/python",
        "requirements-dev.txt",
        "chalicelib/__pycache__/api.cpython-313.pyc",
        "PIL/Image.pyc",
        "pytest-9.2.0.dist-info/METADATA",
        "boto3/__init__.py",
        "botocore-1.44.5.dist-info/RECORD",
        "chalice/cli/__init__.py",
    ]
    assert [entry.split(":")[0] for entry in forbidden_entries(bad, dev)] == bad
    compiled = [package.bytecode_path(name) for name in clean if name.endswith(".py")]
    assert "chalicelib/__pycache__/api.cpython-313.pyc" in compiled
    assert forbidden_entries(clean + compiled, dev) == []


def test_wheelhouse_refuses_anything_but_runtime_wheels(tmp_path: Path) -> None:
    make_wheel(tmp_path, f"fake-1.0-{GOOD_TAGS}.whl", {"fake/_ext.so": elf(AARCH64)})
    assert [path.name for path in package.wheels_in(tmp_path, "arm64")] == [
        f"fake-1.0-{GOOD_TAGS}.whl"
    ]
    (tmp_path / "fake-1.0.tar.gz").write_bytes(b"sdist")
    make_wheel(tmp_path, "other-1.0-cp313-cp313-manylinux_2_35_aarch64.whl", {})
    with pytest.raises(package.PackagingError, match=r"fake-1\.0\.tar\.gz, other-1\.0"):
        package.wheels_in(tmp_path, "arm64")


def pyc_of(source: bytes, mode: py_compile.PycInvalidationMode, directory: Path) -> bytes:
    path = directory / "module.py"
    path.write_bytes(source)
    compiled = directory / "module.pyc"
    py_compile.compile(str(path), str(compiled), doraise=True, invalidation_mode=mode)
    return compiled.read_bytes()


def mutated(files: dict[str, bytes], mutation: str, scratch: Path) -> dict[str, bytes]:
    """The package `files` (app.py compiled) with its bytecode spoiled as `mutation` says."""
    pyc = package.bytecode_path("app.py")
    modes = py_compile.PycInvalidationMode
    files = dict(files)
    if mutation == "mtime-pyc":
        files[pyc] = pyc_of(files["app.py"], modes.TIMESTAMP, scratch)
    elif mutation == "checked-hash-pyc":
        files[pyc] = pyc_of(files["app.py"], modes.CHECKED_HASH, scratch)
    elif mutation == "missing-pyc":
        del files[pyc]
    elif mutation == "pyc-of-another-source":
        files[pyc] = pyc_of(b"x = 2\n", modes.UNCHECKED_HASH, scratch)
    elif mutation == "other-python":
        files[pyc] = (3495).to_bytes(2, "little") + b"\r\n" + files[pyc][4:]  # 3.11
    elif mutation == "broken-code":
        files[pyc] = files[pyc][: package.PYC_HEADER_SIZE] + b"\xe3"
    elif mutation == "stray-cache":
        files["chalicelib/stale.pyc"] = files[pyc]
    return files


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        ("none", None),
        ("mtime-pyc", "timestamp-based"),
        ("checked-hash-pyc", "flags 0b11"),
        ("missing-pyc", "app.py: no bytecode"),
        ("pyc-of-another-source", "another source"),
        ("other-python", "not CPython 3.13's"),
        ("broken-code", "not its source's"),
        ("stray-cache", "chalicelib/stale.pyc: a bytecode cache of no source"),
    ],
)
def test_bytecode_checker(tmp_path: Path, mutation: str, expected: str | None) -> None:
    project, files = synthetic_project(tmp_path)
    deployment = write_zip(tmp_path / "deployment.zip", files)
    assert package.add_bytecode(deployment) == len([n for n in files if n.endswith(".py")])
    with zipfile.ZipFile(deployment) as archive:
        compiled = {name: archive.read(name) for name in archive.namelist()}
    assert package.bytecode_path("chalicelib/__init__.py") in compiled
    with pytest.raises(package.PackagingError, match="already holds bytecode"):
        package.add_bytecode(deployment)
    changed = write_zip(tmp_path / "changed.zip", mutated(compiled, mutation, tmp_path))
    problems = package.bytecode_problems(changed)
    if expected is None:
        assert problems == []
        assert package.provenance_problems(changed, tmp_path / "wheels", project) == []
    else:
        assert any(expected in problem for problem in problems), problems
