"""Shared fixtures: root detection, and a check that no test leaves anything."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netpipe.backends.netns import list_netns

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0
HAVE_IPERF3 = shutil.which("iperf3") is not None
DEFAULT_STATE = "/run/netpipe"
# Tests keep their state folders here, so that concurrent test sessions on one
# machine can tell each other's namespaces from their own leaks.
TEST_STATE = Path("/run/netpipe-tests")

needs_root = pytest.mark.skipif(
    not (IS_ROOT and HAVE_IPERF3), reason="needs root and iperf3"
)


def docker_client() -> Any:
    """A client of the engine DOCKER_HOST names, or None if none answers."""
    from netpipe.backends.docker import connect
    from netpipe.config import DockerSettings
    from netpipe.errors import ProvisionError

    try:
        return connect(DockerSettings(), timeout=5)
    except ProvisionError:
        return None


_ENGINE = docker_client() if IS_ROOT else None
HAVE_DOCKER = _ENGINE is not None
# tests/with-dockerd sets this: there, a missing engine is a failure.
REQUIRE_DOCKER = os.environ.get("NETPIPE_REQUIRE_DOCKER") == "1"
needs_docker = pytest.mark.skipif(
    not (HAVE_DOCKER or REQUIRE_DOCKER),
    reason="needs a Docker engine (run the tests through tests/with-dockerd)",
)


def np_containers() -> set[str]:
    """Names of the engine's containers that carry netpipe's label."""
    if _ENGINE is None:
        return set()
    from netpipe.backends.docker import labelled_containers

    return {c.name for c in labelled_containers(_ENGINE)}


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
    others = [Path(DEFAULT_STATE)] + [
        d for d in TEST_STATE.glob("*") if not d.name.startswith(f"{os.getpid()}-")
    ]
    for path in (p for d in others for p in d.glob("records/*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        names.update(
            rec.get("netns", []), rec.get("links", []), rec.get("containers", [])
        )
    # A record names a veth uplink by its first end (np<token>u0); the peer
    # (u1) is made and removed with it, so it is as foreign as its twin.
    names |= {n[:-1] + "1" for n in names if n.endswith("u0")}
    return names


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves an np* namespace, link, container or process."""
    before = (np_namespaces(), np_links(), child_pids(), np_containers())
    yield
    after = (np_namespaces(), np_links(), child_pids(), np_containers())
    foreign = foreign_names()
    leaks = {
        "namespaces": sorted(after[0] - before[0] - foreign),
        "links": sorted(after[1] - before[1] - foreign),
        "processes": sorted(after[2] - before[2]),
        "containers": sorted(after[3] - before[3] - foreign),
    }
    leaks = {k: v for k, v in leaks.items() if v}
    assert not leaks, f"{request.node.name} left behind: {leaks}"


def new_state_dir() -> Path:
    """A private state folder, where other test sessions can see its records."""
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=ensure(TEST_STATE)))


def ensure(path: Path) -> Path:
    """Create ``path`` if needed and return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def state_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private folder for leftover records and the testbed lock."""
    path = new_state_dir()
    monkeypatch.setenv("NETPIPE_STATE_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def remove_state_dirs() -> Iterator[None]:
    """Remove this session's state folders when the tests end."""
    yield
    for path in TEST_STATE.glob(f"{os.getpid()}-*"):
        shutil.rmtree(path, ignore_errors=True)
