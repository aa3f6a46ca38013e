"""A webhook receiver for tests: an HTTP server on 127.0.0.1 that records each request
and answers from a script of statuses (the last one repeats); a status of None never
answers (the request is held until the receiver stops)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    script: list[int | None]
    received: list[Received] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def next_status(self) -> int | None:
        index = min(len(self.received) - 1, len(self.script) - 1)
        return self.script[index]


@contextmanager
def receiver(script: Sequence[int | None], path: str = "/hooks") -> Iterator[Receiver]:
    """A receiver answering `script`, stopped when the block ends."""
    state: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            me = state[0]
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            me.received.append(Received(headers, body))
            status = me.next_status()
            if status is None:
                me.stopping.wait(30)
                return
            answer = b'{"ok": true}' if status < 300 else b"receiver says no"
            self.send_response(status)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.append(Receiver(f"http://127.0.0.1:{server.server_port}{path}", list(script)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        state[0].stopping.set()
        server.shutdown()
        server.server_close()
