"""The one launcher of the local stack, for the tests, the benchmarks and the soak.

`launched(command, environment)` starts `python -m devstack.run` (or `make run`,
`--emulator`, the emulator server alone) in a session of its own with exactly the
environment it is given, waits until it is ready, and afterwards stops it by its pid:
SIGTERM to its session, then SIGKILL to whatever it started and left behind.
`environment(settings)` is that environment: the caller's, without AWS settings or the
stack's own variables, plus the stack's settings.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from infra.stack import ENVIRONMENT_OUTPUTS

HOST = "127.0.0.1"
PROJECT = Path(__file__).resolve().parents[1]
STACK = (sys.executable, "-m", "devstack.run")
EMULATOR_SERVER = (sys.executable, "-m", "devstack.emulator_server")
MOTO_SERVER = (sys.executable, "-m", "moto.server")  # plain moto, without the emulator's gaps
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
# Settings a developer's shell (or `make test`) may carry that must not reach a stack: it
# runs with no AWS account and picks its own resource names, presets and ports.
NOT_INHERITED = frozenset(
    {
        *ENVIRONMENT_OUTPUTS,
        "PRESETS",
        "S3_ADDRESSING_STYLE",
        "EMULATOR_PORT",
        "PORT",
        "DEV_API_KEYS",
        "WORKERS",
        "SWEEP_INTERVAL_SECONDS",
        "LOCAL_QUEUE_VISIBILITY_SECONDS",
        "PERSIST",
        "DATA_DIR",
        "RESET",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
    }
)


class LaunchError(RuntimeError):
    """The stack exited or did not become ready; the message ends with its log's tail."""


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def user_environment() -> dict[str, str]:
    """The caller's environment without AWS settings or the stack's own variables."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in NOT_INHERITED
    }


@dataclass(frozen=True)
class Settings:
    """What `make run` reads from its environment, on free ports unless given."""

    keys: Mapping[str, str]
    workers: int = 1
    queue_visibility_seconds: int | None = None
    emulator_port: int = 0
    api_port: int = 0
    # Where the stack keeps its state across restarts; None: nothing kept (PERSIST=0).
    data_dir: Path | None = None
    reset: bool = False  # RESET=1: start empty
    presets: str | None = None  # PRESETS, the app's presets as JSON

    def __post_init__(self) -> None:
        if not (self.emulator_port and self.api_port):
            emulator_port, api_port = free_ports(2)
            object.__setattr__(self, "emulator_port", self.emulator_port or emulator_port)
            object.__setattr__(self, "api_port", self.api_port or api_port)

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.emulator_port}"

    def environment(self) -> dict[str, str]:
        """The user's environment with these settings, and nothing else of the stack's."""
        variables = {
            "EMULATOR_PORT": str(self.emulator_port),
            "PORT": str(self.api_port),
            "DEV_API_KEYS": ",".join(f"{tenant}:{key}" for tenant, key in self.keys.items()),
            "WORKERS": str(self.workers),
        }
        if self.queue_visibility_seconds is not None:
            variables["LOCAL_QUEUE_VISIBILITY_SECONDS"] = str(self.queue_visibility_seconds)
        if self.data_dir is None:
            variables["PERSIST"] = "0"
        else:
            variables.update(PERSIST="1", DATA_DIR=str(self.data_dir))
        if self.reset:
            variables["RESET"] = "1"
        if self.presets is not None:
            variables["PRESETS"] = self.presets
        return user_environment() | variables


# --- processes, read from /proc -------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    started: int  # clock ticks after boot: tells a process from a later one with its pid
    name: str  # what the process calls itself (/proc/<pid>/comm)
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} (pgid {self.pgid}, sid {self.sid}, {self.state}): {self.command}"


def processes() -> list[Proc]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:  # it exited while we looked
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is stat's 3rd: state
        found.append(
            Proc(
                pid=int(entry.name),
                ppid=int(fields[1]),
                pgid=int(fields[2]),
                sid=int(fields[3]),
                state=fields[0],
                started=int(fields[19]),
                name=name,
                command=argv.replace(b"\0", b" ").decode(errors="replace").strip() or name,
            )
        )
    return found


def descendants(root: int) -> list[Proc]:
    """Every live process under `root`, including those that left its session."""
    children: dict[int, list[Proc]] = {}
    for proc in processes():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    frontier = [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child.pid)
    return found


def survivors(leader: int, known: list[Proc]) -> list[Proc]:
    """Processes still alive in the leader's session or group, or among `known`. Zombies
    have exited (only their parent's reaping is missing), so they do not count."""
    alive = {(proc.pid, proc.started): proc for proc in processes() if proc.state != "Z"}
    left = {key: proc for key, proc in alive.items() if leader in (proc.sid, proc.pgid)}
    left |= {key: alive[key] for key in ((p.pid, p.started) for p in known) if key in alive}
    return sorted(left.values(), key=lambda proc: proc.pid)


def kill(procs: list[Proc]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)


# --- starting and stopping --------------------------------------------------------------------


@dataclass
class Launched:
    process: subprocess.Popen[bytes]
    log: Path | None
    stopped: Stopped | None = None

    def log_text(self) -> str:
        return read_log(self.log) if self.log else ""

    def log_tail(self, lines: int = 80) -> str:
        return log_tail(self.log, lines) if self.log else "(no log)"


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def log_tail(path: Path, lines: int = 80) -> str:
    tail = "\n".join(read_log(path).splitlines()[-lines:])
    return f"--- last {lines} lines of {path} ---\n{tail}\n--- end of log ---"


@dataclass(frozen=True)
class Stopped:
    code: int | None  # None: still running STOP_TIMEOUT after SIGTERM (then killed)
    left: list[Proc] = field(default_factory=list)  # processes left behind, killed


def answers(url: str, status: int | None = None) -> bool:
    """Whether `url` answers (with `status`, if given)."""
    try:
        response = requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return status is None or response.status_code == status


def die_with_parent() -> None:
    """In a child's process (as `preexec_fn`): be sent SIGTERM when the process that
    started it dies, so a crash can never leave it running."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> Stopped:
    """Ctrl-C's way: SIGTERM to the process's session; then SIGKILL to anything it started
    that is still alive, found by pid."""
    tree = descendants(process.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        code: int | None = process.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    left = survivors(process.pid, tree)
    kill(left)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    return Stopped(code, left)


@contextlib.contextmanager
def launched(
    command: tuple[str, ...] | list[str],
    environment: Mapping[str, str],
    ready: Callable[[Launched], bool],
    *,
    log: Path | None = None,
    cwd: Path = PROJECT,
    timeout: float = READY_TIMEOUT,
) -> Iterator[Launched]:
    """`command` in a session of its own with exactly `environment`, its output to `log`
    (or nowhere); the block runs once `ready` says so, and the process is stopped after."""
    output: IO[bytes] | int = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(  # noqa: S603 - our commands
            list(command),
            cwd=cwd,
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    finally:
        if not isinstance(output, int):
            output.close()
    running = Launched(process, log)
    try:
        deadline = time.monotonic() + timeout
        while not ready(running):
            if process.poll() is not None:
                raise LaunchError(f"{command} exited {process.returncode}\n{running.log_tail()}")
            if time.monotonic() > deadline:
                raise LaunchError(f"{command} not ready in {timeout:.0f} s\n{running.log_tail()}")
            time.sleep(0.1)
        yield running
    finally:
        running.stopped = stop(process)


def printed_ready(running: Launched) -> bool:
    """Whether the stack printed its banner's last line, `Ready.`."""
    return "Ready." in running.log_text().splitlines()


@contextlib.contextmanager
def local_stack(
    settings: Settings, log: Path | None = None, command: tuple[str, ...] = STACK
) -> Iterator[Launched]:
    """`make run`'s stack (`command`) with `settings`, ready once /health answers 200 and
    the banner is printed (the banner only when there is a log to read it from)."""

    def ready(running: Launched) -> bool:
        healthy = answers(f"{settings.api}/health", 200)
        return healthy and (log is None or printed_ready(running))

    with launched(command, settings.environment(), ready, log=log) as running:
        yield running


@contextlib.contextmanager
def running_emulator(
    port: int | None = None,
    command: tuple[str, ...] = EMULATOR_SERVER,
    data_dir: Path | None = None,
    log: Path | None = None,
) -> Iterator[str]:
    """The emulator's server alone (or `command`, such as plain moto.server's) on a free
    127.0.0.1 port (or `port`), with none of the caller's AWS variables: its endpoint.
    With `data_dir`, it loads its state from there and keeps it there (devstack.persistence)."""
    with launched_emulator(port, command, data_dir, log) as (endpoint, _):
        yield endpoint


@contextlib.contextmanager
def launched_emulator(
    port: int | None = None,
    command: tuple[str, ...] = EMULATOR_SERVER,
    data_dir: Path | None = None,
    log: Path | None = None,
) -> Iterator[tuple[str, Launched]]:
    """`running_emulator`'s endpoint, and its process."""
    endpoint = f"http://{HOST}:{port or free_ports(1)[0]}"
    arguments = (*command, "-H", HOST, "-p", endpoint.rsplit(":", 1)[1])
    if data_dir is not None:
        arguments = (*arguments, "--data-dir", str(data_dir))
    ready: Callable[[Launched], bool] = lambda _: answers(f"{endpoint}/moto-api/")  # noqa: E731
    with launched(arguments, user_environment(), ready, log=log, timeout=60) as running:
        yield endpoint, running
