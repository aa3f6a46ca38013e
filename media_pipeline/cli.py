"""`media-pipeline`: upload images, follow their jobs, fetch the outputs, manage webhooks.

    export MEDIA_PIPELINE_API=https://... MEDIA_PIPELINE_KEY=...
    media-pipeline upload photos/ --wait --out thumbnails/
    media-pipeline get JOB --out thumbnails/
    media-pipeline jobs --status FAILED --limit 50
    media-pipeline webhooks add https://example.com/hooks

Exit status: 0 when everything asked for succeeded (with --wait: every job COMPLETED), 1
when anything failed (each failure named on stderr with its file and code), 2 on a usage
error. Only results go to stdout; with --json one JSON object per line and nothing else.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import requests

from media_pipeline.client import (
    ApiError,
    BackfillTimeout,
    Client,
    Job,
    JobTimeout,
    ReprocessTimeout,
)
from media_pipeline.explain import explain, one_line
from media_pipeline.progress import Display, display

API_VARIABLE = "MEDIA_PIPELINE_API"
KEY_VARIABLE = "MEDIA_PIPELINE_KEY"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
JOB_STATUSES = ("PENDING", "QUEUED", "PROCESSING", "COMPLETED", "FAILED")
WEBHOOK_EVENTS = ("job.completed", "job.failed")
# Only the standard library's own table: the same answer on every machine.
MEDIA_TYPES = mimetypes.MimeTypes()
# The content types POST /uploads accepts.
ACCEPTED_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/tiff",
        "image/bmp",
        "image/avif",
        "image/heic",
        "image/heif",
    }
)
OUTPUT_EXTENSIONS = {"image/jpeg": "jpg", "image/webp": "webp", "image/png": "png"}


class UsageError(Exception):
    """Exit status 2: the command cannot run as given."""


# --- what to upload --------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    path: Path
    label: str  # the path as the user would recognise it
    content_type: str | None  # None: not an accepted type of file
    size: int


def content_type_of(path: Path) -> str | None:
    guessed, _ = MEDIA_TYPES.guess_type(path.name, strict=False)
    return guessed if guessed in ACCEPTED_TYPES else None


def sources(paths: Sequence[Path]) -> list[Source]:
    """The files named, and the images in the folders named (recursively, hidden files
    and other types of file left out); a named file is uploaded whatever its type."""
    found: list[Source] = []
    for given in paths:
        if given.is_dir():
            found += [_source(path) for path in _images_under(given)]
        elif given.is_file():
            found.append(_source(given))
        else:
            raise UsageError(f"{given}: no such file or folder")
    if not found:
        raise UsageError("no image to upload in " + ", ".join(map(str, paths)))
    return found


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and content_type_of(path) is not None
    )


def _source(path: Path) -> Source:
    return Source(path, str(path), content_type_of(path), path.stat().st_size)


def check_output_names(found: Sequence[Source]) -> None:
    """Each file's outputs go to OUT/<its stem>: two files of one stem would mix theirs."""
    seen: dict[str, Source] = {}
    for source in found:
        other = seen.setdefault(source.path.stem, source)
        if other is not source:
            raise UsageError(
                f"{other.label} and {source.label} would both save their outputs in "
                f"{source.path.stem}/: rename one, or upload them separately"
            )


# --- results ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What became of one file or job."""

    label: str
    job: Job | None = None
    error: dict[str, str] | None = None  # {"code", "message"}: the job's own, or ours
    saved: dict[str, str] = field(default_factory=dict)  # preset -> path

    @property
    def status(self) -> str:
        return str(self.job["status"]) if self.job else "NOT_UPLOADED"

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status == "FAILED"

    def record(self) -> dict[str, Any]:
        """The --json line: the job as the API shows it, with the file and saved paths."""
        job = dict(self.job or {"jobId": None, "status": self.status})
        outputs = [
            {**output, "path": self.saved.get(output["preset"])} if self.saved else output
            for output in job.get("outputs", [])
        ]
        job.update(file=self.label, outputs=outputs, error=self.error or job.get("error"))
        return job

    def failure_line(self) -> str:
        error = self.error or (self.job or {}).get("error") or {}
        code = error.get("code", self.status)
        job = f" (job {self.job['jobId']})" if self.job else ""
        return one_line(f"{self.label}: {code}: {error.get('message', '')}{job}")


class Printer:
    """Results to stdout (one line each, as they come) and failures to stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._lock = threading.Lock()

    def outcome(self, outcome: Outcome) -> None:
        with self._lock:
            if self.as_json:
                print(json.dumps(outcome.record()), flush=True)
            else:
                print(_summary(outcome), flush=True)
            if outcome.failed:
                print(f"media-pipeline: {outcome.failure_line()}", file=sys.stderr, flush=True)


def _summary(outcome: Outcome) -> str:
    job_id = outcome.job["jobId"] if outcome.job else "-"
    error = outcome.error or (outcome.job or {}).get("error") or {}
    status = f"{outcome.status} {error['code']}" if error else outcome.status
    parts = [outcome.label, status, job_id, *outcome.saved.values()]
    return "  ".join(parts)


# --- upload ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadOptions:
    presets: list[str] | None
    wait: bool
    out: Path | None
    timeout: float


class Uploader:
    def __init__(self, client: Client, options: UploadOptions, shown: Display) -> None:
        self.client = client
        self.options = options
        self.shown = shown

    def run(self, source: Source) -> Outcome:
        outcome = Outcome(source.label)
        try:
            self._upload(source, outcome)
        except ApiError as refused:
            code = refused.code or f"http_{refused.status}"
            outcome.error = {"code": code, "message": explain(refused)}
        except JobTimeout as late:
            outcome.job = late.job
            outcome.error = {"code": "timeout", "message": str(late)}
        except (requests.RequestException, OSError) as failure:
            outcome.error = {"code": "connection_error", "message": one_line(str(failure))}
        self.shown.status(source.path, _status_text(outcome))
        return outcome

    def _upload(self, source: Source, outcome: Outcome) -> None:
        if source.content_type is None:
            outcome.error = {
                "code": "unsupported_content_type",
                "message": "not an accepted type of image (by its extension): not uploaded",
            }
            return
        created = self.client.create_upload(
            source.path.name, source.content_type, self.options.presets
        )
        outcome.job = {**created.answer}
        outcome.job.pop("upload", None)
        self.client.send_path(
            created, source.path, source.content_type, self.shown.sent(source.path)
        )
        if not (self.options.wait or self.options.out):
            return
        self.shown.status(source.path, "processing")
        outcome.job = self.client.wait_for_end(created.job_id, self.options.timeout)
        if self.options.out is not None and outcome.job["status"] == "COMPLETED":
            self.shown.status(source.path, "downloading")
            outcome.saved = save_outputs(self.client, outcome.job, self.options.out, source.path)


def _status_text(outcome: Outcome) -> str:
    if outcome.error:
        return f"[red]{outcome.error['code']}"
    color = {"COMPLETED": "green", "FAILED": "red"}.get(outcome.status, "")
    code = ((outcome.job or {}).get("error") or {}).get("code", "")
    return f"[{color}]{outcome.status} {code}".strip() if color else outcome.status


def save_outputs(client: Client, job: Job, out: Path, source: Path) -> dict[str, str]:
    """Each output of the COMPLETED job as OUT/<source's stem>/<preset>.<ext>."""
    saved: dict[str, str] = {}
    for output in job["outputs"]:
        path = out / source.stem / f"{output['preset']}.{output_extension(output)}"
        client.download_to(output["url"], path)
        saved[output["preset"]] = str(path)
    return saved


def output_extension(output: dict[str, Any]) -> str:
    content_type = str(output.get("contentType", ""))
    known = OUTPUT_EXTENSIONS.get(content_type) or MEDIA_TYPES.guess_extension(content_type)
    return known.lstrip(".") if known else str(output["format"]).lower()


def upload_command(client: Client, args: argparse.Namespace) -> int:
    found = sources(args.paths)
    if args.out is not None:
        check_output_names(found)
    options = UploadOptions(args.presets, args.wait, args.out, args.timeout)
    printer = Printer(args.json)
    bars = [(source.path, _bar_label(source.label), source.size) for source in found]
    with display(bars) as shown:
        uploader = Uploader(client, options, shown)
        pool = ThreadPoolExecutor(args.parallel)
        try:
            running = [pool.submit(_run_and_print, uploader, printer, source) for source in found]
            outcomes = [future.result() for future in running]
        finally:
            # On Ctrl-C, the files not started yet are not started at all.
            pool.shutdown(cancel_futures=True)
    failed = [outcome for outcome in outcomes if outcome.failed]
    if len(outcomes) > 1 or failed:
        done = len(outcomes) - len(failed)
        print(f"media-pipeline: {done} ok, {len(failed)} failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _run_and_print(uploader: Uploader, printer: Printer, source: Source) -> Outcome:
    outcome = uploader.run(source)
    printer.outcome(outcome)
    return outcome


def _bar_label(label: str, width: int = 30) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1) :]


# --- get and jobs ----------------------------------------------------------------------------


def get_command(client: Client, args: argparse.Namespace) -> int:
    outcome = Outcome(args.job)
    try:
        outcome.job = client.job(args.job)
        if args.wait or args.out:
            outcome.job = client.wait_for_end(args.job, args.timeout)
        if args.out is not None and outcome.job["status"] == "COMPLETED":
            stem = Path(outcome.job.get("filename") or args.job)
            outcome.saved = save_outputs(client, outcome.job, args.out, stem)
    except JobTimeout as late:
        outcome.job = late.job
        outcome.error = {"code": "timeout", "message": str(late)}
    print(json.dumps(outcome.record(), indent=None if args.json else 2))
    if outcome.failed:
        print(f"media-pipeline: {outcome.failure_line()}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def jobs_command(client: Client, args: argparse.Namespace) -> int:
    for job in client.list_jobs(status=args.status, limit=args.limit):
        if args.json:
            print(json.dumps(job))
            continue
        code = (job.get("error") or {}).get("code", "")
        fields = [job["jobId"], job["status"], job["createdAt"], job.get("filename") or "-"]
        print("  ".join([*fields, code]).rstrip())
    return EXIT_OK


# --- webhooks --------------------------------------------------------------------------------


def webhooks_command(client: Client, args: argparse.Namespace) -> int:
    action: Callable[[Client, argparse.Namespace], None] = WEBHOOK_ACTIONS[args.action]
    action(client, args)
    return EXIT_OK


def _webhook_add(client: Client, args: argparse.Namespace) -> None:
    endpoint = client.add_webhook(args.url, args.events, args.description)
    print(json.dumps(endpoint, indent=None if args.json else 2))
    print("media-pipeline: keep the secret: it is shown this once", file=sys.stderr)


def _webhook_list(client: Client, args: argparse.Namespace) -> None:
    for endpoint in client.webhooks():
        if args.json:
            print(json.dumps(endpoint))
            continue
        state = "enabled" if endpoint["enabled"] else f"disabled ({endpoint['disabledReason']})"
        print("  ".join([endpoint["id"], endpoint["url"], ",".join(endpoint["events"]), state]))


def _webhook_remove(client: Client, args: argparse.Namespace) -> None:
    client.remove_webhook(args.id)


def _webhook_test(client: Client, args: argparse.Namespace) -> None:
    sent = client.test_webhook(args.id)
    print(json.dumps(sent) if args.json else f"{sent['type']} event {sent['eventId']} sent")


def _webhook_rotate(client: Client, args: argparse.Namespace) -> None:
    endpoint = client.rotate_webhook_secret(args.id)
    print(json.dumps(endpoint, indent=None if args.json else 2))
    print("media-pipeline: keep the new secret: it is shown this once", file=sys.stderr)


WEBHOOK_ACTIONS: dict[str, Callable[[Client, argparse.Namespace], None]] = {
    "add": _webhook_add,
    "list": _webhook_list,
    "rm": _webhook_remove,
    "test": _webhook_test,
    "rotate": _webhook_rotate,
}

# --- backfills -------------------------------------------------------------------------------


def backfill_command(client: Client, args: argparse.Namespace) -> int:
    """Start, show or cancel a backfill; prints it as JSON. Fails (exit 1) if it ended
    failed or timed out waiting."""
    if args.action == "start":
        shown = client.start_backfill(
            args.presets,
            created_after=args.after,
            created_before=args.before,
            dry_run=args.dry_run,
        )
    elif args.action == "cancel":
        shown = client.cancel_backfill(args.id)
    else:
        shown = client.backfill(args.id)
    status = EXIT_OK
    if getattr(args, "wait", False):
        try:
            shown = client.wait_backfill(shown["backfillId"], args.timeout)
        except BackfillTimeout as late:
            shown = late.backfill
            print(f"media-pipeline: timeout: {late}", file=sys.stderr)
            status = EXIT_FAILED
    print(json.dumps(shown, indent=None if args.json else 2))
    return EXIT_FAILED if shown["status"] == "failed" else status


# --- presets and reprocess -------------------------------------------------------------------


def presets_command(client: Client, args: argparse.Namespace) -> int:
    for preset in client.presets():
        if args.json:
            print(json.dumps(preset))
            continue
        size = f"{preset['width']}x{preset['height']}"
        print("  ".join([preset["name"], preset["version"], size, preset["fit"], preset["format"]]))
    return EXIT_OK


def reprocess_command(client: Client, args: argparse.Namespace) -> int:
    """Ask for a job's outputs of some presets to be made again; prints the request, or
    with --wait the job once it is done. Fails (exit 1) if the reprocess failed or the
    wait timed out."""
    shown = client.reprocess(args.job, args.presets)
    status = EXIT_OK
    if args.wait:
        try:
            shown = client.wait_reprocessed(args.job, args.timeout)
        except ReprocessTimeout as late:
            shown = late.job
            print(f"media-pipeline: timeout: {late}", file=sys.stderr)
            status = EXIT_FAILED
        failure = shown.get("reprocessError")
        if failure:
            print(
                f"media-pipeline: {args.job}: {failure['code']}: {failure['message']}",
                file=sys.stderr,
            )
            status = EXIT_FAILED
    print(json.dumps(shown, indent=None if args.json else 2))
    return status


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "upload": upload_command,
    "get": get_command,
    "jobs": jobs_command,
    "webhooks": webhooks_command,
    "backfill": backfill_command,
    "presets": presets_command,
    "reprocess": reprocess_command,
}


# --- the command line ------------------------------------------------------------------------


def _positive[T: (int, float)](kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def _preset_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give preset names separated by commas")
    return names


def _connection_options() -> argparse.ArgumentParser:
    """--api and --key, accepted before or after the command."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--api", default=argparse.SUPPRESS, help=f"the API's URL (default: ${API_VARIABLE})"
    )
    options.add_argument(
        "--key",
        default=argparse.SUPPRESS,
        help=f"the API key (default: ${KEY_VARIABLE}; better: a --key shows in ps)",
    )
    options.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="JSON lines on stdout"
    )
    return options


def _wait_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--wait", action="store_true", help="wait until every job ends")
    command.add_argument(
        "--out", type=Path, help="save the outputs as OUT/<file stem>/<preset>.<ext> (waits)"
    )
    command.add_argument(
        "--timeout", type=_positive(float), default=600.0, help="seconds to wait (default 600)"
    )


def parser() -> argparse.ArgumentParser:
    common = _connection_options()
    main_parser = argparse.ArgumentParser(
        prog="media-pipeline",
        parents=[common],
        description="Upload images to media-pipeline, follow their jobs, fetch the outputs.",
        epilog="Exit status: 0 all succeeded, 1 something failed, 2 usage error.",
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    upload = commands.add_parser("upload", parents=[common], help="upload files and folders")
    upload.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    upload.add_argument("--presets", type=_preset_list, help="comma-separated (default: all)")
    upload.add_argument(
        "--parallel", type=_positive(int), default=4, help="files at once (default 4)"
    )
    _wait_options(upload)

    get = commands.add_parser("get", parents=[common], help="show a job, save its outputs")
    get.add_argument("job", metavar="JOB")
    _wait_options(get)

    jobs = commands.add_parser("jobs", parents=[common], help="list jobs, newest first")
    jobs.add_argument("--status", choices=JOB_STATUSES)
    jobs.add_argument("--limit", type=_positive(int), default=20, help="at most (default 20)")

    webhooks = commands.add_parser("webhooks", parents=[common], help="webhook endpoints")
    actions = webhooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="register an endpoint")
    add.add_argument("url", metavar="URL")
    add.add_argument(
        "--event", dest="events", action="append", choices=WEBHOOK_EVENTS, help="(default: both)"
    )
    add.add_argument("--description")
    actions.add_parser("list", parents=[common], help="the endpoints")
    for name, text in (("rm", "remove"), ("test", "send a test event"), ("rotate", "new secret")):
        action = actions.add_parser(name, parents=[common], help=f"{text} (endpoint ID)")
        action.add_argument("id", metavar="ID")
    commands.add_parser("presets", parents=[common], help="the presets, with their versions")
    reprocess = commands.add_parser(
        "reprocess", parents=[common], help="make a job's outputs of some presets again"
    )
    reprocess.add_argument("job", metavar="JOB")
    reprocess.add_argument("--presets", type=_preset_list, required=True, help="comma-separated")
    reprocess.add_argument("--wait", action="store_true", help="until the job is done with it")
    reprocess.add_argument(
        "--timeout", type=_positive(float), default=600.0, help="seconds (default 600)"
    )
    _backfill_parser(commands, common)
    return main_parser


def _backfill_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    backfill = commands.add_parser(
        "backfill", parents=[common], help="give past jobs new or changed presets"
    )
    actions = backfill.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", parents=[common], help="start a backfill")
    start.add_argument("--presets", type=_preset_list, required=True, help="comma-separated")
    start.add_argument("--after", help="only jobs created at or after (ISO 8601, with offset)")
    start.add_argument("--before", help="only jobs created at or before (default: now)")
    start.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    for name, text in (("show", "show one (backfill ID)"), ("cancel", "cancel one (backfill ID)")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("id", metavar="ID")
    for action in (start, actions.choices["show"]):
        action.add_argument("--wait", action="store_true", help="until it is no longer running")
        action.add_argument(
            "--timeout", type=_positive(float), default=600.0, help="seconds (default 600)"
        )


def connect(args: argparse.Namespace) -> Client:
    api = getattr(args, "api", None) or os.environ.get(API_VARIABLE)
    key = getattr(args, "key", None) or os.environ.get(KEY_VARIABLE)
    if not api:
        raise UsageError(f"no API URL: give --api or set {API_VARIABLE}")
    if not key:
        raise UsageError(f"no API key: give --key or set {KEY_VARIABLE}")
    if not api.startswith(("http://", "https://")):
        raise UsageError(f"--api {api}: not an http:// or https:// URL")
    return Client(api, key)


def main(argv: Iterable[str] | None = None) -> int:
    command_line = parser()
    args = command_line.parse_args(None if argv is None else list(argv))
    args.json = getattr(args, "json", False)
    try:
        return COMMANDS[args.command](connect(args), args)
    except UsageError as wrong:
        _usage_error(command_line, str(wrong))
    except ApiError as refused:
        print(f"media-pipeline: {explain(refused)}", file=sys.stderr)
    except requests.RequestException as failure:
        print(f"media-pipeline: connection_error: {one_line(str(failure))}", file=sys.stderr)
    except KeyboardInterrupt:
        print("media-pipeline: interrupted", file=sys.stderr)
        return 130
    return EXIT_FAILED


def _usage_error(command_line: argparse.ArgumentParser, message: str) -> NoReturn:
    command_line.error(message)  # prints usage and the message, exits 2


if __name__ == "__main__":
    sys.exit(main())
