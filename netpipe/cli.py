"""The ``netpipe`` command: measure a cell, read iperf3 files, check, clean up."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from netpipe import __version__
from netpipe.config import Config, load, validate
from netpipe.errors import ConfigError, NetpipeError
from netpipe.lock import NO_WAIT_ENV
from netpipe.matrix import Cell

log = logging.getLogger("netpipe")


def _cmd_measure(args: argparse.Namespace) -> int:
    from netpipe.runner import measure

    cell = Cell(
        args.topology,
        args.driver,
        args.protocol,
        args.mtu,
        args.pairs,
        args.rep,
        args.backend,
    )
    config = for_one_cell(load(args.config), cell)
    output = args.output or cell.path(args.results)
    if args.no_wait:
        os.environ[NO_WAIT_ENV] = "1"  # the runner takes the lock
    result = measure(cell, config, output)
    print(
        json.dumps(
            {
                "cell": cell.label(),
                "status": result["status"],
                "reason": result["reason"],
                "output": str(output),
            }
        )
    )
    return 1 if result["status"] == "failed" else 0


def for_one_cell(config: Config, cell: Cell) -> Config:
    """Validate a cell given by options as the config's only sub-matrix."""
    one = {
        "topology": [cell.topology],
        "backend": [cell.backend],
        "driver": [cell.driver],
        "protocol": [cell.protocol],
        "mtu": [cell.mtu],
        "pairs": [cell.pairs],
    }
    if cell.rep < 1:
        raise ConfigError(
            f"option --rep: {cell.rep} is not allowed; it must be 1 or more."
        )
    try:
        # The raw config holds the inventory file's nodes already.
        raw = {**config.raw, "inventory": None}
        return validate({**raw, "matrix": [one], "repetitions": cell.rep})
    except ConfigError as exc:
        # Name the option the user typed rather than the matrix key behind it.
        text = re.sub(r"config key 'matrix\[0\]\.(\w+)\[0\]'", r"option --\1", str(exc))
        raise ConfigError(text) from None


def _cmd_parse(args: argparse.Namespace) -> int:
    from netpipe.iperf.reader import parse_file

    worst = 0
    for name in args.files:
        try:
            record = parse_file(name).to_record()
        except OSError as exc:
            record = {
                "status": "failed",
                "error": f"cannot read {name}: {exc.strerror}.",
            }
        print(json.dumps({"file": name, **record}))
        worst = max(worst, int(record["status"] != "ok"))
    return worst


def _cmd_doctor(args: argparse.Namespace) -> int:
    from netpipe.doctor import doctor

    docker = load(args.config).docker if args.config else None
    report = doctor(args.iperf3, args.parent, docker)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"netpipe {report['netpipe_version']}, kernel {report['kernel']}")
    print(f"root: {'yes' if report['is_root'] else 'no (netpipe needs root)'}")
    print(f"iperf3: {report['iperf3']}")
    for name, reason in report["drivers"].items():
        print(f"  {name:16} {'available' if reason is None else reason}")
    engine = report["docker"]
    if engine["reachable"]:
        print(f"docker: engine {engine['version']} at {engine['engine']}")
    else:
        print(
            f"docker: the docker backend's cells would be skipped: {engine['reason']}"
        )
    present = {True: " (present)", False: " (not on the engine yet)", None: ""}
    print(f"  image: {engine['image']}{present[engine['image_present']]}")
    return 0


def _cmd_drivers(args: argparse.Namespace) -> int:
    from netpipe.doctor import driver_table

    rows = driver_table(args.parent)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        verdict = "available" if row["available"] == "yes" else row["reason"]
        print(f"{row['name']:16} {row['source']}")
        print(f"{'':16} {row['summary'] or ''}")
        print(f"{'':16} {verdict}")
    return 0


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from netpipe.backends.docker import unavailable_reason
    from netpipe.config import DockerSettings
    from netpipe.records import cleanup

    removed = cleanup(containers=True)
    for item in removed:
        print(json.dumps(item))
    if not removed:
        print("nothing to clean up")
    missing = unavailable_reason(DockerSettings())
    if missing:
        print(f"containers not looked for: {missing}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from netpipe.config import load
    from netpipe.matrix import expand

    cells = expand(load(args.config))
    print(f"{args.config}: valid, {len(cells)} cells")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``netpipe`` command."""
    parser = argparse.ArgumentParser(
        prog="netpipe", description="Measure container network data paths."
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("measure", help="measure one cell and write its result file")
    p.add_argument("--config", default="config/config.yaml", type=Path)
    p.add_argument("--topology", default="local")
    p.add_argument("--backend", default="netns", help="netns or docker")
    p.add_argument("--driver", required=True)
    p.add_argument("--protocol", choices=["tcp", "udp"], default="tcp")
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--rep", type=int, default=1)
    p.add_argument("--results", default="results", type=Path)
    p.add_argument("--output", type=Path, help="result file (default: under --results)")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="refuse, rather than wait, if another measurement holds the testbed",
    )
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("parse", help="read iperf3 JSON files, one JSON line each")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_cmd_parse)

    p = sub.add_parser("doctor", help="which drivers this machine can run, and why not")
    p.add_argument("--iperf3", default="iperf3")
    p.add_argument("--parent", default=None, help="parent NIC for macvlan/ipvlan")
    p.add_argument(
        "--config", type=Path, default=None, help="take the docker settings from it"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("drivers", help="every driver, where it comes from, and why not")
    p.add_argument("--parent", default=None, help="parent NIC for macvlan/ipvlan")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_drivers)

    p = sub.add_parser("cleanup", help="remove leftovers of interrupted cells")
    p.set_defaults(func=_cmd_cleanup)

    p = sub.add_parser("validate", help="check a config file and count its cells")
    p.add_argument("config", type=Path)
    p.set_defaults(func=_cmd_validate)

    from netpipe.nodecli import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netpipe`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if (
        args.command in ("measure", "cleanup", "doctor", "drivers", "testbed")
        and os.geteuid() != 0
    ):
        log.warning("netpipe %s needs root to manage namespaces", args.command)
    try:
        return int(args.func(args))
    except NetpipeError as exc:
        print(f"netpipe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "netpipe: interrupted; everything the cell made was removed.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
