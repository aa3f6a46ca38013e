"""The event runner: the app's own handlers (app.handler_map), invoked as Lambda would.

- S3 notifications reach the dispatcher as an asynchronous invocation: one event per
  notification, retried twice on error, then dropped with a log line.
- The jobs queue feeds the worker, and the dead-letter queue its handler, through Lambda's
  SQS event source (devstack.lambda_events). As many worker processes as WORKERS poll it,
  like concurrent Lambda instances.
- A worker or S3 event source process that dies is replaced, as Lambda replaces a dead
  execution environment (`RestartPolicy`); its batch comes back after the queue's
  visibility timeout.
- The sweeper runs every SWEEP_INTERVAL_SECONDS (60 by default, not the deployed 5
  minutes); as for a scheduled Lambda, a failed run is only logged.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as ProcessEvent
from multiprocessing.synchronize import Semaphore
from typing import Any, Protocol

from infra.policies import DISPATCHER, SWEEPER

log = logging.getLogger("devstack")

DEFAULT_SWEEP_INTERVAL_SECONDS = 60.0
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries
LONG_POLL_SECONDS = 1
# The pause before an event source polls again after its own call to SQS failed.
POLL_RETRY_SECONDS = 1.0
RETRY_BACKOFF_SECONDS = (1, 2)


@dataclass(frozen=True)
class SqsTrigger:
    function: str
    queue: str
    batch_size: int
    batching_window: int


def sqs_triggers() -> dict[str, SqsTrigger]:
    """The SQS event sources app.py declares, as its decorators configured them."""
    from chalice.app import SQSEventConfig

    from app import app

    return {
        source.name: SqsTrigger(
            function=source.name,
            queue=str(source.queue),
            batch_size=source.batch_size,
            batching_window=source.maximum_batching_window_in_seconds,
        )
        for source in app.event_sources
        if isinstance(source, SQSEventConfig)
    }


def s3_notification() -> dict[str, Any]:
    """The dispatcher's S3 trigger as an S3 notification filter (what chalice deploy writes)."""
    from chalice.app import S3EventConfig

    from app import app

    (source,) = [s for s in app.event_sources if isinstance(s, S3EventConfig)]
    filters = {"prefix": source.prefix, "suffix": source.suffix}
    rules = [{"Name": name, "Value": value} for name, value in filters.items() if value]
    notification: dict[str, Any] = {"Events": list(source.events)}
    if rules:
        notification["Filter"] = {"Key": {"FilterRules": rules}}
    return notification


def invoke(function: str, event: dict[str, Any]) -> Any:
    from chalice.local import LambdaContext

    from app import app

    return app.handler_map[function](event, LambdaContext(function, memory_size=1769))


# --- the schedule -> the sweeper -------------------------------------------------------------


class Waiter(Protocol):
    """What the sweeper loop waits on: `wait(timeout)` returns True once it should stop
    (a threading.Event is one)."""

    def wait(self, timeout: float | None = None) -> bool: ...


def scheduled_event(rule: str = SWEEPER, region: str = "us-east-1") -> dict[str, Any]:
    """The event EventBridge's scheduler hands a function on each tick of its rule."""
    account = "123456789012"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule}"],
        "detail": {},
    }


def sweep_periodically(stop: Waiter, interval_seconds: float) -> None:
    """Invoke the sweeper every `interval_seconds` until `stop` is set."""
    while not stop.wait(interval_seconds):
        try:
            invoke(SWEEPER, scheduled_event())
        # A scheduled invocation's error goes to Lambda (and the next tick), not the caller.
        except Exception:
            log.warning("sweeper failed; the next run tries again", exc_info=True)


# --- S3 notifications -> the dispatcher; SQS -> the worker and the dead-letter handler -----


def still_wanted(stop: threading.Event | ProcessEvent) -> bool:
    """Until `stop` is set and, in a child process, while the process that started it lives."""
    parent = multiprocessing.parent_process()
    return not stop.is_set() and (parent is None or parent.is_alive())


def s3_events_process(queue_url: str, stop: ProcessEvent, ready: Semaphore) -> None:
    """Invokes the dispatcher once per notification on the S3 events queue, in a process of
    its own: its AWS calls do not wait for the GIL behind the API server (a page of
    GET /jobs holds it for tens of ms)."""
    _child_process()
    import boto3

    sqs = boto3.client("sqs")
    ready.release()
    while still_wanted(stop):
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=LONG_POLL_SECONDS,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        for message in response.get("Messages", []):
            deliver_s3_event(sqs, queue_url, message)


def deliver_s3_event(sqs: Any, queue_url: str, message: Mapping[str, Any]) -> None:
    attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    receipt = message["ReceiptHandle"]
    try:
        invoke(DISPATCHER, json.loads(message["Body"]))
    # An asynchronous invocation's error goes to Lambda's retry policy, not the caller.
    except Exception:
        if attempt < ASYNC_ATTEMPTS:
            log.warning("dispatcher failed (attempt %d); retrying", attempt, exc_info=True)
            backoff = RETRY_BACKOFF_SECONDS[attempt - 1]
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=backoff
            )
            return
        log.error("dispatcher failed %d times; event dropped", attempt, exc_info=True)
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)


def consume(
    trigger: SqsTrigger,
    stop: threading.Event | ProcessEvent,
    ready: Callable[[], None] | None = None,
) -> None:
    """Lambda's SQS event source for one function instance, until `stop` is set."""
    import boto3

    from devstack.lambda_events import SqsPoller

    sqs = boto3.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=trigger.queue)["QueueUrl"]
    poller = SqsPoller(
        sqs,
        queue_url,
        lambda event: invoke(trigger.function, event),
        batch_size=trigger.batch_size,
        wait_seconds=LONG_POLL_SECONDS,
        batching_window=trigger.batching_window,
    )
    if ready is not None:
        ready()
    while still_wanted(stop):
        try:
            poller.poll_once()
        # The event source's own calls (receive, delete) failed, not the function, whose
        # errors poll_once handles: like Lambda's pollers, it keeps polling, after a pause.
        except Exception:
            log.warning("polling %s failed; polling again shortly", trigger.queue, exc_info=True)
            stop.wait(POLL_RETRY_SECONDS)


def _child_process() -> None:
    # Ctrl-C reaches the whole process group; the parent stops its children itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Name the process for ps and top (worker-0, s3-events): they all run `python -c`.
    if sys.platform == "linux":
        import ctypes

        pr_set_name = 15
        name = multiprocessing.current_process().name.encode()[:15]
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_name, ctypes.c_char_p(name))
    import app  # noqa: F401 - import (and configure logging) before the first event


def worker_process(trigger: SqsTrigger, stop: ProcessEvent, ready: Semaphore) -> None:
    _child_process()
    consume(trigger, stop, ready=ready.release)


# --- the processes, replaced when they die ---------------------------------------------------


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that died is started again, as Lambda replaces a dead execution
    environment: at once if it had run for `stable_after` seconds (it was not
    crash-looping), else after `first_delay`, doubled for each consecutive quick death up
    to `max_delay`, so a child that cannot start does not spin the CPU."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 30.0

    def quick_deaths(self, previous: int, uptime: float) -> int:
        """The consecutive quick deaths, counting one after `uptime` seconds of life."""
        return previous + 1 if uptime < self.stable_after else 0

    def delay(self, quick_deaths: int) -> float:
        if quick_deaths == 0:
            return 0.0
        return float(min(self.first_delay * 2 ** (quick_deaths - 1), self.max_delay))


@dataclass
class _Child:
    """One named slot of the pool and the process that fills it now (None while it waits
    out a restart delay, until `restart_at`)."""

    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    process: multiprocessing.process.BaseProcess | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    restart_at: float = 0.0


SUPERVISE_POLL_SECONDS = 0.1


class ProcessPool:
    """Processes that each run `target(*args, stop, ready)` until `stop` is set: the
    worker's concurrent instances and the S3 event source. Once started, a supervisor
    thread replaces any of them that dies (same name, same arguments) until `stop()`."""

    def __init__(self, restart_policy: RestartPolicy | None = None) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._ready = self._context.Semaphore(0)
        self._children: list[_Child] = []
        self._policy = restart_policy or RestartPolicy()
        # Held to start a process and to set `_stop`: nothing starts once stop() began.
        self._lock = threading.Lock()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    def add(self, name: str, target: Callable[..., None], *args: Any) -> None:
        self._children.append(_Child(name=name, target=target, args=args))

    def start(self, timeout: float = 60.0) -> None:
        """Start the processes and return once every one of them is polling."""
        for child in self._children:
            self._spawn(child)
        for child in self._children:
            if not self._ready.acquire(timeout=timeout):
                raise SystemExit(f"{child.name} did not start within {timeout:.0f} s")
        self._supervisor.start()

    def stop(self, timeout: float = 15.0) -> None:
        with self._lock:
            self._stop.set()
        # The supervisor sees `_stop` within one poll; only then may this thread reap.
        if self._supervisor.ident is not None:
            self._supervisor.join()
        for child in self._children:
            if child.process is not None:
                _end(child.process, timeout)

    def _spawn(self, child: _Child) -> None:
        process = self._context.Process(
            target=child.target, args=(*child.args, self._stop, self._ready), name=child.name
        )
        process.start()
        child.process, child.started_at = process, time.monotonic()

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_POLL_SECONDS):
            for child in self._children:
                if self._stop.is_set():
                    return
                if child.process is not None and child.process.exitcode is not None:
                    self._schedule_restart(child, child.process)
                elif child.process is None and child.restart_at <= time.monotonic():
                    self._restart(child)

    def _schedule_restart(
        self, child: _Child, process: multiprocessing.process.BaseProcess
    ) -> None:
        pid, exit_code = process.pid, process.exitcode
        process.close()
        child.process = None
        uptime = time.monotonic() - child.started_at
        child.quick_deaths = self._policy.quick_deaths(child.quick_deaths, uptime)
        child.restarts += 1
        delay = self._policy.delay(child.quick_deaths)
        child.restart_at = time.monotonic() + delay
        log.warning("%s", json.dumps(_death_record(child, pid, exit_code, uptime, delay)))

    def _restart(self, child: _Child) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            try:
                self._spawn(child)
            # Out of memory or processes: the very reason a worker may have died.
            except OSError as exc:
                child.quick_deaths += 1
                delay = self._policy.delay(child.quick_deaths)
                child.restart_at = time.monotonic() + delay
                record = {"message": "could not restart", "process": child.name}
                log.warning(
                    "%s", json.dumps({**record, "error": exc.strerror, "restartInSeconds": delay})
                )


def _death_record(
    child: _Child, pid: int | None, exit_code: int | None, uptime: float, delay: float
) -> dict[str, Any]:
    """The log line of a child that died: which, how, and when it comes back."""
    killed_by = signal.Signals(-exit_code).name if exit_code is not None and exit_code < 0 else None
    return {
        "message": "process died; restarting it",
        "process": child.name,
        "pid": pid,
        "exitCode": exit_code if killed_by is None else None,
        "signal": killed_by,
        "uptimeSeconds": round(uptime, 1),
        "restarts": child.restarts,
        "restartInSeconds": delay,
    }


def _end(process: multiprocessing.process.BaseProcess, timeout: float) -> None:
    """Wait for a process told to stop; terminate it, then kill it, if it does not."""
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(5)
    if process.is_alive():
        process.kill()
        process.join()


def stop_resource_tracker() -> None:
    """End multiprocessing's resource tracker now, not just after this process exits: the
    stack must have stopped everything it started by the time it says so (the tracker
    otherwise lingers for a moment after the stack's own exit). Call it once every
    process and every semaphore is gone, or it warns about "leaked" semaphores."""
    from multiprocessing import resource_tracker

    stop = getattr(getattr(resource_tracker, "_resource_tracker", None), "_stop", None)
    if stop is not None:
        stop()


def function_processes(worker: SqsTrigger, workers: int, s3_events_url: str) -> ProcessPool:
    """`workers` concurrent instances of the worker, and the S3 event source."""
    pool = ProcessPool()
    for i in range(workers):
        pool.add(f"worker-{i}", worker_process, worker)
    pool.add("s3-events", s3_events_process, s3_events_url)
    return pool
