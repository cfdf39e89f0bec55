"""The ``netpipe`` subcommands for nodes: ``testbed``, ``nodes`` and ``node``.

``testbed up|down`` builds and removes the emulated testbed, ``nodes check``
asks every node of a config's inventory what it can do, and the unlisted
``node`` command is what the controller runs on a node over SSH: it reads one
JSON request on stdin and answers in JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    """Add the testbed, nodes and node subcommands to the ``netpipe`` parser."""
    from netpipe.testbed import DEFAULT_DIR

    p = sub.add_parser("testbed", help="build or remove the emulated testbed")
    tb = p.add_subparsers(dest="action", required=True)
    q = tb.add_parser("up", help="build N nodes as namespaces with sshds")
    q.add_argument("--nodes", type=int, default=2)
    q.add_argument("--rate", default=None, help="shape switch ports, e.g. 10gbit")
    q.add_argument("--inventory", type=Path, default=None)
    q.add_argument("--state-dir", type=Path, default=DEFAULT_DIR)
    q.set_defaults(func=_cmd_testbed_up)
    q = tb.add_parser("down", help="remove everything the testbed made")
    q.add_argument("--state-dir", type=Path, default=DEFAULT_DIR)
    q.set_defaults(func=_cmd_testbed_down)

    p = sub.add_parser("nodes", help="check the nodes of a config's inventory")
    nd = p.add_subparsers(dest="action", required=True)
    q = nd.add_parser("check", help="reach every node and say what it can run")
    q.add_argument("--config", default="config/config.yaml", type=Path)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_nodes_check)

    # Run by the controller over SSH; not meant to be typed.
    p = sub.add_parser("node")
    p.add_argument("op", choices=["info", "serve", "clients"])
    p.set_defaults(func=_cmd_node)


def _cmd_testbed_up(args: argparse.Namespace) -> int:
    from netpipe.testbed import up

    path = up(
        args.nodes, rate=args.rate, inventory=args.inventory, folder=args.state_dir
    )
    print(f"testbed up: {args.nodes} nodes; inventory {path}")
    return 0


def _cmd_testbed_down(args: argparse.Namespace) -> int:
    from netpipe.testbed import down

    removed = down(args.state_dir)
    print(json.dumps(removed))
    return 0


def _cmd_nodes_check(args: argparse.Namespace) -> int:
    from netpipe.config import load
    from netpipe.remote import check_nodes, format_report

    config = load(args.config)
    report = check_nodes(config, raise_on_error=False)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0 if not report["errors"] else 1


def _cmd_node(args: argparse.Namespace) -> int:
    from netpipe.nodeside import serve_request

    return serve_request(args.op)
