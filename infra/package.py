"""`make package STAGE=...`: the Lambda deployment package, from target wheels only, offline.

Chalice's packager resolves the requirements with pip *for the build host*, and when it
finds no wheel for the Lambda runtime it silently builds the sdist here: a zip that crashes
on Lambda. This module never lets it:

1. `fill_wheelhouse` downloads binary wheels only, for CPython 3.13 on manylinux with glibc
   <= 2.34 (the python3.13 runtime, Amazon Linux 2023) for the target machine, into
   `.cache/wheelhouse/<runtime>-<arch>`, reused without the network once it is complete.
2. `build_package` runs `chalice package` on a clean copy of the project with pip confined
   to that wheelhouse (`offline_build_environment`), so Chalice has nothing to compile or
   download; `add_bytecode` adds the unchecked-hash CPython 3.13 pyc (PEP 552) of every
   .py: Lambda's task root is read-only, so without them every module would be compiled
   at each cold start (a timestamp pyc would be stale after Lambda's extraction, a checked
   one would hash each source at import).
3. `audit_package` proves the zip: every file comes from the app or from the RECORD of a
   wheel in the wheelhouse (same path, same sha256), every shared library from a
   manylinux wheel for the target machine and is an ELF object for that machine needing
   no newer glibc, and the only bytecode is one unchecked-hash pyc per .py, of that source.

Chalice cannot write a CloudFormation/SAM template for this app (it refuses `on_s3_event`
there), so the template is Terraform's (`chalice.tf.json`), only checked, never applied.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.util
import io
import json
import marshal
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import chalice
import chalice.app
from chalice.config import Config

PROJECT = Path(__file__).resolve().parents[1]

# The Lambda runtime: Chalice picks it from the interpreter it runs on.
PYTHON_VERSION = (3, 13)
RUNTIME = "python{}.{}".format(*PYTHON_VERSION)
ABI = "cp{}{}".format(*PYTHON_VERSION)
RUNTIME_GLIBC = (2, 34)  # Amazon Linux 2023, as in chalice.deploy.packager._RUNTIME_GLIBC
OLDEST_PEP600_GLIBC_MINOR = 17  # manylinux2014 == manylinux_2_17

# Lambda architecture -> the machine in wheel tags, and the ELF e_machine of its objects.
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
ELF_MACHINES = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64

# The bytecode Lambda's python3.13 loads: CPython 3.13's magic number (3571, fixed for
# every 3.13.x release), cache tag, and the PEP 552 flags of an unchecked hash-based pyc
# (bit 0 hash-based, bit 1 check_source unset).
RUNTIME_MAGIC = (3571).to_bytes(2, "little") + b"\r\n"
CACHE_TAG = "cpython-{}{}".format(*PYTHON_VERSION)
INTERPRETER = "CPython {}.{}".format(*PYTHON_VERSION)
UNCHECKED_HASH_FLAGS = 0b01
PYC_HEADER_SIZE = 16  # magic, flags, 8-byte source hash

DEPLOYMENT_ZIP = "deployment.zip"
TEMPLATE = "chalice.tf.json"
MISSING_DEPENDENCIES = "Could not install dependencies"  # Chalice's warning, exit status 0

PLACEHOLDER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "PackagingPlaceholder", "Effect": "Deny", "Action": "*", "Resource": "*"}
    ],
}

# What the online download may keep from the caller's pip environment: how to reach the
# index, never where else to look for packages nor what to select.
PIP_TRANSPORT_VARIABLES = re.compile(
    r"PIP_(CERT|CLIENT_CERT|INDEX_URL|TRUSTED_HOST|PROXY|DEFAULT_TIMEOUT|TIMEOUT|RETRIES"
    r"|CACHE_DIR|NO_CACHE_DIR|DISABLE_PIP_VERSION_CHECK)"
)

_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"(manylinux1|manylinux2010|manylinux2014|manylinux_(\d+)_(\d+))_(.+)")
_SHARED_LIBRARY = re.compile(r"\.so(\.[0-9A-Za-z]+)*$")
_ELF_MAGIC = b"\x7fELF"
_CHALICE_MAIN = (
    "import sys; from chalice.cli import main; sys.argv[0] = 'chalice'; sys.exit(main())"
)


class PackagingError(Exception):
    """The package cannot be built from target wheels only."""


def say(message: str) -> None:
    print(f"infra.package: {message}", file=sys.stderr, flush=True)


# --- wheel tags -------------------------------------------------------------------------


def machine(arch: str) -> str:
    try:
        return MACHINES[arch]
    except KeyError:
        raise PackagingError(f"unknown Lambda architecture {arch!r}") from None


def platform_tags(arch: str) -> list[str]:
    """Every manylinux tag the runtime accepts: pip takes --platform literally."""
    target = machine(arch)
    major, newest = RUNTIME_GLIBC
    return [f"manylinux2014_{target}"] + [
        f"manylinux_{major}_{minor}_{target}"
        for minor in range(OLDEST_PEP600_GLIBC_MINOR, newest + 1)
    ]


@dataclass(frozen=True)
class Wheel:
    filename: str
    name: str  # normalised (PEP 503)
    version: str
    tags: frozenset[tuple[str, str, str]]  # (python, abi, platform)

    @classmethod
    def parse(cls, filename: str) -> Wheel:
        parts = filename.removesuffix(".whl").split("-")
        if not filename.endswith(".whl") or len(parts) not in (5, 6):
            raise PackagingError(f"not a wheel file name: {filename}")
        pythons, abis, platforms = (part.split(".") for part in parts[-3:])
        tags = frozenset((p, a, pl) for p in pythons for a in abis for pl in platforms)
        return cls(filename, normalise(parts[0]), parts[1], tags)

    def compatible(self, arch: str) -> bool:
        """Installable on the Lambda runtime (RUNTIME) of `arch`."""
        return any(_tag_compatible(tag, arch) for tag in self.tags)

    def native(self, arch: str) -> bool:
        """A manylinux wheel for the runtime's machine: the only source of shared libraries."""
        return any(_tag_compatible(tag, arch) and tag[2] != "any" for tag in self.tags)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _tag_compatible(tag: tuple[str, str, str], arch: str) -> bool:
    python, abi, platform = tag
    return _python_compatible(python, abi) and (
        platform == "any" or _manylinux_compatible(platform, arch)
    )


def _python_compatible(python: str, abi: str) -> bool:
    if abi == ABI:
        return python == ABI
    if abi == "abi3":  # the stable ABI of CPython 3.N and later
        found = re.fullmatch(r"cp3(\d+)", python)
        return found is not None and int(found[1]) <= PYTHON_VERSION[1]
    if abi == "none":
        found = re.fullmatch(r"(?:py|cp)3(\d*)", python)
        return found is not None and (not found[1] or int(found[1]) <= PYTHON_VERSION[1])
    return False


def _manylinux_compatible(platform: str, arch: str) -> bool:
    found = _MANYLINUX.fullmatch(platform)
    if found is None:
        return False
    glibc = _LEGACY_MANYLINUX.get(found[1]) or (int(found[2]), int(found[3]))
    return found[4] == machine(arch) and glibc <= RUNTIME_GLIBC


def wheels_in(wheelhouse: Path, arch: str) -> list[Path]:
    """The wheelhouse's wheels; anything else in it, or a wheel for elsewhere, is an error."""
    if not wheelhouse.is_dir():
        raise PackagingError(f"no wheelhouse at {wheelhouse}")
    paths = sorted(wheelhouse.iterdir())
    strangers = [
        path.name
        for path in paths
        if path.suffix != ".whl" or not Wheel.parse(path.name).compatible(arch)
    ]
    if strangers:
        raise PackagingError(
            f"{wheelhouse} holds files that are not {RUNTIME} {arch} wheels: "
            + ", ".join(strangers)
        )
    return paths


# --- 1. the wheelhouse ------------------------------------------------------------------


def configured_architecture(project_dir: Path, stage: str) -> str:
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    return Config(chalice_stage=stage, config_from_disk=config).lambda_architecture


def default_wheelhouse(arch: str, project_dir: Path = PROJECT) -> Path:
    """One per runtime and machine: a wheelhouse filled for an earlier runtime stays apart."""
    return project_dir / ".cache" / "wheelhouse" / f"{RUNTIME}-{arch}"


def _environment_without_pip(*, transport: bool = False) -> dict[str, str]:
    """This process's environment without pip's settings (but how to reach the index, with
    `transport`) and without any pip.conf, whose find-links would widen the selection."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PIP_") or (transport and PIP_TRANSPORT_VARIABLES.fullmatch(key))
    }
    return environment | {"PIP_CONFIG_FILE": os.devnull}


def offline_build_environment(wheelhouse: Path, arch: str) -> dict[str, str]:
    """This process's environment for `chalice package` and `chalice deploy`: every pip
    call Chalice makes confined to `wheelhouse`'s target wheels, and no bytecode written
    into the project. With it, Chalice's first `pip download -r requirements.txt` already
    resolves binary wheels for the runtime (not for this host), from the wheelhouse only,
    so it never falls back to building an sdist."""
    return {
        **_environment_without_pip(),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse.resolve()),
        "PIP_ONLY_BINARY": ":all:",
        "PIP_PLATFORM": " ".join(platform_tags(arch)),
        "PIP_PYTHON_VERSION": ".".join(map(str, PYTHON_VERSION)),
        "PIP_IMPLEMENTATION": "cp",
        "PIP_ABI": ABI,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def chalice_command(*arguments: str) -> list[str]:
    """The Chalice CLI on this interpreter (Chalice has no `python -m chalice`)."""
    return [sys.executable, "-c", _CHALICE_MAIN, *arguments]


def _run(command: list[str], env: Mapping[str, str], cwd: Path | None = None) -> tuple[int, str]:
    done = subprocess.run(  # noqa: S603 (our own interpreter, our own arguments)
        command, cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
    )
    return done.returncode, done.stdout + done.stderr


def fill_wheelhouse(requirements: Path, wheelhouse: Path, arch: str) -> list[Path]:
    """Make `wheelhouse` hold a runtime wheel for every requirement and dependency.

    A cache: when it already satisfies `requirements`, no network is used. Otherwise pip
    downloads what is missing from the package index, and fails, naming the requirement,
    when one has no wheel for the runtime.
    """
    wheelhouse.mkdir(parents=True, exist_ok=True)
    platforms = [argument for tag in platform_tags(arch) for argument in ("--platform", tag)]
    download = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    download += ["--progress-bar", "off", "--only-binary=:all:", *platforms, "--abi", ABI]
    download += ["--python-version", ".".join(map(str, PYTHON_VERSION)), "--implementation", "cp"]
    download += ["--dest", str(wheelhouse), "--requirement", str(requirements)]
    offline = [*download, "--no-index", "--find-links", str(wheelhouse)]
    if _run(offline, _environment_without_pip())[0] == 0:
        say(f"wheelhouse {wheelhouse} satisfies {requirements.name} (offline)")
    else:
        say(f"downloading {RUNTIME} {arch} wheels into {wheelhouse}")
        status, output = _run(download, _environment_without_pip(transport=True))
        if status != 0:
            raise PackagingError(
                f"a requirement of {requirements} has no wheel for {RUNTIME} on "
                f"manylinux (glibc <= {RUNTIME_GLIBC[0]}.{RUNTIME_GLIBC[1]}) "
                f"{machine(arch)}; pip said:\n{output}"
            )
    return wheels_in(wheelhouse, arch)


# --- 2. the package ---------------------------------------------------------------------


@dataclass
class Package:
    zip_path: Path
    template_path: Path


def _is_cache(name: str) -> bool:
    return name == "__pycache__" or name.endswith((".pyc", ".pyo"))


def prepare_project_copy(project_dir: Path, copy: Path, stage: str) -> None:
    """Copy what Chalice packages into `copy`, adjusted for packaging only; say how."""
    (copy / ".chalice").mkdir(parents=True)
    for name in ("app.py", "requirements.txt"):
        shutil.copy2(project_dir / name, copy / name)
    for name in ("chalicelib", "vendor"):
        if (project_dir / name).is_dir():
            caches = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
            shutil.copytree(project_dir / name, copy / name, ignore=caches)
    for path in (project_dir / ".chalice").glob("*.json"):  # config.json, policy files
        shutil.copy2(path, copy / ".chalice" / path.name)

    config_path = copy / ".chalice" / "config.json"
    config: dict[str, Any] = json.loads(config_path.read_text())
    scopes = [config, *config.get("lambda_functions", {}).values()]
    for stage_config in config.get("stages", {}).values():
        scopes += [stage_config, *stage_config.get("lambda_functions", {}).values()]
    dropped = [scope.pop("log_retention_in_days", None) for scope in scopes]
    if any(days is not None for days in dropped):
        say(
            "log_retention_in_days left out of the template: Chalice's Terraform output "
            "cannot express log groups (the zip does not depend on it)"
        )
    config_path.write_text(json.dumps(config, indent=2))

    # Without `autogen_policy`, Chalice reads each function's `iam_policy_file`, else
    # policy-<stage>.json: the ones `make deploy` has not written yet get a placeholder.
    named = {scope["iam_policy_file"] for scope in scopes if "iam_policy_file" in scope}
    for name in sorted(named | {f"policy-{stage}.json"}):
        if not (copy / ".chalice" / name).exists():
            (copy / ".chalice" / name).write_text(json.dumps(PLACEHOLDER_POLICY, indent=2))
            say(f"no .chalice/{name}: packaged with a placeholder deny-all policy")


def build_package(
    stage: str, out_dir: Path, wheelhouse: Path, arch: str, *, project_dir: Path = PROJECT
) -> Package:
    """`chalice package` of `stage` (whose architecture is `arch`), from `wheelhouse` alone,
    into `out_dir`."""
    require_runtime_bytecode()
    say(f"{len(wheels_in(wheelhouse, arch))} wheels in {wheelhouse}, pip offline")
    environment = {
        **offline_build_environment(wheelhouse, arch),
        "AWS_EC2_METADATA_DISABLED": "true",  # packaging needs no credentials
    }
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        environment["AWS_DEFAULT_REGION"] = "us-east-1"  # only service principals use it
        say("no AWS region set: packaged for us-east-1's partition")

    with tempfile.TemporaryDirectory(prefix="media-pipeline-package-") as scratch:
        copy, chalice_out = Path(scratch) / "project", Path(scratch) / "out"
        prepare_project_copy(project_dir, copy, stage)
        command = chalice_command("package", "--pkg-format", "terraform")
        status, output = _run([*command, "--stage", stage, str(chalice_out)], environment, copy)
        made = all((chalice_out / name).is_file() for name in (DEPLOYMENT_ZIP, TEMPLATE))
        if status != 0 or not made or MISSING_DEPENDENCIES in output:
            raise PackagingError(f"chalice package failed (status {status}):\n{output}")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in (DEPLOYMENT_ZIP, TEMPLATE):
            shutil.copyfile(chalice_out / name, out_dir / name)
    compiled = add_bytecode(out_dir / DEPLOYMENT_ZIP)
    say(f"{compiled} modules compiled to unchecked-hash {CACHE_TAG} bytecode")

    built = Package(out_dir / DEPLOYMENT_ZIP, out_dir / TEMPLATE)
    problems = template_problems(built.template_path, arch)
    if problems:
        raise PackagingError("the template is not for the runtime:\n" + "\n".join(problems))
    return built


# --- the bytecode -----------------------------------------------------------------------


def require_runtime_bytecode() -> None:
    """Bytecode compiled here must be what Lambda's runtime loads as it is (and Chalice
    targets the runtime of the interpreter it runs on): CPython 3.13 only."""
    interpreter = f"{sys.implementation.name} {sys.implementation.cache_tag}"
    if sys.implementation.cache_tag != CACHE_TAG or importlib.util.MAGIC_NUMBER != RUNTIME_MAGIC:
        raise PackagingError(
            f"the package ships bytecode for {INTERPRETER} ({CACHE_TAG}, magic "
            f"{RUNTIME_MAGIC!r}): run this with {INTERPRETER}, not {interpreter} "
            f"(magic {importlib.util.MAGIC_NUMBER!r})"
        )


def bytecode_path(source: str) -> str:
    """Where the runtime looks for the bytecode of the zip entry `source` (a .py)."""
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{CACHE_TAG}.pyc")


def is_source(name: str) -> bool:
    return name.endswith(".py") and not any(map(_is_cache, PurePosixPath(name).parts))


def runtime_bytecode(source: bytes, name: str) -> bytes:
    """The unchecked-hash pyc of `source`, as py_compile writes it. The code carries `name`
    (its path in the package; the import system replaces it by the real one on loading),
    so the same sources give the same bytes wherever compiled."""
    try:
        code = compile(source, name, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError) as error:
        raise PackagingError(f"{name} does not compile on {RUNTIME}: {error}") from error
    flags = UNCHECKED_HASH_FLAGS.to_bytes(4, "little")
    return RUNTIME_MAGIC + flags + importlib.util.source_hash(source) + marshal.dumps(code)


def compile_tree(root: Path) -> int:
    """Write the unchecked-hash bytecode of every .py under `root` next to it; how many."""
    require_runtime_bytecode()
    sources = [path.relative_to(root).as_posix() for path in sorted(root.rglob("*.py"))]
    sources = [name for name in sources if is_source(name) and (root / name).is_file()]
    for name in sources:
        target = root / bytecode_path(name)
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(runtime_bytecode((root / name).read_bytes(), name))
    return len(sources)


def add_bytecode(zip_path: Path) -> int:
    """Rewrite the zip with each .py followed by its bytecode; how many were compiled.

    Entries keep their order, timestamps and modes; each pyc takes its source's.
    """
    require_runtime_bytecode()
    with zipfile.ZipFile(zip_path) as original:
        entries = [(info, original.read(info)) for info in original.infolist()]
    caches = [info.filename for info, _ in entries if _is_cache(PurePosixPath(info.filename).name)]
    if caches:  # would collide with (or shadow) the bytecode compiled here
        raise PackagingError(f"{zip_path} already holds bytecode: " + ", ".join(caches[:5]))
    compiled = 0
    rewritten = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(rewritten, "w") as package:
        for info, data in entries:
            package.writestr(info, data)
            if not info.is_dir() and is_source(info.filename):
                pyc = zipfile.ZipInfo(bytecode_path(info.filename), date_time=info.date_time)
                pyc.external_attr = info.external_attr
                pyc.compress_type = info.compress_type
                package.writestr(pyc, runtime_bytecode(data, info.filename))
                compiled += 1
    rewritten.replace(zip_path)
    return compiled


def lambda_functions(template_path: Path) -> dict[str, dict[str, Any]]:
    """The template's functions by their Chalice name."""
    template = json.loads(template_path.read_text())
    functions: dict[str, dict[str, Any]] = template["resource"]["aws_lambda_function"]
    return functions


def template_problems(template_path: Path, arch: str) -> list[str]:
    functions = lambda_functions(template_path)
    problems = [] if functions else [f"{template_path} declares no function"]
    for name, function in sorted(functions.items()):
        if function.get("runtime") != RUNTIME:
            problems.append(f"{name}: runtime {function.get('runtime')}, not {RUNTIME}")
        if function.get("architectures") != [arch]:
            problems.append(f"{name}: architectures {function.get('architectures')}, not {arch}")
    return problems


# --- 3. the audit -----------------------------------------------------------------------


Records = dict[Wheel, dict[str, str | None]]


def wheel_records(wheelhouse: Path) -> Records:
    """The RECORD of every wheel in the wheelhouse."""
    return {Wheel.parse(path.name): read_record(path) for path in sorted(wheelhouse.glob("*.whl"))}


def _listed(records: Records, name: str) -> list[tuple[Wheel, str | None]]:
    """The wheels installing `name`, each with its sha256 there."""
    return [(wheel, record[name]) for wheel, record in records.items() if name in record]


def read_record(wheel_path: Path) -> dict[str, str | None]:
    """A wheel's RECORD: installed path -> hex sha256 (None: the RECORD's own line, which
    has no hash), as Chalice lays the wheel out."""
    with zipfile.ZipFile(wheel_path) as wheel:
        records = [n for n in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/RECORD", n)]
        if len(records) != 1:
            raise PackagingError(f"{wheel_path.name} has {len(records)} RECORD files")
        rows = csv.reader(io.StringIO(wheel.read(records[0]).decode()))
        entries: dict[str, str | None] = {}
        for row in rows:
            if not row:
                continue
            # Chalice moves <name>.data/purelib and platlib to the top, as an installer does.
            name = re.sub(r"^[^/]+\.data/(?:purelib|platlib)/", "", row[0])
            entries[name] = _record_sha256(row[1] if len(row) > 1 else "")
        return entries


def _record_sha256(value: str) -> str | None:
    if not value:
        return None
    algorithm, _, encoded = value.partition("=")
    if algorithm != "sha256":
        raise PackagingError(f"RECORD hash {algorithm} is not sha256")
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).hex()


def app_files(project_dir: Path = PROJECT) -> dict[str, str]:
    """What Chalice adds besides the wheels: zip path -> sha256."""
    sources = {
        "chalice/app.py": Path(chalice.app.__file__),
        "chalice/__init__.py": Path(chalice.__file__),
        "app.py": project_dir / "app.py",
    }
    for directory, prefix in (("chalicelib", "chalicelib/"), ("vendor", "")):
        root = project_dir / directory
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            relative = path.relative_to(root)
            if path.is_file() and not any(map(_is_cache, relative.parts)):
                sources[prefix + relative.as_posix()] = path
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in sources.items()}


def elf_machine(data: bytes) -> int | None:
    """The e_machine of an ELF object, or None when `data` is not one."""
    if len(data) < 20 or not data.startswith(_ELF_MAGIC) or data[5] not in (1, 2):
        return None
    return int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")


_SHT_GNU_VERNEED = 0x6FFFFFFE
_GLIBC_VERSION = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.\d+)?")


def glibc_versions_needed(data: bytes) -> set[tuple[int, int]]:
    """The glibc symbol versions a 64-bit ELF object needs (its GNU version-needs section).

    What the dynamic loader checks at load time, whatever a wheel's tag claims: an object
    needing GLIBC_2.38 fails to load on a runtime with glibc 2.34.
    """
    if len(data) < 64 or data[4] != 2:  # ELFCLASS64; elf_machine judges the rest
        return set()
    order = "<" if data[5] == 1 else ">"
    section_table, entry_size, count = (
        struct.unpack_from(order + "Q", data, 0x28)[0],
        *struct.unpack_from(order + "HH", data, 0x3A),
    )
    sections = [
        struct.unpack_from(order + "IIQQQQIIQQ", data, section_table + index * entry_size)
        for index in range(count)
    ]
    needed = set()
    for _, kind, _, _, offset, _, link, number, _, _ in sections:
        if kind != _SHT_GNU_VERNEED:
            continue
        strings = sections[link][4]
        for name in _verneed_names(data, order, offset, number, strings):
            found = _GLIBC_VERSION.fullmatch(name)
            if found:
                needed.add((int(found[1]), int(found[2])))
    return needed


def _verneed_names(data: bytes, order: str, offset: int, number: int, strings: int) -> list[bytes]:
    """The version names of `number` Elf64_Verneed entries at `offset` and their aux lists."""
    names = []
    for _ in range(number):
        _, aux_count, _, aux, next_need = struct.unpack_from(order + "HHIII", data, offset)
        at = offset + aux
        for _ in range(aux_count):
            _, _, _, name, next_aux = struct.unpack_from(order + "IHHII", data, at)
            start = strings + name
            names.append(data[start : data.index(b"\0", start)])
            at += next_aux
        offset += next_need
    return names


def glibc_problems(name: str, data: bytes) -> list[str]:
    """`name` must load on the runtime's glibc; unreadable version tables are a problem too."""
    try:
        needed = glibc_versions_needed(data)
    except (struct.error, ValueError, IndexError):
        return [f"{name}: its ELF version tables cannot be read"]
    newest = max(needed, default=None)
    if newest is not None and newest > RUNTIME_GLIBC:
        return [
            f"{name}: needs GLIBC_{newest[0]}.{newest[1]}, newer than the runtime's "
            f"{RUNTIME_GLIBC[0]}.{RUNTIME_GLIBC[1]}"
        ]
    return []


def is_shared_library(name: str, data: bytes) -> bool:
    return bool(_SHARED_LIBRARY.search(PurePosixPath(name).name)) or data.startswith(_ELF_MAGIC)


def _zip_entries(zip_path: Path) -> Iterable[tuple[str, bytes]]:
    with zipfile.ZipFile(zip_path) as package:
        for info in package.infolist():
            if not info.is_dir():
                yield info.filename, package.read(info)


def shared_library_problems(zip_path: Path, wheelhouse: Path, arch: str) -> list[str]:
    """Each shared library must be a manylinux wheel's file, unchanged, built for `arch`."""
    records = wheel_records(wheelhouse)
    expected_machine = ELF_MACHINES[arch]
    problems = []
    for name, data in _zip_entries(zip_path):
        if not is_shared_library(name, data):
            continue
        digest = hashlib.sha256(data).hexdigest()
        listed = _listed(records, name)
        same = [wheel for wheel, sha256 in listed if sha256 == digest]
        if not listed:
            problems.append(f"{name}: in no wheel's RECORD (built on this host?)")
        elif not same:
            wheels = ", ".join(sorted(wheel.filename for wheel, _ in listed))
            problems.append(f"{name}: sha256 {digest} differs from the RECORD of {wheels}")
        elif not any(wheel.native(arch) for wheel in same):
            wheels = ", ".join(sorted(wheel.filename for wheel in same))
            problems.append(
                f"{name}: from {wheels}, not a manylinux wheel for {RUNTIME} {machine(arch)}"
            )
        found = elf_machine(data)
        if found is None:
            problems.append(f"{name}: not an ELF object")
        elif found != expected_machine:
            problems.append(
                f"{name}: ELF e_machine {found}, not {expected_machine} ({machine(arch)})"
            )
        else:
            problems += glibc_problems(name, data)
    return problems


def provenance_problems(zip_path: Path, wheelhouse: Path, project_dir: Path = PROJECT) -> list[str]:
    """Every file is the app's or a wheel's (same sha256), and every installed wheel whole.

    The bytecode of the zip's sources is `bytecode_problems`' to prove.
    """
    records = wheel_records(wheelhouse)
    expected = app_files(project_dir)
    entries = dict(_zip_entries(zip_path))
    compiled = {bytecode_path(name) for name in entries if is_source(name)}
    problems, seen = [], set()
    for name, data in entries.items():
        seen.add(name)
        if name in compiled:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if name in expected:
            if digest != expected[name]:
                problems.append(f"{name}: differs from the project's")
        elif listed := _listed(records, name):
            if not any(sha256 in (None, digest) for _, sha256 in listed):
                problems.append(f"{name}: differs from its wheel's RECORD")
        else:
            problems.append(f"{name}: comes from neither the app nor a wheel in {wheelhouse}")
    problems += [f"{name}: missing" for name in sorted(set(expected) - seen)]
    for wheel, installed in records.items():
        if any(name in seen for name in installed if name.endswith(".dist-info/METADATA")):
            missing = sorted(set(installed) - seen)
            problems += [f"{name}: missing from {wheel.filename}" for name in missing]
    return problems


def bytecode_problems(zip_path: Path) -> list[str]:
    """The only caches are one unchecked-hash pyc of the runtime per .py, of that source."""
    entries = dict(_zip_entries(zip_path))
    sources = {bytecode_path(name): name for name in entries if is_source(name)}
    problems = [
        f"{name}: a bytecode cache of no source in the package"
        for name in entries
        if name not in sources and any(map(_is_cache, PurePosixPath(name).parts))
    ]
    for pyc_name, source_name in sources.items():
        pyc = entries.get(pyc_name)
        if pyc is None:
            problems.append(f"{source_name}: no bytecode ({pyc_name} missing)")
        else:
            problems += [
                f"{pyc_name}: {problem}" for problem in pyc_problems(pyc, entries[source_name])
            ]
    return problems


def pyc_problems(pyc: bytes, source: bytes) -> list[str]:
    """What keeps `pyc` from being the runtime's unchecked-hash bytecode of `source`."""
    if len(pyc) < PYC_HEADER_SIZE:
        return ["truncated header"]
    flags = int.from_bytes(pyc[4:8], "little")
    problems = []
    if pyc[:4] != RUNTIME_MAGIC:
        problems.append(f"magic {pyc[:4]!r}, not {INTERPRETER}'s {RUNTIME_MAGIC!r}")
    if flags != UNCHECKED_HASH_FLAGS:
        kind = "timestamp-based" if flags == 0 else f"flags {flags:#04b}"
        problems.append(f"{kind}, not unchecked hash-based (flags 0b01)")
    elif pyc[8:16] != importlib.util.source_hash(source):
        problems.append("compiled from another source (source hash differs)")
    if not problems and not _same_code(pyc[PYC_HEADER_SIZE:], source):
        problems.append("its code is not its source's")
    return problems


def _same_code(body: bytes, source: bytes) -> bool:
    """The marshalled code equals `source` compiled here (code objects compare their
    bytecode, constants, names and line tables, not their file name)."""
    try:
        expected = compile(source, "<package>", "exec", dont_inherit=True, optimize=0)
        loaded = marshal.loads(body)  # noqa: S302 (the package being audited, never run here)
    except (SyntaxError, EOFError, ValueError, TypeError):
        return False
    return bool(loaded == expected)


def audit_package(
    zip_path: Path, wheelhouse: Path, arch: str, project_dir: Path = PROJECT
) -> list[str]:
    return (
        shared_library_problems(zip_path, wheelhouse, arch)
        + provenance_problems(zip_path, wheelhouse, project_dir)
        + bytecode_problems(zip_path)
    )


# --- the command ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.package", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--stage", default="dev")
    stage = parser.parse_args(argv).stage
    arch = configured_architecture(PROJECT, stage)
    wheelhouse = default_wheelhouse(arch)
    try:
        fill_wheelhouse(PROJECT / "requirements.txt", wheelhouse, arch)
        built = build_package(stage, PROJECT / "build" / "package" / stage, wheelhouse, arch)
        problems = audit_package(built.zip_path, wheelhouse, arch)
    except PackagingError as error:
        say(f"FAILED: {error}")
        return 1
    if problems:
        say("FAILED: the package is not made of target wheels only:\n" + "\n".join(problems))
        return 1
    size = built.zip_path.stat().st_size
    say(f"{RUNTIME} {arch}: {built.zip_path} ({size / 2**20:.1f} MiB), {built.template_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
