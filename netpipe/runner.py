"""Measuring one cell: provision, run iperf3, collect, tear down, write.

A cell holds the testbed lock for its whole life, first removes the leftovers
of any interrupted run, then records what it will create before creating it.
Teardown runs in every outcome, including SIGINT and SIGTERM, which only
request a stop at the next safe point (``netpipe.interrupt``). The result
file is written once, atomically, and says ``ok``, ``failed`` (with the error)
or ``skipped`` (with the reason); it is never a silent zero.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import time
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netpipe import interrupt, provenance, records
from netpipe.atomic import write_atomic
from netpipe.backends import Backend, Proc
from netpipe.backends import docker as docker_backend
from netpipe.backends.netns import NetnsBackend, proc_start_time, remove_netns
from netpipe.config import Config
from netpipe.drivers import Driver, Endpoint, Plan, get_driver
from netpipe.drivers.base import host_link_mtus, link_mtu
from netpipe.errors import MeasurementError, NetpipeError, ProvisionError
from netpipe.iperf.command import IperfOptions
from netpipe.iperf.failures import Failure, check_binary, run_with_retries
from netpipe.iperf.session import Outcome, run_pairs
from netpipe.lock import testbed_lock
from netpipe.matrix import Cell
from netpipe.naming import new_token

log = logging.getLogger(__name__)

FORMAT = "netpipe-cell/1"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def cell_settings(cell: Cell, config: Config) -> dict[str, Any]:
    """Return the resolved settings of a cell, as recorded in its result."""
    mss: int | str | None = config.iperf.mss
    if mss == "auto":
        # The study's -M: MTU minus 20 bytes of IPv4 and 20 of TCP header.
        mss = cell.mtu - 40 if cell.mtu - 40 >= 88 else None
    return {
        "duration_s": config.iperf.duration_s,
        "omit_s": config.iperf.omit_s,
        "mss": mss if cell.protocol == "tcp" else None,
        "udp_rate": config.iperf.udp_rate if cell.protocol == "udp" else None,
        "iperf3": config.iperf.binary,
        "retries": config.iperf.retries,
        "retry_backoff_s": config.iperf.retry_backoff_s,
        "base_port": config.iperf.base_port,
        "address_pool": str(config.network.address_pool),
        "parent": config.network.parent,
    }


def time_limit(settings: dict[str, Any], pairs: int) -> float:
    """Seconds a cell's clients may take before they are killed as hung."""
    return settings["duration_s"] + settings["omit_s"] + 10.0 + 0.05 * pairs


def make_plan(cell: Cell, config: Config, token: str) -> Plan:
    """Name every endpoint and give each its data address."""
    pool = config.network.address_pool
    endpoints = []
    for i in range(cell.pairs):
        for k, role in enumerate(("server", "client")):
            address = pool.network_address + 1 + 2 * i + k
            endpoints.append(
                Endpoint(
                    netns=f"np{token}{role[0]}{i}",
                    role=role,
                    pair=i,
                    address=ipaddress.IPv4Interface(f"{address}/{pool.prefixlen}"),
                )
            )
    return Plan(
        token=token,
        mtu=cell.mtu,
        endpoints=endpoints,
        parent=config.network.parent,
        base_port=config.iperf.base_port,
    )


def measure(cell: Cell, config: Config, output: str | Path) -> dict[str, Any]:
    """Measure one cell and write its result file; return the result."""
    output = Path(output)
    settings = cell_settings(cell, config)
    result: dict[str, Any] = {
        "format": FORMAT,
        "cell": cell.to_dict(),
        "status": None,
        "reason": None,
        "error_class": None,
        "settings": settings,
        "driver": {"name": cell.driver},
        "backend": {"name": cell.backend},
        "provenance": None,
        "started_at": _now(),
        "ended_at": None,
        "duration_s": None,
        "timings_s": {},
        "pairs": [],
        "attempts": [],
    }
    t0 = time.monotonic()
    log.info("cell %s: start", cell.label())

    with interrupt.deferred(), testbed_lock(cell.label()):
        # The cell starts once it holds the testbed, not while it waits.
        result["started_at"] = _now()
        result["timings_s"]["lock_wait"] = round(time.monotonic() - t0, 4)
        t0 = time.monotonic()
        records.cleanup()
        try:
            binary = check_binary(config.iperf.binary)
            settings["iperf3"] = binary
            result["provenance"] = provenance.collect(binary)
            if cell.topology == "switched":
                from netpipe.switched import run_switched

                run_switched(cell, config, settings, result)
            else:
                _run(cell, config, settings, result)
        except KeyboardInterrupt:
            log.warning(
                "cell %s: interrupted; everything it made was removed and no "
                "result was written",
                cell.label(),
            )
            raise
        except NetpipeError as exc:
            result["status"] = "failed"
            result["reason"] = str(exc)
            result["error_class"] = _error_class(exc)
            log.error("cell %s: failed: %s", cell.label(), exc)

    result["ended_at"] = _now()
    result["duration_s"] = round(time.monotonic() - t0, 3)
    write_result(result, output)
    log.info(
        "cell %s: %s in %.1f s%s",
        cell.label(),
        result["status"],
        result["duration_s"],
        f" ({result['reason']})" if result["reason"] else "",
    )
    return result


def _run(
    cell: Cell, config: Config, settings: dict[str, Any], result: dict[str, Any]
) -> None:
    """Everything between taking the lock and writing the file."""
    driver = get_driver(cell.driver)
    token = new_token()
    rec = records.Record(token=token, cell=cell.label())
    scratch = f"np{token}pr"
    rec.netns = [scratch]
    rec.save()

    with IPRoute() as host:
        try:
            reason = (
                driver.inapplicable_reason(cell.topology, cell.pairs)
                or backend_unavailable_reason(cell, config)
                or driver.unavailable_reason(host, config.network.parent, scratch)
            )
        except NetpipeError:
            rec.discard()  # an engine that does not answer: nothing was made
            raise
        if reason is not None:
            rec.discard()
            result["status"] = "skipped"
            result["reason"] = reason
            log.warning("cell %s: skipped: %s", cell.label(), reason)
            return
        plan = make_plan(cell, config, token)
        try:
            driver.plan(plan)
        except NetpipeError:
            rec.discard()  # nothing is created before the plan is whole
            raise
        if config.iperf.mss == "auto" and plan.endpoint_mtu != plan.mtu:
            settings["mss"] = cell_settings(
                dataclasses.replace(cell, mtu=plan.endpoint_mtu), config
            )["mss"]
        rec.netns += [ep.netns for ep in plan.endpoints] + plan.extra_netns
        if cell.backend == "docker":
            rec.containers = [ep.netns for ep in plan.endpoints]
            rec.docker_url = docker_backend.engine_url(config.docker)
        rec.links = list(plan.host_links)
        if plan.parent is not None:
            rec.restore_mtu = {plan.parent: link_mtu(host, plan.parent) or 1500}
        rec.save()
        # On success and on failure alike the record goes once teardown has
        # finished; if teardown itself fails, the record stays for cleanup.
        _provision_and_measure(cell, config, settings, driver, host, plan, rec, result)


def backend_unavailable_reason(cell: Cell, config: Config) -> str | None:
    """Why this machine cannot make the cell's endpoints, or None if it can."""
    if cell.backend == "docker":
        return docker_backend.unavailable_reason(config.docker)
    return None


def _make_backend(
    cell: Cell, config: Config, settings: dict[str, Any], token: str
) -> Backend:
    if cell.backend == "docker":
        return docker_backend.DockerBackend(
            config.docker,
            token=token,
            cell=cell.label(),
            iperf3=settings["iperf3"],
            limit_s=time_limit(settings, cell.pairs),
        )
    return NetnsBackend()


def _provision_and_measure(
    cell: Cell,
    config: Config,
    settings: dict[str, Any],
    driver: Driver,
    host: IPRoute,
    plan: Plan,
    rec: records.Record,
    result: dict[str, Any],
) -> None:
    timings = result["timings_s"]
    t = time.monotonic()
    backend: Backend | None = None
    try:
        backend = _make_backend(cell, config, settings, plan.token)
        for name in plan.extra_netns:
            interrupt.check()
            backend.create(name)
        backend.create_endpoints(
            [ep.netns for ep in plan.endpoints], host_network=plan.host_network
        )
        if isinstance(backend, docker_backend.DockerBackend):
            result["backend"] = backend.info
        result["driver"] = driver.provision(host, backend, plan)
        interrupt.check()
        result["driver"]["mtu"] = plan.mtu
        result["driver"]["endpoint_mtu"] = plan.endpoint_mtu
        _check_mtu(host, backend, plan)
        timings["provision"] = round(time.monotonic() - t, 4)
        log.info(
            "cell %s: provisioned %d endpoints with %s in %.3f s",
            cell.label(),
            len(plan.endpoints),
            driver.name,
            timings["provision"],
        )

        opts = IperfOptions(
            binary=getattr(backend, "iperf3", settings["iperf3"]),
            protocol=cell.protocol,
            duration_s=settings["duration_s"],
            omit_s=settings["omit_s"],
            mss=settings["mss"],
            udp_rate=settings["udp_rate"] or "",
        )
        t = time.monotonic()
        outcome, _ = run_with_retries(
            lambda: run_pairs(
                backend,
                plan,
                opts,
                base_port=settings["base_port"],
                limit_s=time_limit(settings, cell.pairs),
                on_spawn=lambda procs: _record_processes(rec, procs),
            ),
            lambda outcome: _failure(outcome),
            retries=settings["retries"],
            backoff_s=settings["retry_backoff_s"],
            log_label=cell.label(),
            attempts=result["attempts"],
        )
        timings["run"] = round(time.monotonic() - t, 4)
        result["pairs"] = outcome.pairs
        result["status"] = outcome.status
        result["reason"] = outcome.reason
        result["error_class"] = outcome.error_class
        log.info(
            "cell %s: ran %d iperf3 pairs in %.1f s, start spread %.4f s",
            cell.label(),
            cell.pairs,
            timings["run"],
            outcome.start_spread,
        )
    finally:
        # Teardown runs to the end whatever arrives meanwhile: signals only
        # set the interrupt flag while a cell runs.
        t = time.monotonic()
        left = _teardown(driver, host, backend, plan)
        left |= set(getattr(backend, "left", []))
        if left:
            log.error(
                "cell %s: links or containers still present after teardown: %s; "
                "their record is kept for the next cell or `netpipe cleanup`",
                cell.label(),
                sorted(left),
            )
        else:
            rec.discard()
        timings["teardown"] = round(time.monotonic() - t, 4)
        log.info("cell %s: torn down in %.3f s", cell.label(), timings["teardown"])


def _record_processes(rec: records.Record, procs: list[Proc]) -> None:
    mine = [p for p in procs if p.recordable]
    if mine:
        rec.processes += [(p.pid, proc_start_time(p.pid)) for p in mine]
        rec.save()


def _check_mtu(host: IPRoute, backend: Backend, plan: Plan) -> None:
    """Fail the cell if any device on the path did not take the MTU."""
    wrong = []
    for ep in plan.endpoints:
        got = link_mtu(backend.sockets[ep.netns], ep.ifname)
        if got != plan.endpoint_mtu:
            wrong.append(
                f"{ep.ifname} in {ep.netns} has {got}, not {plan.endpoint_mtu}"
            )
    names = plan.host_links + ([plan.parent] if plan.parent else [])
    for ifname, got in host_link_mtus(host, names).items():
        if got != plan.mtu:
            wrong.append(f"{ifname} has {got}, not {plan.mtu}")
    if wrong:
        raise ProvisionError(
            f"the MTU did not take on every device: {'; '.join(wrong[:5])}."
        )


def _teardown(
    driver: Driver, host: IPRoute, backend: Backend | None, plan: Plan
) -> set[str]:
    """Remove endpoints and namespaces, then host links; return any link left."""
    names = [ep.netns for ep in plan.endpoints] + plan.extra_netns
    if backend is not None:
        backend.remove_all(names)
        backend.close()
    else:
        # The backend could not start (no engine, no image): nothing of the
        # endpoints exists; a probe's namespaces may.
        for name in names:
            remove_netns(name)
    driver.teardown(host, plan)

    # Removing a namespace frees its devices asynchronously; the veth ends on
    # the host side vanish a little later. Wait, so the next cell starts clean.
    left = _wait_gone(host, set(plan.host_links), 3)
    # A socket with unsent data (a blackholed TCP stream) keeps its namespace,
    # and the veth end in it, alive for minutes: delete the host end, which
    # takes its peer along.
    for name in sorted(left):
        with contextlib.suppress(NetlinkError):
            host.link("del", ifname=name)
    return _wait_gone(host, left, 12)


def _wait_gone(host: IPRoute, names: set[str], wait_s: float) -> set[str]:
    """Wait up to ``wait_s`` for links to vanish; return those still present."""
    deadline = time.monotonic() + wait_s
    while names and time.monotonic() < deadline:
        names = {n for n, mtu in host_link_mtus(host, sorted(names)).items() if mtu}
        if names:
            time.sleep(0.02)
    return names


def _failure(outcome: Outcome) -> Failure | None:
    if outcome.status == "ok":
        return None
    return Failure(outcome.error_class or "iperf3-error", outcome.reason or "")


def _error_class(exc: NetpipeError) -> str:
    known = getattr(exc, "error_class", None)
    if isinstance(known, str):
        return known
    return {
        "ProvisionError": "provision",
        "MeasurementError": "iperf3",
        "DriverUnavailable": "driver",
        "ConfigError": "config",
        "NodeError": "node",
    }.get(type(exc).__name__, "error")


def write_result(result: dict[str, Any], output: Path) -> None:
    """Write a result file atomically: a temporary file, then a rename."""
    text = json.dumps(result, indent=1)
    try:
        write_atomic(output, lambda tmp: tmp.write_text(text))
    except OSError as exc:
        raise MeasurementError(
            f"cannot write the result file {output}: {exc.strerror}; the cell's "
            "measurement is lost. Check that the results folder is writable and "
            "has free space, then run the same command again."
        ) from exc
