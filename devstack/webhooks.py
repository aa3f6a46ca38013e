"""A local webhook receiver: verifies each delivery's signature and prints the event.

    python -m devstack.webhooks --secret whsec_... [--port 8765] [--status 200]

Register it with the local stack first (the banner of `make run` shows how): the stage
`local` allows http://127.0.0.1. Each delivery is checked with the `standardwebhooks`
package, an implementation this project did not write; a bad signature is answered 401
and printed as such. `--status` makes it answer something else (410 disables the
endpoint; 500 shows the retries).
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

DEFAULT_PORT = 8765


def handler(verifier: Webhook, status: int) -> type[BaseHTTPRequestHandler]:
    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                event = verifier.verify(body, headers)
            except WebhookVerificationError as exc:
                print(f"REFUSED {headers.get('webhook-id')}: {exc}", flush=True)
                self._answer(401)
                return
            summary = {"id": headers["webhook-id"], "type": event["type"], "data": event["data"]}
            print(json.dumps(summary), flush=True)
            self._answer(status)

        def _answer(self, code: int) -> None:
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    return Receive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.webhooks", description=__doc__)
    parser.add_argument("--secret", required=True, help="the endpoint's whsec_ secret")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--status", type=int, default=200, help="the answer to every delivery")
    arguments = parser.parse_args(argv)
    server = ThreadingHTTPServer(
        ("127.0.0.1", arguments.port), handler(Webhook(arguments.secret), arguments.status)
    )
    print(f"listening on http://127.0.0.1:{server.server_port}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
