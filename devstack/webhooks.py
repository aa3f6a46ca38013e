"""A local webhook receiver: records each delivery, and from the command line verifies
its signature and prints the event.

    python -m devstack.webhooks --secret whsec_... [--port 8765] [--status 200]

Register it with the local stack first (the banner of `make run` shows how): the stage
`local` allows http://127.0.0.1. Each delivery is checked with the `standardwebhooks`
package, an implementation this project did not write; a bad signature is answered 401
and printed as such. `--status` makes it answer something else (410 disables the
endpoint; 500 shows the retries). Tests and benchmarks use `receiver()`, which records
what arrives and answers as it is told.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_PORT = 8765


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.time() when it arrived


# What to answer a delivery: a status, or None to never answer (held until the stop).
Answer = Callable[["Receiver", Received], int | None]


@dataclass
class Receiver:
    url: str
    answer: Answer
    received: list[Received] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)


def scripted(statuses: Sequence[int | None]) -> Answer:
    """Answer the n-th delivery with the n-th status (the last one repeats)."""

    def answer(receiver: Receiver, _: Received) -> int | None:
        return statuses[min(len(receiver.received), len(statuses)) - 1]

    return answer


@contextmanager
def receiver(
    answer: Answer | Sequence[int | None] = (200,),
    *,
    port: int = 0,
    path: str = "/hooks",
    redirect_to: str | None = None,
) -> Iterator[Receiver]:
    """An HTTP receiver on 127.0.0.1 (`port` 0: a free one), stopped when the block ends;
    its 3xx answers send the client to `redirect_to`."""
    answering = scripted(answer) if isinstance(answer, Sequence) else answer
    state: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            me = state[0]
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            arrived = Received(headers, body, time.time())
            me.received.append(arrived)
            status = answering(me, arrived)
            if status is None:
                me.stopping.wait(60)
                return
            reply = b'{"ok": true}' if status < 300 else b"receiver says no"
            self.send_response(status)
            if redirect_to is not None and 300 <= status < 400:
                self.send_header("location", redirect_to)
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    state.append(Receiver(f"http://127.0.0.1:{server.server_port}{path}", answering))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state[0]
    finally:
        state[0].stopping.set()
        server.shutdown()
        server.server_close()


def verifying_printer(secret: str, status: int) -> Answer:
    """Verify each delivery (401 if its signature is wrong), print it, answer `status`."""
    from standardwebhooks import Webhook, WebhookVerificationError

    verifier = Webhook(secret)

    def answer(_: Receiver, arrived: Received) -> int:
        try:
            event = verifier.verify(arrived.body, arrived.headers)
        except WebhookVerificationError as exc:
            print(f"REFUSED {arrived.headers.get('webhook-id')}: {exc}", flush=True)
            return 401
        summary = {"id": arrived.headers["webhook-id"], "type": event["type"]}
        print(json.dumps(summary | {"data": event["data"]}), flush=True)
        return status

    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.webhooks", description=__doc__)
    parser.add_argument("--secret", required=True, help="the endpoint's whsec_ secret")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--status", type=int, default=200, help="the answer to every delivery")
    arguments = parser.parse_args(argv)
    answer = verifying_printer(arguments.secret, arguments.status)
    with receiver(answer, port=arguments.port, path="/") as running:
        print(f"listening on {running.url}", file=sys.stderr, flush=True)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
