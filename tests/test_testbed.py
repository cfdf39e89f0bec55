"""The emulated testbed: nodes reachable over SSH, and nothing left after down."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fabric import Connection
from paramiko import RejectPolicy
from pyroute2 import IPRoute

from netpipe import testbed, testbed_sshd
from netpipe.errors import ConfigError, NodeError
from tests.conftest import needs_root, new_state_dir, np_links, np_namespaces

pytestmark = [
    pytest.mark.root,
    needs_root,
    pytest.mark.skipif(
        shutil.which("sshd", path="/usr/sbin") is None, reason="no sshd"
    ),
]


def _sshd_pids() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(entry, "exe").resolve().name == "sshd":
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _connect(node: dict) -> Connection:
    ssh = node["ssh"]
    conn = Connection(
        ssh["host"],
        user=ssh["user"],
        port=ssh["port"],
        connect_kwargs={
            "key_filename": ssh["key_file"],
            "look_for_keys": False,
            "allow_agent": False,
        },
    )
    conn.client.set_missing_host_key_policy(RejectPolicy())
    conn.client.load_host_keys(ssh["known_hosts"])
    return conn


def test_testbed_nodes_answer_over_ssh_in_their_namespace_and_down_leaves_nothing():
    folder = new_state_dir() / "testbed"
    sshds = _sshd_pids()
    inventory = testbed.up(2, rate="10gbit", folder=folder)
    try:
        nodes = yaml.safe_load(inventory.read_text())["nodes"]
        assert [n["name"] for n in nodes] == ["node1", "node2"]
        assert {"nptb1", "nptb2"} <= np_namespaces()
        assert {"nptbsw", "nptbmg", "nptb1d", "nptb2d"} <= np_links()
        qdisc = subprocess.run(
            ["tc", "qdisc", "show", "dev", "nptb1d"], capture_output=True, text=True
        ).stdout
        assert "tbf" in qdisc and "10Gbit" in qdisc

        for node in nodes:
            with _connect(node) as conn:
                out = conn.run(
                    "ip -o -4 addr show; echo $NETPIPE_STATE_DIR",
                    hide=True,
                    in_stream=False,
                )
            # The session runs inside the node: its NICs, not the host's.
            assert node["ssh"]["host"] in out.stdout
            assert node["data_addresses"][0] in out.stdout
            assert "eth0" not in out.stdout
            assert out.stdout.strip().endswith(f"{node['name']}/state")
        # Each sshd listens on its management address only.
        with IPRoute() as host:
            assert not any(
                a.get("local") == nodes[0]["ssh"]["host"] for a in host.get_addr()
            )
    finally:
        removed = testbed.down(folder)

    assert sorted(removed["netns"]) == ["nptb1", "nptb2"]
    assert not {n for n in np_namespaces() if n.startswith("nptb")}
    assert not {n for n in np_links() if n.startswith("nptb")}
    assert _sshd_pids() <= sshds
    assert not folder.exists() and not inventory.exists()


def test_an_unknown_host_key_is_refused():
    folder = new_state_dir() / "testbed"
    inventory = testbed.up(2, folder=folder)
    try:
        node = yaml.safe_load(inventory.read_text())["nodes"][0]
        Path(node["ssh"]["known_hosts"]).write_text("")
        with pytest.raises(Exception, match="not found in known_hosts"):
            _connect(node).run("true", hide=True, in_stream=False)
    finally:
        testbed.down(folder)


def test_a_failed_up_removes_what_it_made(monkeypatch: pytest.MonkeyPatch):
    folder = new_state_dir() / "testbed"

    def broken(*args: object) -> str:
        raise NodeError("sshd refused to start")

    monkeypatch.setattr(testbed_sshd, "start_sshd", broken)
    with pytest.raises(NodeError, match="refused"):
        testbed.up(2, folder=folder)
    assert not {n for n in np_namespaces() if n.startswith("nptb")}
    assert not {n for n in np_links() if n.startswith("nptb")}
    assert not folder.exists()


def test_a_second_up_is_refused_while_one_is_up():
    folder = new_state_dir() / "testbed"
    testbed.up(2, folder=folder)
    try:
        with pytest.raises(NodeError, match="already up"):
            testbed.up(2, folder=folder)
    finally:
        testbed.down(folder)


def test_a_second_testbed_elsewhere_is_refused_and_leaves_the_first_alone():
    folder = new_state_dir() / "testbed"
    other = new_state_dir() / "testbed"
    testbed.up(2, folder=folder)
    try:
        sshds = _sshd_pids()
        with pytest.raises(NodeError, match="already exist") as caught:
            testbed.up(2, folder=other)
        assert "nptb1" in str(caught.value) and "Nothing was made" in str(caught.value)
        assert not other.exists()
        # The first testbed is whole: its nodes still answer over SSH.
        assert _sshd_pids() >= sshds
        assert {"nptb1", "nptb2"} <= np_namespaces()
        assert {"nptbsw", "nptbmg"} <= np_links()
    finally:
        testbed.down(folder)


@pytest.mark.parametrize("rate", ["fast", "0gbit", "100gbit"])
def test_a_bad_rate_is_refused_before_anything_is_made(rate: str):
    with pytest.raises(ConfigError, match="--rate"):
        testbed.up(2, rate=rate, folder=Path(os.devnull))


def test_down_after_an_up_that_died_half_way_removes_what_it_made(
    monkeypatch: pytest.MonkeyPatch,
):
    folder = new_state_dir() / "testbed"
    sshds = _sshd_pids()
    real_down = testbed.down

    def died(*args: object) -> None:
        raise KeyboardInterrupt("killed")

    # As if killed outright once the sshds run: no cleanup of its own.
    monkeypatch.setattr(testbed, "down", lambda folder: None)
    monkeypatch.setattr(testbed_sshd, "wait_listening", died)
    with pytest.raises(KeyboardInterrupt):
        testbed.up(2, folder=folder)
    assert {"nptb1", "nptb2"} <= np_namespaces()
    assert len(_sshd_pids() - sshds) == 2

    removed = real_down(folder)
    assert len(removed["processes"]) == 2
    assert not {n for n in np_namespaces() if n.startswith("nptb")}
    assert not {n for n in np_links() if n.startswith("nptb")}
    assert _sshd_pids() <= sshds
