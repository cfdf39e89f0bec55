"""Fault injection: kill a real sweep with SIGKILL at random moments, resume it.

A temporary project (the repository's Snakefile, workflow/ and profiles/ with a
small config) runs the README's command, ``snakemake --cores 1
results/report.html``. Each trial waits until the sweep is in the phase it
aims at (provisioning, iperf3 running, teardown, aggregating, writing the
report; read from the per-job logs in logs/ and Snakemake's own output), waits
a seeded random moment more, and kills the whole process group with SIGKILL.
It then resumes with the same command and runs the README's one extra step,
``netpipe cleanup``, and checks:

- every file under results/raw parses and has a status (no corrupt file);
- every cell file present at the kill is unchanged (not measured again);
- nothing of the run remains: no np namespace, link, nftables table or tc
  qdisc with one of the run's tokens, no process of the run (iperf3 included,
  found by an environment marker every process of the run inherits), and no
  container labelled by netpipe if docker is installed.

Run as root from the repository root, with netpipe installed::

    python3 benchmarks/fault_injection.py --kills 20 --seed 1

It prints a table (trials, kills per phase, leaks, corrupt files, cells
measured again) and writes the figures as JSON (``--output``). Exit status 1
if any check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyroute2 import IPRoute

from netpipe.backends.netns import list_netns

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PHASES = ("provisioning", "iperf3", "teardown", "aggregating", "report")
# Longest random wait once a phase is seen, so the kill lands inside it.
MAX_DELAY_S = {
    "provisioning": 0.01,
    "iperf3": 0.8,
    # A veth-bridge teardown takes a few milliseconds: kill as soon as it starts.
    "teardown": 0.0,
    "aggregating": 1.0,
    "report": 1.0,
}
MARKER = "NETPIPE_FAULT_RUN"
STATE_ROOT = Path("/run/netpipe-tests")  # where test sessions look for records
_TOKEN = re.compile(r"^np([0-9a-f]{4})")


def default_config(
    drivers: list[str], protocols: list[str], pairs: list[int]
) -> dict[str, Any]:
    """A sweep of a few quick cells: every phase, several times over."""
    return {
        "matrix": [
            {
                "topology": ["local"],
                "driver": drivers,
                "protocol": protocols,
                "mtu": [1500],
                "pairs": pairs,
            }
        ],
        "repetitions": 1,
        "iperf": {"duration_s": 1, "omit_s": 0, "udp_rate": "200M", "retries": 0},
    }


@dataclass
class Tally:
    """What the trials found."""

    trials: int = 0
    kills: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    missed: int = 0
    leaks: list[str] = field(default_factory=list)
    left_for_cleanup: int = 0
    corrupt: list[str] = field(default_factory=list)
    stray_temp_files: int = 0
    remeasured: list[str] = field(default_factory=list)
    failed_resumes: list[str] = field(default_factory=list)
    cell_statuses: dict[str, int] = field(default_factory=dict)
    tokens_watched: int = 0


class Project:
    """A temporary copy of the workflow, its state folder and its run marker."""

    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.root = root
        shutil.copy(REPO / "Snakefile", root / "Snakefile")
        shutil.copytree(REPO / "workflow", root / "workflow")
        shutil.copytree(REPO / "profiles", root / "profiles")
        (root / "config").mkdir()
        (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        self.state = Path(tempfile.mkdtemp(prefix="fault-", dir=STATE_ROOT))
        self.marker = uuid.uuid4().hex
        self.env = {
            **os.environ,
            "NETPIPE_STATE_DIR": str(self.state),
            MARKER: self.marker,
            "PYTHONUNBUFFERED": "1",  # Snakemake's output is read while it runs
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.tokens: set[str] = set()

    def start(self, out: Path) -> subprocess.Popen[bytes]:
        """Start the README's command in its own process group."""
        with out.open("wb") as f:
            return subprocess.Popen(
                [str(BIN / "snakemake"), "--cores", "1", "results/report.html"],
                cwd=self.root,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def watch_tokens(self) -> None:
        """Remember every token the run's records name, before things exist."""
        for path in (self.state / "records").glob("*.json"):
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            self.tokens.add(rec.get("token", ""))
            for name in rec.get("netns", []) + rec.get("links", []):
                if m := _TOKEN.match(name):
                    self.tokens.add(m.group(1))

    def cells(self) -> list[Path]:
        return sorted((self.root / "results" / "raw").rglob("*.json"))


def phase_of(project: Project, snake_out: Path) -> str | None:
    """The phase the sweep is in now, from Snakemake's output and the job logs."""
    try:
        text = snake_out.read_text(errors="replace")
    except OSError:
        return None
    rules = re.findall(r"^(?:local)?rule (\w+):", text, re.M)
    if not rules:
        return None
    if rules[-1] == "aggregate":
        return "aggregating"
    if rules[-1] == "report":
        return "report"
    if rules[-1] != "measure":
        return None
    logs = list((project.root / "logs" / "measure").rglob("*.log"))
    if not logs:
        return None
    newest = max(logs, key=lambda p: p.stat().st_mtime_ns)
    lines = newest.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if re.search(r": (ok|failed|skipped) in ", line) or "skipped:" in line:
            return None
        if "torn down" in line:
            return None
        if "ran " in line and "iperf3 pairs" in line:
            return "teardown"
        if "provisioned" in line:
            return "iperf3"
        if re.search(r"cell \S+: start$", line):
            return "provisioning"
    return None


def snapshot(project: Project) -> dict[str, tuple[int, str]]:
    """Every cell file with its modification time and content hash."""
    found = {}
    for path in project.cells():
        try:
            data = path.read_bytes()
            found[str(path.relative_to(project.root))] = (
                path.stat().st_mtime_ns,
                hashlib.sha256(data).hexdigest(),
            )
        except OSError:
            continue
    return found


def prepare(project: Project, target: str, rng: random.Random, total: int) -> None:
    """Leave the sweep work of the kind the trial aims at."""
    cells = project.cells()
    if target in ("provisioning", "iperf3", "teardown"):
        missing = total - len(cells)
        if missing < 2 and cells:
            for path in rng.sample(cells, min(3, len(cells))):
                path.unlink()
    elif len(cells) == total:
        # Only the aggregate and the report are left to make again. All three
        # go: Snakemake does not remake a missing file whose downstream exists.
        for name in ("cells.parquet", "summary.csv", "report.html"):
            (project.root / "results" / name).unlink(missing_ok=True)


def run_to_end(project: Project, out: Path, timeout: float = 900) -> int:
    """Run the README's command to the end, watching the tokens it uses."""
    proc = project.start(out)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        project.watch_tokens()
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -1
        time.sleep(0.02)
    return proc.returncode


def trial(
    project: Project, target: str, rng: random.Random, total: int, tally: Tally
) -> None:
    """One kill and one resume, with every check."""
    tally.trials += 1
    prepare(project, target, rng, total)
    out = project.root / f"trial-{tally.trials}.out"
    proc = project.start(out)

    killed_in = None
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        project.watch_tokens()
        if phase_of(project, out) == target:
            time.sleep(rng.uniform(0, MAX_DELAY_S[target]))
            # The phase is read again, so a kill that came too late for its
            # target is counted where it landed.
            killed_in = phase_of(project, out) or "between phases"
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.003)
    proc.wait()
    if killed_in is None:
        tally.missed += 1
    else:
        tally.kills[killed_in] = tally.kills.get(killed_in, 0) + 1
    project.watch_tokens()
    before = snapshot(project)

    resume = project.root / f"trial-{tally.trials}-resume.out"
    code = run_to_end(project, resume)
    if code != 0:
        tally.failed_resumes.append(f"trial {tally.trials}: exit {code}")
    check_cells(project, before, tally)

    tally.left_for_cleanup += len(leftovers(project))
    done = subprocess.run(
        [str(BIN / "netpipe"), "cleanup"],
        env=project.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        tally.failed_resumes.append(f"trial {tally.trials}: cleanup {done.stderr}")
    tally.leaks += [f"trial {tally.trials}: {what}" for what in leftovers(project)]
    print(
        f"trial {tally.trials:2d}: aimed at {target:12s} killed in "
        f"{killed_in or '(missed)':12s} resume exit {code}, "
        f"{len(project.cells())} cells",
        flush=True,
    )


def check_cells(project: Project, before: dict[str, Any], tally: Tally) -> None:
    """No corrupt or partial cell file; no cell measured again."""
    raw = project.root / "results" / "raw"
    tally.stray_temp_files = max(tally.stray_temp_files, len(list(raw.rglob("*.tmp"))))
    for path in project.cells():
        try:
            status = json.loads(path.read_text())["status"]
            if status not in ("ok", "failed", "skipped"):
                raise ValueError(status)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            tally.corrupt.append(f"{path.relative_to(project.root)}: {exc}")
    now = snapshot(project)
    for name, seen in before.items():
        if now.get(name) != seen:
            tally.remeasured.append(name)


def leftovers(project: Project) -> list[str]:
    """Whatever of this run still exists on the machine."""
    ours = tuple(f"np{t}" for t in project.tokens if t)
    found = (
        [f"namespace {n}" for n in list_netns() if n.startswith(ours)] if ours else []
    )
    with IPRoute() as ip:
        links = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        found += [f"link {n}" for n in links.values() if ours and n.startswith(ours)]
        for qdisc in ip.get_qdiscs():
            name = links.get(qdisc["index"], "")
            if ours and name.startswith(ours):
                found.append(f"tc qdisc on {name}")
    nft = shutil.which("nft")
    if nft:
        tables = subprocess.run(
            [nft, "list", "tables"], capture_output=True, text=True, timeout=30
        ).stdout
        found += [
            f"nft {line}"
            for line in tables.splitlines()
            if ours and line.split()[-1].startswith(ours)
        ]
    found += [f"process {pid}" for pid in marked_processes(project.marker)]
    found += labelled_containers()
    return found


def marked_processes(marker: str) -> list[int]:
    """Live processes that inherited this run's environment marker."""
    needle = f"{MARKER}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != b"Z":
            pids.append(int(entry.name))
    return pids


def labelled_containers() -> list[str]:
    """Containers carrying a netpipe label, if docker is installed and running."""
    docker = shutil.which("docker")
    if docker is None:
        return []
    try:
        done = subprocess.run(
            [docker, "ps", "-a", "--format", "{{.ID}} {{.Labels}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [
        f"container {line.split()[0]}"
        for line in done.stdout.splitlines()
        if "netpipe" in line.partition(" ")[2]
    ]


def run(args: argparse.Namespace) -> Tally:
    """Run every trial in a fresh project; return what they found."""
    rng = random.Random(args.seed)  # noqa: S311  (reproducible, not secret)
    config = default_config(args.drivers, args.protocols, args.pairs)
    total = len(args.drivers) * len(args.protocols) * len(args.pairs)
    targets = [args.phases[i % len(args.phases)] for i in range(args.kills)]
    rng.shuffle(targets)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="netpipe-fault-") as tmp:
        project = Project(Path(tmp), config)
        try:
            print(f"first sweep in {tmp} ({total} cells)", flush=True)
            code = run_to_end(project, project.root / "first.out")
            if code != 0:
                tally.failed_resumes.append(f"first sweep: exit {code}")
            for target in targets:
                trial(project, target, rng, total, tally)
            tally.tokens_watched = len(project.tokens)
            for path in project.cells():
                status = json.loads(path.read_text())["status"]
                tally.cell_statuses[status] = tally.cell_statuses.get(status, 0) + 1
            if args.keep:
                shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
        finally:
            shutil.rmtree(project.state, ignore_errors=True)
    return tally


def summary(tally: Tally) -> str:
    """The table a user reads at the end."""
    rows = [
        ("trials", tally.trials),
        *((f"kills while {p}", n) for p, n in tally.kills.items()),
        ("kills that missed their phase", tally.missed),
        ("leftovers found before cleanup", tally.left_for_cleanup),
        ("leaks after cleanup", len(tally.leaks)),
        ("corrupt or partial cell files", len(tally.corrupt)),
        ("stray temporary files", tally.stray_temp_files),
        ("cells measured again", len(tally.remeasured)),
        ("failed resumes", len(tally.failed_resumes)),
        ("final cells by status", json.dumps(tally.cell_statuses, sort_keys=True)),
        ("cell runs whose names were watched", tally.tokens_watched),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the trials, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="trials (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument(
        "--drivers",
        nargs="+",
        default=["veth-bridge", "veth-nat", "macvlan-bridge"],
        help="drivers of the sweep (default: veth-bridge veth-nat macvlan-bridge)",
    )
    parser.add_argument(
        "--protocols", nargs="+", default=["tcp", "udp"], help="default: tcp udp"
    )
    parser.add_argument(
        "--pairs", nargs="+", type=int, default=[1, 2], help="default: 1 2"
    )
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=PHASES,
        default=list(PHASES),
        help="phases to aim kills at, in turn (default: all)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("results/benchmarks/fault_injection.json"),
        help="where the figures go as JSON",
    )
    parser.add_argument("--keep", type=Path, help="copy the project here at the end")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("the sweep creates network namespaces: run it as root.")

    tally = run(args)
    print(summary(tally))
    for problem in tally.leaks + tally.corrupt + tally.failed_resumes:
        print(f"  {problem}")
    for name in tally.remeasured:
        print(f"  measured again: {name}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(tally.__dict__, indent=1))
    bad = tally.leaks or tally.corrupt or tally.remeasured or tally.failed_resumes
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
