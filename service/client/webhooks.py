"""``tapeline webhooks list | create | deliveries | redeliver``: a tenant's webhook endpoints
and their delivery log, over HTTP. ``create`` prints the signing secret alone on its last line
(it is shown this once). Exit status 2 for a refused request."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from service.client.http import Api, api_command, connection_options


def _list(api: Api, args: argparse.Namespace, console: Console) -> int:
    table = Table("id", "url", "events", "enabled")
    for hook in api.json("GET", "/v1/webhooks", params={"limit": 1000})["items"]:
        state = "yes" if hook["enabled"] else f"no ({hook['disabled_reason'] or 'by you'})"
        table.add_row(hook["id"], hook["url"], ",".join(hook["events"]), state)
    console.print(table)
    return 0


def _create(api: Api, args: argparse.Namespace, console: Console) -> int:
    body: dict[str, Any] = {"url": args.endpoint, "events": args.events.split(","),
                            "enabled": not args.disabled}
    if args.description:
        body["description"] = args.description
    hook = api.json("POST", "/v1/webhooks", json=body)
    console.print(f"webhook {hook['id']}: {hook['url']} ({', '.join(hook['events'])})")
    console.print("its signing secret, shown this once:")
    print(hook["secret"])
    return 0


def _deliveries(api: Api, args: argparse.Namespace, console: Console) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    if args.type:
        params["event_type"] = args.type
    page = api.json("GET", f"/v1/webhooks/{args.webhook_id}/deliveries", params=params)
    table = Table("delivery", "event", "status", "attempts", "last answer", "last attempt")
    for d in page["items"]:
        last = d["attempts"][-1] if d["attempts"] else None
        answer = "" if last is None else (str(last["status_code"]) if last["error"] is None
                                          else last["error"])
        table.add_row(d["id"], d["event_type"], d["status"], str(d["attempt_count"]), answer,
                      d["last_attempt_at"] or "")
    console.print(table)
    return 0


def _redeliver(api: Api, args: argparse.Namespace, console: Console) -> int:
    delivery = api.json("POST", f"/v1/webhooks/{args.webhook_id}/deliveries/"
                                f"{args.delivery_id}/redeliver")
    console.print(f"delivery {delivery['id']} ({delivery['event_type']}): {delivery['status']}")
    return 0


def add_commands(commands: Any,
                 formatter: type[argparse.HelpFormatter] = argparse.HelpFormatter) -> None:
    """``tapeline webhooks ...``, added to the ``tapeline`` parser (with ``formatter`` for
    their help)."""
    common = connection_options()
    webhooks = commands.add_parser("webhooks", help="webhook endpoints and their deliveries",
                                   formatter_class=formatter)
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True)
    p = actions.add_parser("list", parents=[common], help="list the endpoints",
                           formatter_class=formatter)
    p.set_defaults(func=api_command(_list))
    p = actions.add_parser("create", parents=[common], formatter_class=formatter,
                           help="add an endpoint; its secret is printed alone on the last line")
    p.add_argument("endpoint", metavar="ENDPOINT", help="the URL events are posted to (http or "
                   "https)")
    p.add_argument("--events", default="*",
                   help="comma-separated types or prefixes: run.succeeded,run.failed or run.* "
                        "(default: *, everything)")
    p.add_argument("--description", help="a note of your choice")
    p.add_argument("--disabled", action="store_true", help="create it disabled")
    p.set_defaults(func=api_command(_create))
    p = actions.add_parser("deliveries", parents=[common], formatter_class=formatter,
                           help="an endpoint's delivery log, newest first")
    p.add_argument("webhook_id", metavar="WEBHOOK_ID", help="the endpoint (wh_...)")
    p.add_argument("--status", choices=["pending", "succeeded", "failed"],
                   help="only deliveries in this state")
    p.add_argument("--type", help="only events of this type")
    p.add_argument("--limit", type=int, default=20, help="deliveries to show (default: 20)")
    p.set_defaults(func=api_command(_deliveries))
    p = actions.add_parser("redeliver", parents=[common], formatter_class=formatter,
                           help="send a delivery again (same webhook-id)")
    p.add_argument("webhook_id", metavar="WEBHOOK_ID", help="the endpoint (wh_...)")
    p.add_argument("delivery_id", metavar="DELIVERY_ID", help="the delivery (dlv_...)")
    p.set_defaults(func=api_command(_redeliver))
