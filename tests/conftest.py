"""Shared fixtures: root detection, and a check that no test leaves anything."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from netpipe.backends.netns import list_netns

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0
HAVE_IPERF3 = shutil.which("iperf3") is not None
DEFAULT_STATE = "/run/netpipe"

needs_root = pytest.mark.skipif(
    not (IS_ROOT and HAVE_IPERF3), reason="needs root and iperf3"
)


def np_links() -> set[str]:
    """Names of np* links in this namespace."""
    return {p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("np")}


def np_namespaces() -> set[str]:
    """Names of np* network namespaces."""
    return {n for n in list_netns() if n.startswith("np")}


def child_pids() -> set[int]:
    """Processes whose parent is this test process (unreaped ones included)."""
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        if stat.rsplit(b")", 1)[1].split()[1].decode() == me:
            found.add(int(entry.name))
    return found


def foreign_names() -> set[str]:
    """Names that a sweep outside the tests is using right now.

    Tests keep their records in a private state folder; a user's sweep on the
    same machine records what it makes under the default one, before making
    it, so those names are not the tests' leaks.
    """
    names: set[str] = set()
    for path in Path(DEFAULT_STATE, "records").glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        names.update(rec.get("netns", []), rec.get("links", []))
    return names


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves an np* namespace, link or child process."""
    before = (np_namespaces(), np_links(), child_pids())
    yield
    after = (np_namespaces(), np_links(), child_pids())
    foreign = foreign_names()
    leaks = {
        "namespaces": sorted(after[0] - before[0] - foreign),
        "links": sorted(after[1] - before[1] - foreign),
        "processes": sorted(after[2] - before[2]),
    }
    leaks = {k: v for k, v in leaks.items() if v}
    assert not leaks, f"{request.node.name} left behind: {leaks}"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private folder for leftover records and the testbed lock."""
    path = tmp_path / "state"
    monkeypatch.setenv("NETPIPE_STATE_DIR", str(path))
    return path
