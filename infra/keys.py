"""Create or revoke an API key on a stage.

    python -m infra.keys create --stage dev --tenant acme   # prints the key, once
    python -m infra.keys revoke --stage dev --key mpk_...

Only the key's SHA-256 is stored; the key itself exists only in this command's output.
The table is found from the stage's stack (or API_KEYS_TABLE, for the local stack).
"""

from __future__ import annotations

import argparse

from chalicelib import auth
from chalicelib.config import reset_settings
from infra import stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.keys", description=__doc__)
    parser.add_argument("action", choices=("create", "revoke"))
    parser.add_argument("--stage", help="the deployed stage whose key table to use")
    parser.add_argument("--tenant", help="tenant id for a new key ([a-z0-9][a-z0-9_-]*)")
    parser.add_argument("--key", help="the key to revoke")
    args = parser.parse_args(argv)
    stack.use_stage_output(args.stage, "API_KEYS_TABLE")
    reset_settings()
    if args.action == "create":
        if not args.tenant:
            parser.error("create needs --tenant")
        print(auth.create_api_key(args.tenant))
    else:
        if not args.key:
            parser.error("revoke needs --key")
        auth.revoke_api_key(args.key)
        print("revoked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
