"""Provisioning plus teardown time: netpipe against ``ip -batch``.

For every driver this machine can run and every pair count, this times what a
netpipe cell does between writing its leftover record and finishing its
teardown with every link gone (namespace creation, driver provisioning, MTU
check, teardown and the wait for links to disappear; no iperf3), through
netpipe's own functions, and the same set-up done with iproute2 batch files
(see ``iproute.py``). The two alternate, run by run, and each figure is a
median. Then one more netpipe run per driver at the largest pair count is
split into phases, with the netlink requests each phase sent.

Run as root from the repository: ``python3 benchmarks/provision.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import iproute
import phases
from common import (
    BenchmarkError,
    busy_note,
    leftovers,
    machine,
    preflight,
    recorded,
    run_main,
    setup_logging,
    summary,
    testbed,
    verdict,
    write_json,
)
from pyroute2 import IPRoute

from netpipe import interrupt, records, runner
from netpipe.backends.netns import NetnsBackend
from netpipe.config import Config, validate
from netpipe.drivers import Driver, Plan, get_driver
from netpipe.matrix import Cell
from netpipe.naming import new_token
from netpipe.runner import make_plan

log = logging.getLogger("provision")

TARGET_S = 1.5  # 128 pairs provisioned and torn down
TARGET_PAIRS = 128
TARGET_RATIO = 1.0  # netpipe no slower than ip -batch


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write the JSON."""
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    preflight(["ip"])

    config = validate(
        {
            "matrix": [
                {
                    "driver": ["veth-bridge"],
                    "protocol": ["tcp"],
                    "mtu": [args.mtu],
                    "pairs": [max(args.pairs)],
                }
            ]
        }
    )
    result: dict[str, Any] = {
        "benchmark": "provision",
        "machine": machine(),
        "settings": {
            "pairs": args.pairs,
            "repetitions": args.reps,
            "mtu": args.mtu,
            "ip_jobs": args.ip_jobs,
            "address_pool": str(config.network.address_pool),
        },
        "drivers": {},
        "profile": {},
        "targets": [],
    }
    t_start = time.monotonic()

    with interrupt.deferred():
        for name in args.drivers:
            result["drivers"][name] = _bench_driver(name, config, args)
        if not args.no_profile:
            for name, entry in result["drivers"].items():
                if entry["status"] == "ok":
                    result["profile"][name] = _profile(
                        name, config, max(args.pairs), args.ip_jobs
                    )

    result["table"] = _table(result["drivers"])
    result["targets"] = _targets(result["drivers"])
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    _print(result)
    result["note"] = busy_note()
    if result["note"]:
        print(f"\nnote: {result['note']}")
    path = write_json(result, args.output)
    print(f"\nwritten: {path}  ({result['wall_s']} s)")
    failed = any(not t["pass"] for t in result["targets"])
    return 1 if args.check and failed else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--output",
        default="results/benchmarks/provision.json",
        help="where to write the JSON (default: %(default)s)",
    )
    p.add_argument("--pairs", type=int, nargs="+", default=[1, 16, 128])
    p.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument(
        "--drivers",
        nargs="+",
        default=sorted(iproute.YARDSTICK_DRIVERS),
        choices=sorted(iproute.YARDSTICK_DRIVERS),
    )
    p.add_argument(
        "--ip-jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="ip -n NS -batch processes run at a time (default: one per CPU)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the phase split")
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _bench_driver(name: str, config: Config, args: argparse.Namespace) -> dict:
    """Time one driver at every pair count, netpipe and ip -batch alternating."""
    reason = _unavailable(name, config)
    if reason is not None:
        log.info("%s: skipped: %s", name, reason)
        return {"status": "skipped", "reason": reason}

    entry: dict[str, Any] = {"status": "ok", "pairs": {}}
    # One untimed round first: the first namespaces and links of a process
    # pay for imports, caches and module loading that no later cell pays.
    _netpipe_once(name, config, 1)
    _ip_batch_once(name, config, 1, args.ip_jobs)
    for pairs in args.pairs:
        np_times, ip_times = [], []
        for _ in range(args.reps):
            np_times.append(_netpipe_once(name, config, pairs))
            ip_times.append(_ip_batch_once(name, config, pairs, args.ip_jobs))
        row = {"netpipe_s": summary(np_times), "ip_batch_s": summary(ip_times)}
        row["ratio"] = round(
            row["netpipe_s"]["median"] / row["ip_batch_s"]["median"], 3
        )
        entry["pairs"][str(pairs)] = row
        log.info(
            "%s, %d pairs: netpipe %.3f s, ip -batch %.3f s, ratio %.2f",
            name,
            pairs,
            row["netpipe_s"]["median"],
            row["ip_batch_s"]["median"],
            row["ratio"],
        )
    return entry


def _unavailable(name: str, config: Config) -> str | None:
    """Ask the driver, as a cell would, whether this machine can run it."""
    token = new_token()
    scratch = f"np{token}pr"
    rec = records.Record(token=token, cell=f"benchmark probe {name}", netns=[scratch])
    with testbed(f"probe {name}"), recorded(rec), IPRoute() as host:
        return get_driver(name).unavailable_reason(host, config.network.parent, scratch)


def _new_plan(name: str, config: Config, pairs: int) -> tuple[Driver, Plan]:
    driver = get_driver(name)
    cell = Cell("local", name, "tcp", config.matrix[0]["mtu"][0], pairs, 1)
    plan = make_plan(cell, config, new_token())
    driver.plan(plan)
    return driver, plan


def _record(plan: Plan, what: str) -> records.Record:
    return records.Record(
        token=plan.token,
        cell=f"benchmark {what} {len(plan.endpoints) // 2} pairs",
        netns=[ep.netns for ep in plan.endpoints],
        links=list(plan.host_links),
    )


def _netpipe_once(name: str, config: Config, pairs: int) -> float:
    """Time one cell's provisioning and teardown as netpipe's runner does it."""
    driver, plan = _new_plan(name, config, pairs)
    rec = _record(plan, f"netpipe {name}")
    with testbed(f"netpipe {name}"), recorded(rec), IPRoute() as host:
        elapsed = netpipe_cell(driver, host, plan, rec)
        _no_leftovers(rec)
    return elapsed


def netpipe_cell(
    driver: Driver, host: IPRoute, plan: Plan, rec: records.Record
) -> float:
    """Run what ``runner._provision_and_measure`` runs, less iperf3; time it."""
    # Looked up on the module at each call, so that phases.Recorder sees them.
    t0 = time.perf_counter()
    backend = NetnsBackend()
    try:
        for ep in plan.endpoints:
            backend.create(ep.netns)
        driver.provision(host, backend, plan)
        runner._check_mtu(host, backend, plan)
    finally:
        # Signals only set netpipe's interrupt flag: teardown runs to the end.
        runner._teardown(driver, host, backend, plan)
        rec.discard()
    return time.perf_counter() - t0


def _ip_batch_once(name: str, config: Config, pairs: int, jobs: int) -> float:
    """Time the same plan provisioned and torn down by ip -batch files."""
    _, plan = _new_plan(name, config, pairs)
    rec = _record(plan, f"ip-batch {name}")
    with tempfile.TemporaryDirectory(prefix="np-bench-") as folder:
        files = iproute.write_batches(plan, name, Path(folder))
        with testbed(f"ip-batch {name}"), recorded(rec):
            elapsed = iproute.provision_and_teardown(files, jobs)
            _no_leftovers(rec)
    return elapsed


def _no_leftovers(rec: records.Record) -> None:
    """Fail the run if anything it made survived its teardown."""
    left = leftovers(rec)
    if left:
        rec.save()  # so that recorded() removes them on the way out
        raise BenchmarkError(f"teardown left {len(left)} behind: {left[:5]}")


def _profile(name: str, config: Config, pairs: int, jobs: int) -> dict[str, Any]:
    """Split one more run of each kind into phases; netpipe's with its requests."""
    driver, plan = _new_plan(name, config, pairs)
    rec = _record(plan, f"profile {name}")
    with testbed(f"profile {name}"), recorded(rec), IPRoute() as host:
        with phases.Recorder(driver) as recorder:
            total = netpipe_cell(driver, host, plan, rec)
        _no_leftovers(rec)
    split = recorder.report(total)
    log.info("%s, %d pairs, netpipe phases: %s", name, pairs, split["phases_s"])

    _, plan = _new_plan(name, config, pairs)
    rec = _record(plan, f"profile ip-batch {name}")
    with tempfile.TemporaryDirectory(prefix="np-bench-") as folder:
        files = iproute.write_batches(plan, name, Path(folder))
        with testbed(f"profile ip-batch {name}"), recorded(rec):
            ip_total = iproute.provision_and_teardown(files, jobs)
            _no_leftovers(rec)
    return {
        "pairs": pairs,
        "netpipe": split,
        "ip_batch": {
            "total_s": round(ip_total, 4),
            "phases_s": {k: round(v, 4) for k, v in files.timings.items()},
        },
    }


def _table(drivers: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the printed table as rows: one per driver and pair count."""
    rows: list[dict[str, Any]] = []
    for name, entry in drivers.items():
        if entry["status"] != "ok":
            rows.append(
                {"driver": name, "status": "skipped", "reason": entry["reason"]}
            )
            continue
        for pairs, row in entry["pairs"].items():
            rows.append(
                {
                    "driver": name,
                    "status": "ok",
                    "pairs": int(pairs),
                    "netpipe_median_s": row["netpipe_s"]["median"],
                    "ip_batch_median_s": row["ip_batch_s"]["median"],
                    "ratio": row["ratio"],
                }
            )
    return rows


def _targets(drivers: dict[str, Any]) -> list[dict[str, Any]]:
    """Check every measured driver against the two targets."""
    checks = []
    for name, entry in drivers.items():
        if entry["status"] != "ok":
            continue
        row = entry["pairs"].get(str(TARGET_PAIRS))
        if row is not None:
            t = row["netpipe_s"]["median"]
            checks.append(
                {
                    "target": f"{name}: {TARGET_PAIRS} pairs in <= {TARGET_S} s",
                    "value": t,
                    "pass": t <= TARGET_S,
                }
            )
        for pairs, row in entry["pairs"].items():
            checks.append(
                {
                    "target": f"{name}: {pairs} pairs, netpipe/ip-batch <= "
                    f"{TARGET_RATIO}",
                    "value": row["ratio"],
                    "pass": row["ratio"] <= TARGET_RATIO,
                }
            )
    return checks


def _print(result: dict[str, Any]) -> None:
    """Print the table, the skipped drivers, the phases and the targets."""
    reps = result["settings"]["repetitions"]
    print(f"\nprovision + teardown, median of {reps} (min-max), seconds")
    head = f"{'driver':<16}{'pairs':>6}  {'netpipe':<22}{'ip -batch':<22}{'ratio':>6}"
    print(head)
    print("-" * len(head))
    for name, entry in result["drivers"].items():
        if entry["status"] != "ok":
            print(f"{name:<16}{'':>6}  skipped: {entry['reason']}")
            continue
        for pairs, row in entry["pairs"].items():
            print(
                f"{name:<16}{pairs:>6}  {_cell(row['netpipe_s']):<22}"
                f"{_cell(row['ip_batch_s']):<22}{row['ratio']:>6.2f}"
            )

    for name, prof in result["profile"].items():
        print(f"\nwhere the time goes, {name}, {prof['pairs']} pairs, one run each:")
        split = prof["netpipe"]
        for phase, secs in split["phases_s"].items():
            calls = split["requests"].get(phase, {})
            what = ", ".join(f"{n} {c}" for c, n in sorted(calls.items()))
            print(f"  netpipe   {phase:<34}{secs:>7.3f} s  {what}")
        print(f"  netpipe   {'total':<34}{split['total_s']:>7.3f} s")
        for phase, secs in prof["ip_batch"]["phases_s"].items():
            print(f"  ip -batch {phase:<34}{secs:>7.3f} s")
        print(f"  ip -batch {'total':<34}{prof['ip_batch']['total_s']:>7.3f} s")

    print("\ntargets")
    for t in result["targets"]:
        print(f"  {verdict(t['pass'])}  {t['target']}: {t['value']}")


def _cell(s: dict[str, Any]) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


if __name__ == "__main__":
    run_main(main)
