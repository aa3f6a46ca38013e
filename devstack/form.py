"""Turn the answer of POST /uploads into curl arguments (for the local stack's examples).

    curl -s $(python -m devstack.form upload.json) -F file=@photo.jpg
    python -m devstack.form --job-id upload.json

The arguments are printed unquoted for `$(...)`: presigned form fields (key, policy,
signature, credential) hold no spaces or shell-special characters.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_./:=+%@-]*$")


def curl_arguments(upload: dict[str, Any]) -> str:
    form = upload["upload"]
    words = [f"{name}={value}" for name, value in form["fields"].items()]
    for word in [*words, form["url"]]:
        if not _SHELL_SAFE.match(word):
            raise SystemExit(f"not safe to pass unquoted to curl: {word!r}")
    return " ".join([*(f"-F {word}" for word in words), form["url"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.form", description=__doc__)
    parser.add_argument("upload_json", type=Path)
    parser.add_argument("--job-id", action="store_true", help="print only the job id")
    args = parser.parse_args(argv)
    upload = json.loads(args.upload_json.read_text())
    if "jobId" not in upload or "upload" not in upload:
        raise SystemExit(f"{args.upload_json} is not an answer of POST /uploads: {upload}")
    print(upload["jobId"] if args.job_id else curl_arguments(upload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
