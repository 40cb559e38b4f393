"""``archsim schema``: print the JSON schema of the specs."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("schema", help="print the JSON schema of workload, architecture and device specs")
    p.add_argument("kind", nargs="?", choices=["workload", "architecture", "device"],
                   help="only this spec kind")
    p.set_defaults(handler=run)


def run(args) -> int:
    from archsim.specs import json_schema

    schema = json_schema()
    print(json.dumps(schema[args.kind] if args.kind else schema, indent=2))
    return 0
