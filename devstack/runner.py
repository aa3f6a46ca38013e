"""The event runner: the app's S3 and SQS handlers, invoked as Lambda would invoke them.

- S3 notifications reach the dispatcher as an asynchronous invocation: one event per
  notification, retried twice on error, then dropped with a log line (as Lambda's async
  retry policy does). This runs in a process of its own, beside the API server's.
- The jobs queue feeds the worker through Lambda's SQS event source (devstack.lambda_events):
  batch size and batching window from the decorator, the whole batch deleted when the
  handler returns, left to the queue's visibility timeout and redrive policy when it raises.
  As many worker processes as cores poll it, like concurrent Lambda instances.
- The dead-letter queue feeds its handler the same way.
- The sweeper's schedule invokes it every SWEEP_INTERVAL_SECONDS (60 by default: locally
  there is no reason to wait the deployed rate's 5 minutes), in a thread of its own. As
  for a scheduled Lambda, a failed run is only logged; the next one finds the same jobs.

The handlers are the app's own (app.handler_map), unchanged.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as ProcessEvent
from multiprocessing.synchronize import Semaphore
from typing import Any, Protocol

log = logging.getLogger("devstack")

DISPATCHER = "dispatch_upload"
WORKER = "make_thumbnails"
DEAD_LETTERS = "fail_dead_letters"
SWEEPER = "sweep_jobs"
DEFAULT_SWEEP_INTERVAL_SECONDS = 60.0
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries
LONG_POLL_SECONDS = 1
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
    rules = []
    if source.prefix:
        rules.append({"Name": "prefix", "Value": source.prefix})
    if source.suffix:
        rules.append({"Name": "suffix", "Value": source.suffix})
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


# --- S3 notifications -> the dispatcher ----------------------------------------------------


class S3EventSource:
    """Invokes the dispatcher once per notification on the S3 events queue."""

    def __init__(self, sqs: Any, queue_url: str, stop: threading.Event | ProcessEvent) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._halt = stop

    def run(self) -> None:
        parent = multiprocessing.parent_process()
        while not self._halt.is_set() and (parent is None or parent.is_alive()):
            response = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=LONG_POLL_SECONDS,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            for message in response.get("Messages", []):
                self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            invoke(DISPATCHER, json.loads(message["Body"]))
        # An asynchronous invocation's error goes to Lambda's retry policy, not the caller.
        except Exception:
            if attempt < ASYNC_ATTEMPTS:
                log.warning("dispatcher failed (attempt %d); retrying", attempt, exc_info=True)
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=RETRY_BACKOFF_SECONDS[attempt - 1],
                )
                return
            log.error("dispatcher failed %d times; event dropped", attempt, exc_info=True)
        self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])


def s3_events_process(queue_url: str, stop: ProcessEvent, ready: Semaphore) -> None:
    """The S3 event source in a process of its own: the dispatcher's AWS calls do not
    wait for the GIL behind the API server (a page of GET /jobs holds it for tens of ms)."""
    _child_process()
    import boto3

    import app  # noqa: F401 - import (and configure logging) before the first event

    source = S3EventSource(boto3.client("sqs"), queue_url, stop)
    ready.release()
    source.run()


# --- SQS -> the worker and the dead-letter handler ------------------------------------------


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
    parent = multiprocessing.parent_process()
    if ready is not None:
        ready()
    while not stop.is_set() and (parent is None or parent.is_alive()):
        poller.poll_once()


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


def worker_process(trigger: SqsTrigger, stop: ProcessEvent, ready: Semaphore) -> None:
    _child_process()
    import app  # noqa: F401 - import (and configure logging) before the first message

    consume(trigger, stop, ready=ready.release)


class ProcessPool:
    """Processes that each run `target(*args, stop, ready)` until `stop` is set: the
    worker's concurrent instances and the S3 event source."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._ready = self._context.Semaphore(0)
        self._processes: list[multiprocessing.process.BaseProcess] = []

    def add(self, name: str, target: Callable[..., None], *args: Any) -> None:
        self._processes.append(
            self._context.Process(target=target, args=(*args, self._stop, self._ready), name=name)
        )

    def start(self, timeout: float = 60.0) -> None:
        """Start the processes and return once every one of them is polling."""
        for process in self._processes:
            process.start()
        for process in self._processes:
            if not self._ready.acquire(timeout=timeout):
                raise SystemExit(f"{process.name} did not start within {timeout:.0f} s")

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for process in self._processes:
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
