"""`make run`'s state kept across restarts: the emulator's moto backends saved to DATA_DIR.

The emulator's process (devstack.emulator_server) pickles every moto backend in use (the
DynamoDB tables and items, S3 buckets and objects with their versions, SQS queues and their
messages, KMS keys, the CloudFormation stack and whatever else provisioning created) into
one snapshot, only while no request is being served (`Gate`): each snapshot is one
consistent moment. A snapshot is taken DEBOUNCE_SECONDS after the first request that
changed something since the last one, and on a clean stop; so a SIGKILL loses at most the
changes of the last DEBOUNCE_SECONDS plus the time one snapshot takes to write.

Files in DATA_DIR:
  MEDIA_PIPELINE_DATA_DIR   the marker: RESET=1 wipes only a directory that has it
  .lock                     held (flock) by the stack using the directory
  .emulator.lock            held by its emulator, until its last snapshot is written
  state.snapshot            header (magic, length, sha256) + pickle, replaced atomically
  blobs/<sha256>            S3 object bodies, content-addressed: a snapshot names them
  api-keys.json             the dev API keys `make run` generated, printed again on restart
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("devstack.persistence")

MARKER = "MEDIA_PIPELINE_DATA_DIR"
MARKER_TEXT = "media-pipeline `make run` data directory (RESET=1 wipes it)\n"
LOCK = ".lock"
EMULATOR_LOCK = ".emulator.lock"
SNAPSHOT = "state.snapshot"
BLOBS = "blobs"
API_KEYS = "api-keys.json"
MAGIC = b"media-pipeline snapshot v1\n"
HEADER = struct.Struct(">Q32s")  # payload length, sha256 of the payload
FORMAT = 1
DEBOUNCE_SECONDS = 0.25
STATUS_PATH = "/_devstack/persistence"
# How long a stop waits for the requests in flight before its last snapshot.
FINAL_SNAPSHOT_WAIT_SECONDS = 10.0
EMULATOR_LOCK_WAIT_SECONDS = 15.0


class PersistenceError(RuntimeError):
    """DATA_DIR cannot be used as asked; the message says why and what to do."""


# --- the directory: marker, lock, reset -------------------------------------------------------


def is_data_dir(path: Path) -> bool:
    return (path / MARKER).is_file()


def holds_anything(path: Path) -> bool:
    """Whether the directory holds more than the lock files."""
    return any(entry.name not in (LOCK, EMULATOR_LOCK) for entry in path.iterdir())


def prepare(path: Path, *, reset: bool) -> None:
    """Make `path` a data directory (RESET: an empty one). Refuses a directory that holds
    anything but is not one: RESET=1 must never wipe someone's files."""
    if path.exists() and not path.is_dir():
        raise PersistenceError(f"DATA_DIR {path} is not a directory")
    if path.is_dir() and holds_anything(path) and not is_data_dir(path):
        raise PersistenceError(
            f"DATA_DIR {path} is not empty and is not a media-pipeline data directory "
            f"(it has no {MARKER} file): choose another DATA_DIR"
        )
    path.mkdir(parents=True, exist_ok=True)
    if reset:
        for entry in path.iterdir():
            if entry.name in (LOCK, EMULATOR_LOCK):
                continue  # held by this stack (the caller locks first)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    if not is_data_dir(path):
        write_atomically(path / MARKER, MARKER_TEXT.encode())


def lock(path: Path, name: str = LOCK, wait_seconds: float = 0.0) -> IO[str]:
    """Hold `path/name` (flock, released when the process ends, however it ends): one
    stack per directory. The open file is the lock; keep it."""
    path.mkdir(parents=True, exist_ok=True)
    handle = (path / name).open("a+")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise PersistenceError(
                    f"DATA_DIR {path} is in use by another stack ({holder}): stop it, or "
                    f"give this one another DATA_DIR (or PERSIST=0)"
                ) from None
            time.sleep(0.05)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def open_data_dir(path: Path, *, reset: bool) -> IO[str]:
    """The stack's side: check the directory, lock it, reset it if asked, and check that
    its snapshot (if any) is whole. Returns the held lock."""
    if path.is_dir() and holds_anything(path) and not is_data_dir(path):
        prepare(path, reset=False)  # raises: not ours
    held = lock(path)
    try:
        prepare(path, reset=reset)
        if (path / SNAPSHOT).exists():
            read_snapshot(path / SNAPSHOT)
    except BaseException:
        held.close()
        raise
    return held


# --- atomic files -----------------------------------------------------------------------------


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, data: bytes | memoryview, *, sync_directory: bool = True) -> None:
    """`path` holds all of `data` or what it held before, even after a crash: a temporary
    file, fsynced, renamed over it, and the directory fsynced."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    if sync_directory:
        fsync_directory(path.parent)


def encode_snapshot(payload: bytes) -> bytes:
    return MAGIC + HEADER.pack(len(payload), hashlib.sha256(payload).digest())


def read_snapshot(path: Path) -> bytes:
    """The payload of a whole snapshot; PersistenceError naming the file if it is not one."""
    data = path.read_bytes()
    head = len(MAGIC) + HEADER.size
    reason = None
    if not data.startswith(MAGIC) or len(data) < head:
        reason = "not a media-pipeline snapshot, or its header is cut short"
    else:
        length, digest = HEADER.unpack_from(data, len(MAGIC))
        payload = data[head:]
        if len(payload) != length:
            reason = f"{len(payload)} bytes of data where its header says {length}"
        elif hashlib.sha256(payload).digest() != digest:
            reason = "its checksum does not match its data"
    if reason is not None:
        raise damaged(path, reason)
    return data[head:]


def damaged(path: Path, reason: str) -> PersistenceError:
    return PersistenceError(
        f"the saved state {path} is damaged ({reason}). Start with RESET=1 to discard "
        f"everything in {path.parent} and begin empty, or PERSIST=0 to keep nothing"
    )


# --- the gate: requests share it, a snapshot holds it alone -----------------------------------


class Gate:
    """A readers-writer lock that prefers the writer: requests hold it shared; a snapshot
    waits for those in flight, holds back new ones, and runs alone. A request waiting in
    an SQS long poll lets go of it meanwhile (`paused`), so idle polls never delay one."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._held = threading.local()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        self._enter()
        self._held.count = getattr(self._held, "count", 0) + 1
        try:
            yield
        finally:
            self._held.count -= 1
            self._leave()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Within a request: let a snapshot run meanwhile (the request changes nothing)."""
        if not getattr(self._held, "count", 0):
            yield
            return
        self._leave()
        try:
            yield
        finally:
            self._enter()

    @contextlib.contextmanager
    def exclusive(self, timeout: float | None = None) -> Iterator[bool]:
        """Alone; yields False (and holds nothing) if requests still ran after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._condition.wait(left)
                alone = not (self._writer or self._readers)
                if alone:
                    self._writer = True
            finally:
                self._writers_waiting -= 1
                self._condition.notify_all()
        try:
            yield alone
        finally:
            if alone:
                with self._condition:
                    self._writer = False
                    self._condition.notify_all()

    @property
    def requests_in_flight(self) -> int:
        """Requests holding the gate now (a long poll waiting for messages lets go of it)."""
        with self._condition:
            return self._readers

    def _enter(self) -> None:
        with self._condition:
            while self._writer or self._writers_waiting:
                self._condition.wait()
            self._readers += 1

    def _leave(self) -> None:
        with self._condition:
            self._readers -= 1
            if not self._readers:
                self._condition.notify_all()


# --- what changes state -----------------------------------------------------------------------

READ_ACTION_PREFIXES = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "Head")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def changes_state(environ: dict[str, Any], content: bytes) -> bool:
    """Whether a request may have changed the emulator's state (when unsure: yes). An SQS
    receive changes it only when it received something (the messages are now in flight)."""
    if environ.get("REQUEST_METHOD", "GET") in READ_METHODS:
        return False
    target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
    action = target.rpartition(".")[2]
    if action == "ReceiveMessage":
        return b"ReceiptHandle" in content
    return not (action and action.startswith(READ_ACTION_PREFIXES))


# --- pickling moto's backends -----------------------------------------------------------------


def _lock_types() -> tuple[type[Any], ...]:
    return (type(threading.Lock()), type(threading.RLock()))


def _new_lock(kind: str) -> Any:
    return threading.RLock() if kind == "rlock" else threading.Lock()


def _new_condition() -> threading.Condition:
    return threading.Condition()


def _live_backend_dict(module: str, attribute: str) -> Any:
    import importlib

    return getattr(importlib.import_module(module), attribute)


def _live_account_backend(module: str, attribute: str, account: str) -> Any:
    return _live_backend_dict(module, attribute)[account]


def _private_key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _load_private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, password=None)


def _registries() -> list[Any]:
    """Every moto BackendDict in use."""
    from moto.core.base_backend import BackendDict

    return list(getattr(BackendDict, "_instances"))  # noqa: B009 - a class variable


# Classes defined inside functions (pickle cannot name them), by their qualified name.
LOCAL_CLASSES: dict[str, type[Any]] = {}


def register_class(cls: type[Any]) -> None:
    """Let instances of `cls`, a class defined in a function, be saved and loaded."""
    LOCAL_CLASSES[cls.__qualname__] = cls


class _LocalClass:
    """Pickled in place of a registered class; loads as that class."""

    def __init__(self, qualname: str) -> None:
        self.qualname = qualname

    def __reduce__(self) -> Any:
        return _local_class, (self.qualname,)


def _local_class(qualname: str) -> type[Any]:
    return LOCAL_CLASSES[qualname]


# Set while a snapshot loads: where FakeKey bodies are read from, and which were.
_LOADING: dict[str, Any] = {}


def _restore_key(key: Any, state: dict[str, Any]) -> None:
    """A moto FakeKey's state, its body read back from its blob."""
    from moto.s3.models import FakeKey

    digest = state.pop("_devstack_blob_sha256")
    if digest is None:
        value = b""
    else:
        value = (_LOADING["blobs"] / digest).read_bytes()
        if hashlib.sha256(value).hexdigest() != digest:
            raise damaged(_LOADING["blobs"] / digest, "its content does not match its name")
        _LOADING["used"].add(digest)
    FakeKey.__setstate__(key, {**state, "value": value})
    key._devstack_blob = (key.etag, digest)


class BackendPickler(pickle.Pickler):
    """Pickles moto's backends: locks and conditions as new ones, references to the live
    registries (BackendDict) as look-ups, S3 object bodies as blobs."""

    def __init__(self, file: IO[bytes], names: dict[int, tuple[str, str]], blobs: BlobSink) -> None:
        super().__init__(file, protocol=5)
        self._names = names
        self._blobs = blobs
        self._locks = _lock_types()
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        self._private_keys = (
            rsa.RSAPrivateKey,
            ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey,
        )
        from moto.core.base_backend import AccountSpecificBackend, BackendDict
        from moto.s3.models import FakeKey

        self._backend_dict, self._account_backend, self._fake_key = (
            BackendDict,
            AccountSpecificBackend,
            FakeKey,
        )

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        qualname = str(getattr(obj, "__qualname__", ""))
        if isinstance(obj, type) and LOCAL_CLASSES.get(qualname) is obj:
            return _local_class, (qualname,)
        if kind in self._locks:
            return _new_lock, ("rlock" if "RLock" in kind.__name__ else "lock",)
        if kind is threading.Condition:
            return _new_condition, ()
        if isinstance(obj, self._fake_key):
            return self._reduce_key(obj)
        if kind.__qualname__ in LOCAL_CLASSES:
            return object.__new__, (_LocalClass(kind.__qualname__),), obj.__dict__
        if isinstance(obj, self._private_keys):
            return _load_private_key, (_private_key_pem(obj),)
        if isinstance(obj, self._backend_dict) and id(obj) in self._names:
            return _live_backend_dict, self._names[id(obj)]
        if isinstance(obj, self._account_backend):
            owner = self._owner_of(obj)
            if owner is not None:
                return _live_account_backend, (*owner, obj.account_id)
        return NotImplemented

    def _owner_of(self, account_backend: Any) -> tuple[str, str] | None:

        for registry in _registries():
            if dict.get(registry, account_backend.account_id) is account_backend:
                return self._names.get(id(registry))
        return None

    def _reduce_key(self, key: Any) -> Any:
        state = {k: v for k, v in key.__dict__.items() if k not in ("_value_buffer", "lock")}
        state.pop("_devstack_blob", None)
        state["_devstack_blob_sha256"] = self._blobs.add(key)
        return object.__new__, (type(key),), state, None, None, _restore_key


@dataclass
class BlobSink:
    """The S3 bodies a snapshot names; those not yet on disk, to write after it."""

    directory: Path
    new: dict[str, bytes] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def add(self, key: Any) -> str | None:
        if getattr(key, "disposed", False):
            return None
        cached = getattr(key, "_devstack_blob", None)
        if cached is not None and cached[0] == key.etag:
            digest: str | None = cached[1]
        else:
            try:
                value = bytes(key.value)
            except ValueError:  # a deleted key's closed buffer
                return None
            digest = hashlib.sha256(value).hexdigest()
            if not (self.directory / digest).exists():
                self.new[digest] = value
            key._devstack_blob = (key.etag, digest)
        if digest is not None:
            self.used.add(digest)
        return digest


def backend_names() -> dict[int, tuple[str, str]]:
    """id(BackendDict) -> (module, attribute) for every moto registry loaded."""
    from moto.core.base_backend import BackendDict

    names: dict[int, tuple[str, str]] = {}
    for module_name, module in sorted(sys.modules.items()):
        if not module_name.startswith("moto.") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if isinstance(value, BackendDict) and id(value) not in names:
                names[id(value)] = (module_name, attribute)
    return names


def backends_in_use(names: dict[int, tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """(module, attribute) -> {account: {region: backend}} of every registry in use."""

    state: dict[tuple[str, str], Any] = {}
    for registry in _registries():
        name = names.get(id(registry))
        if name is None:
            continue
        state[name] = {
            account: dict(dict.items(regions)) for account, regions in dict.items(registry)
        }
    return state


def restore_backends(state: dict[tuple[str, str], Any]) -> None:
    for (module, attribute), accounts in state.items():
        registry = _live_backend_dict(module, attribute)
        for account, regions in accounts.items():
            account_backend = registry[account]  # created, and the registry marked in use
            for region, backend in regions.items():
                dict.__setitem__(account_backend, region, backend)


def release_in_flight_messages() -> int:
    """Make every SQS message received before the restart visible again: whoever received
    it died with the previous stack (the lock proves no other stack runs), so its work
    must be done again now, not after the rest of its visibility timeout."""
    from moto.sqs.models import sqs_backends

    released = 0
    for _account, _region, backend in sqs_backends.iter_backends():
        queues: dict[str, Any] = getattr(backend, "queues")  # noqa: B009
        for queue in queues.values():
            for message in queue._messages:
                if message.visible_at > time.time() and message.delayed_until <= time.time():
                    message.visible_at = 0.0
                    released += 1
    return released


# --- the store: load, snapshot, status --------------------------------------------------------


@dataclass
class Status:
    snapshots: int = 0
    last_at: float | None = None
    last_bytes: int = 0
    last_seconds: float = 0.0
    longest_seconds: float = 0.0
    blobs: int = 0
    loaded_from: float | None = None
    error: str | None = None


class Store:
    """The emulator's persistence: loads DATA_DIR's snapshot into moto, then snapshots
    after changes (`changed()`) and on `close()`."""

    def __init__(self, directory: Path, gate: Gate) -> None:
        self.directory = directory
        self.gate = gate
        self.status = Status()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._snapshot_lock = threading.Lock()
        self._names: dict[int, tuple[str, str]] = {}
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._held: IO[str] | None = None

    @property
    def blobs(self) -> Path:
        return self.directory / BLOBS

    def open(self) -> None:
        """Wait for a previous emulator of this directory to finish, load the snapshot,
        and start snapshotting."""
        self._held = lock(self.directory, EMULATOR_LOCK, EMULATOR_LOCK_WAIT_SECONDS)
        self.blobs.mkdir(exist_ok=True)
        self.load()
        self._thread.start()

    def load(self) -> None:
        path = self.directory / SNAPSHOT
        if not path.exists():
            return
        payload = read_snapshot(path)
        _LOADING.update(blobs=self.blobs, used=set())
        try:
            document = pickle.loads(payload)  # noqa: S301 - our own file, checksummed
        except PersistenceError:
            raise
        except Exception as exc:
            raise damaged(path, f"it cannot be loaded: {type(exc).__name__}: {exc}") from exc
        finally:
            used: set[str] = _LOADING.pop("used", set())
            _LOADING.clear()
        if document.get("format") != FORMAT:
            raise damaged(path, f"format {document.get('format')!r}, not {FORMAT}")
        restore_backends(document["backends"])
        released = release_in_flight_messages()
        self._remove_unused_blobs(used)
        self.status.loaded_from = document["savedAt"]
        self.status.blobs = len(used)
        log.info(
            "loaded %s (saved %s; %d S3 bodies; %d in-flight messages made visible)",
            path,
            iso(document["savedAt"]),
            len(used),
            released,
        )

    def _remove_unused_blobs(self, used: set[str]) -> None:
        for blob in self.blobs.iterdir():
            if blob.name not in used:
                blob.unlink(missing_ok=True)

    def changed(self) -> None:
        self._dirty.set()

    def close(self) -> None:
        """The last snapshot, once the requests in flight ended (or gave up waiting)."""
        self._stopping.set()
        self._dirty.set()
        if self._thread.ident is not None:
            self._thread.join(FINAL_SNAPSHOT_WAIT_SECONDS + 5)
        self.snapshot(FINAL_SNAPSHOT_WAIT_SECONDS)
        if self._held is not None:
            self._held.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.wait(DEBOUNCE_SECONDS):
                return
            self._dirty.clear()
            try:
                self.snapshot()
            except Exception as exc:  # keep serving; the status endpoint shows it
                self.status.error = f"{type(exc).__name__}: {exc}"
                log.exception("snapshot failed")

    def snapshot(self, wait_seconds: float | None = None) -> bool:
        """Save the state now; False if requests were still in flight after
        `wait_seconds`."""
        with self._snapshot_lock:
            started = time.monotonic()
            sink = BlobSink(self.blobs)
            with self.gate.exclusive(wait_seconds) as alone:
                if not alone:
                    log.error("requests still in flight: the last snapshot was not taken")
                    return False
                saved_at = time.time()
                payload = self._serialize(sink, saved_at)
            for digest, value in sink.new.items():
                write_atomically(self.blobs / digest, value, sync_directory=False)
            if sink.new:
                fsync_directory(self.blobs)
            write_atomically(self.directory / SNAPSHOT, encode_snapshot(payload) + payload)
            elapsed = time.monotonic() - started
            self.status = Status(
                snapshots=self.status.snapshots + 1,
                last_at=saved_at,
                last_bytes=len(payload) + len(MAGIC) + HEADER.size,
                last_seconds=elapsed,
                longest_seconds=max(elapsed, self.status.longest_seconds),
                blobs=len(sink.used),
                loaded_from=self.status.loaded_from,
            )
            return True

    def _serialize(self, sink: BlobSink, saved_at: float) -> bytes:

        if any(id(registry) not in self._names for registry in _registries()):
            self._names = backend_names()
        buffer = io.BytesIO()
        document = {
            "format": FORMAT,
            "savedAt": saved_at,
            "backends": backends_in_use(self._names),
        }
        BackendPickler(buffer, self._names, sink).dump(document)
        return buffer.getvalue()

    def status_document(self) -> dict[str, Any]:
        status = self.status
        return {
            "enabled": True,
            "dataDir": str(self.directory),
            "snapshots": status.snapshots,
            "lastSnapshotAt": iso(status.last_at),
            "lastSnapshotBytes": status.last_bytes,
            "lastSnapshotMilliseconds": round(status.last_seconds * 1000, 1),
            "longestSnapshotMilliseconds": round(status.longest_seconds * 1000, 1),
            "s3Bodies": status.blobs,
            "loadedSnapshotSavedAt": iso(status.loaded_from),
            "debounceMilliseconds": DEBOUNCE_SECONDS * 1000,
            "requestsInFlight": self.gate.requests_in_flight,
            "lastError": status.error,
        }


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


# --- in the emulator's process ----------------------------------------------------------------


def json_response(start_response: Any, document: dict[str, Any]) -> list[bytes]:
    body = json.dumps(document).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def install(store: Store | None) -> None:
    """Serve moto's requests through the store's gate (or, without a store, only answer
    the status path), and let SQS long polls wait outside it."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from moto.sqs.models import Queue

    dispatch = DomainDispatcherApplication.__call__

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == STATUS_PATH:
            document = store.status_document() if store else {"enabled": False}
            return json_response(start_response, document)
        if store is None:
            return dispatch(self, environ, start_response)
        with store.gate.shared():
            result = dispatch(self, environ, start_response)
            try:
                content = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            if changes_state(environ, content):
                store.changed()
        return [content]

    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]
    if store is not None:
        wait_for_messages = Queue.wait_for_messages

        def wait_outside_gate(queue: Any, timeout: int) -> None:
            with store.gate.paused():
                wait_for_messages(queue, timeout)

        Queue.wait_for_messages = wait_outside_gate  # type: ignore[method-assign,assignment]
