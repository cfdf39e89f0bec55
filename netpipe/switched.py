"""A switched cell, driven from the controller: servers on one node, clients on another.

The first node of the inventory takes every server endpoint, the second
every client endpoint. Both halves are built at the same time, each by
netpipe on its own node (``netpipe node serve`` and ``netpipe node clients``
over SSH, see :mod:`netpipe.nodeside`). Once the servers listen and the
clients' half is ready, the controller says ``go``; the clients' node
releases them together. The measured traffic crosses the nodes' data
interfaces and the switch between them; only the SSH control traffic uses
the management network. The pairs are then judged exactly as a local cell's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from fabric import Connection

from netpipe import halves
from netpipe.config import Config
from netpipe.drivers import Plan, get_driver
from netpipe.errors import NodeError, ProvisionError
from netpipe.inventory import Node
from netpipe.iperf.session import _judge
from netpipe.matrix import Cell
from netpipe.naming import new_token
from netpipe.remote import Session, connect, fan_out

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0


def run_switched(
    cell: Cell, config: Config, settings: dict[str, Any], result: dict[str, Any]
) -> None:
    """Measure a switched cell into ``result`` (status, pairs, driver, nodes)."""
    from netpipe.runner import cell_settings, make_plan, time_limit

    reason = halves.unsupported_reason(cell.driver) or get_driver(
        cell.driver
    ).inapplicable_reason(cell.topology, cell.pairs)
    if cell.backend != "netns":
        reason = (
            f"the {cell.backend} backend is not implemented for the switched "
            "topology yet; switched cells run with backend netns."
        )
    if reason is not None:
        result["status"], result["reason"] = "skipped", reason
        log.warning("cell %s: skipped: %s", cell.label(), reason)
        return
    server_node, client_node = config.nodes[0], config.nodes[1]
    ep_mtu = halves.endpoint_mtu(cell.driver, cell.mtu)
    if ep_mtu < 68:
        raise ProvisionError(
            f"the MTU {cell.mtu} leaves {ep_mtu} bytes inside the VXLAN tunnel, "
            "below IPv4's minimum of 68; use an MTU of at least 118 for vxlan."
        )
    if config.iperf.mss == "auto" and ep_mtu != cell.mtu:
        settings["mss"] = cell_settings(dataclasses.replace(cell, mtu=ep_mtu), config)[
            "mss"
        ]
    plan = make_plan(cell, config, new_token())
    limit = time_limit(settings, cell.pairs)
    nodes = {"server": server_node, "client": client_node}
    log.info(
        "cell %s: servers on %s, clients on %s",
        cell.label(),
        server_node.name,
        client_node.name,
    )
    t = time.monotonic()
    opened: list[Connection] = []

    def open_one(node: Node) -> Connection:
        conn = connect(node)
        opened.append(conn)
        return conn

    try:
        conns = fan_out([server_node, client_node], open_one)
        answers = _drive(
            conns,
            server_node,
            client_node,
            half_request(
                cell, plan, settings, server_node, "server", client_node, limit
            ),
            half_request(
                cell, plan, settings, client_node, "client", server_node, limit
            ),
            limit,
        )
    finally:
        # Also when only one node answered: its connection is closed here.
        for conn in opened:
            conn.close()
    result["timings_s"]["run"] = round(time.monotonic() - t, 4)
    _fill(result, answers, nodes, limit)
    result["driver"] |= {"mtu": cell.mtu, "endpoint_mtu": ep_mtu}


def half_request(
    cell: Cell,
    plan: Plan,
    settings: dict[str, Any],
    node: Node,
    role: str,
    other: Node,
    limit: float,
) -> dict[str, Any]:
    """What one node is asked to build and run for its half of the cell."""
    return {
        "cell": cell.label(),
        "token": plan.token,
        "driver": cell.driver,
        "mtu": cell.mtu,
        "endpoints": [
            {"netns": ep.netns, "pair": ep.pair, "address": str(ep.address)}
            for ep in plan.endpoints
            if ep.role == role
        ],
        "servers": [str(ep.address.ip) for ep in plan.endpoints if ep.role == "server"],
        "data_interface": node.data_interface,
        "local_data": str(node.data_address),
        "remote_data": str(other.data_address),
        "iperf": {
            "binary": node.iperf3,
            "protocol": cell.protocol,
            "duration_s": settings["duration_s"],
            "omit_s": settings["omit_s"],
            "mss": settings["mss"],
            "udp_rate": settings["udp_rate"] or "",
        },
        "base_port": settings["base_port"],
        "limit_s": limit,
    }


def _drive(
    conns: dict[str, Connection],
    server_node: Node,
    client_node: Node,
    server_req: dict[str, Any],
    client_req: dict[str, Any],
    limit: float,
) -> dict[str, dict[str, Any]]:
    """Run both halves; return their final answers, or raise naming the nodes."""
    server = Session(server_node, conns[server_node.name], "serve", server_req)
    client = Session(client_node, conns[client_node.name], "clients", client_req)
    failures: list[str] = []
    answers: dict[str, dict[str, Any]] = {}
    try:
        # Both halves provision at once; each says ready when it is.
        for session in (server, client):
            try:
                session.read(READY_TIMEOUT_S)
            except NodeError as exc:
                failures.append(str(exc))
        if not failures:
            client.channel.sendall(b"go\n")
            answers["client"] = client.read(limit + 30)
    except NodeError as exc:
        failures.append(str(exc))
    finally:
        # EOF tells each half to stop waiting; their last answers come after
        # teardown, so the next cell starts on clean nodes.
        for role, session in (("client", client), ("server", server)):
            if role in answers:
                continue
            try:
                session.close_input()
                answers[role] = session.read(60, interruptible=False)
            except (NodeError, OSError) as exc:
                # After a first failure the other half only says it stopped.
                if not failures:
                    failures.append(str(exc))
        for session in (server, client):
            session.forward_log()
    if failures:
        raise NodeError(
            failures[0]
            if len(failures) == 1
            else "the nodes failed:\n" + "\n".join(f"- {f}" for f in failures)
        )
    return answers


def _fill(
    result: dict[str, Any],
    answers: dict[str, dict[str, Any]],
    nodes: dict[str, Node],
    limit: float,
) -> None:
    """Turn the halves' answers into the cell's pairs, status and provenance."""
    servers = {s["pair"]: s for s in answers["server"]["servers"]}
    clients = {c["pair"]: c for c in answers["client"]["clients"]}
    pairs = []
    for i in sorted(servers):
        s, c = servers[i], clients[i]
        pairs.append(
            {
                "index": i,
                "server_node": nodes["server"].name,
                "client_node": nodes["client"].name,
                "server_netns": s["netns"],
                "client_netns": c["netns"],
                "server_address": s["address"],
                "client_address": c["address"],
                "port": s["port"],
                "server_command": s["command"],
                "client_command": c["command"],
                "client_start": c["start"],
                "client_returncode": c["returncode"],
                "client_stdout": c["stdout"],
                "client_stderr": c["stderr"],
                "server_returncode": s["returncode"],
                "server_stdout": s["stdout"] or None,
                "server_stderr": s["stderr"],
            }
        )
    timed_out = any(c.get("timed_out") for c in clients.values())
    released = {i: c["start"] for i, c in clients.items() if c["start"] is not None}
    outcome = _judge(pairs, timed_out, limit, released)
    result["pairs"] = outcome.pairs
    result["status"] = outcome.status
    result["reason"] = outcome.reason
    result["error_class"] = outcome.error_class
    result["driver"] = {
        "name": answers["server"]["driver"]["name"],
        "server": answers["server"]["driver"],
        "client": answers["client"]["driver"],
    }
    result["nodes"] = {
        role: {
            "name": nodes[role].name,
            "ssh_host": nodes[role].ssh.host,
            "data_interface": nodes[role].data_interface,
            "data_address": str(nodes[role].data_address),
            "provenance": answers[role]["provenance"],
            "timings_s": answers[role]["timings_s"],
        }
        for role in ("server", "client")
    }
    for role in ("server", "client"):
        for key, value in answers[role]["timings_s"].items():
            result["timings_s"][f"{role}_{key}"] = value
    log.info(
        "cell %s: ran %d pairs across %s and %s, start spread %.4f s",
        result["cell"]["topology"] + "/" + result["cell"]["driver"],
        len(pairs),
        nodes["server"].name,
        nodes["client"].name,
        outcome.start_spread,
    )
