"""The node inventory in a config: what is refused, and the nodes it gives."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from netpipe.config import validate
from netpipe.errors import ConfigError


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    path.write_text("not read by validation\n")
    (tmp_path / "known_hosts").write_text("")
    return path


def node(key: Path, **values: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "node1",
        "ssh": {
            "host": "198.19.0.11",
            "key_file": str(key),
            "known_hosts": str(key.parent / "known_hosts"),
        },
        "data_interface": "npdata",
        "data_addresses": ["198.19.1.11/24"],
    }
    entry.update(values)
    return entry


def config(nodes: list[dict[str, Any]], topology: str = "switched") -> dict[str, Any]:
    return {
        "matrix": [
            {
                "topology": [topology],
                "driver": ["veth-bridge"],
                "protocol": ["tcp"],
                "mtu": [1500],
                "pairs": [1],
            }
        ],
        "nodes": nodes,
    }


def two(key: Path) -> list[dict[str, Any]]:
    second = node(key, name="node2", data_addresses=["198.19.1.12/24"])
    second["ssh"] = {**second["ssh"], "host": "198.19.0.12"}
    return [node(key), second]


def test_a_valid_inventory_gives_nodes_with_defaults(key: Path):
    cfg = validate(config(two(key)))
    first = cfg.nodes[0]
    assert first.name == "node1"
    assert first.ssh.port == 22 and first.ssh.user == "root"
    assert first.ssh.host_key_check is True
    assert str(first.data_address) == "198.19.1.11/24"
    assert first.netpipe == "netpipe" and first.iperf3 == "iperf3"


def test_an_inventory_file_is_included(key: Path, tmp_path: Path):
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"nodes": two(key)}))
    data = {**config([]), "inventory": str(inv)}
    del data["nodes"]
    assert [n.name for n in validate(data).nodes] == ["node1", "node2"]


def test_a_missing_inventory_file_says_how_to_make_one(tmp_path: Path):
    data = {**config([]), "inventory": str(tmp_path / "none.yaml")}
    with pytest.raises(ConfigError, match="netpipe testbed up"):
        validate(data)


def _broken(key: Path, change: Any) -> dict[str, Any]:
    nodes = copy.deepcopy(two(key))
    change(nodes[1])
    return config(nodes)


CASES = [
    (
        lambda n: n["ssh"].update(key_file="/nonexistent/key"),
        ["nodes[1].ssh.key_file", "/nonexistent/key", "node node2", "does not exist"],
    ),
    (
        lambda n: n["ssh"].update(key_file="/tmp"),
        ["nodes[1].ssh.key_file", "'/tmp'", "is a folder"],
    ),
    (
        lambda n: n["ssh"].update(host="999.1.1.1"),
        ["nodes[1].ssh.host", "'999.1.1.1'", "not one"],
    ),
    (
        lambda n: n["ssh"].update(known_hosts="/nonexistent/kh"),
        ["nodes[1].ssh.known_hosts", "ssh-keyscan", "host_key_check: false"],
    ),
    (
        lambda n: n["ssh"].update({"password": "hunter2"}),
        ["nodes[1].ssh.password", "no passwords", "key_file"],
    ),
    (
        lambda n: n.update(name="Node 2"),
        ["nodes[1].name", "'Node 2'", "lower-case letters"],
    ),
    (
        lambda n: n.update(name="node1"),
        ["nodes[1].name", "has that name already"],
    ),
    (
        lambda n: n.update(data_interface="a-name-far-too-long"),
        ["nodes[1].data_interface", "at most 15"],
    ),
    (
        lambda n: n.update(data_addresses=["198.19.1.12"]),
        ["nodes[1].data_addresses[0]", "prefix length"],
    ),
    (
        lambda n: n.update(data_addresses=["198.19.1.11/24"]),
        ["nodes[1].data_addresses[0]", "node node1 has that address already"],
    ),
    (
        lambda n: n["ssh"].update(host="-oProxyCommand=x"),
        ["nodes[1].ssh.host", "host name or IPv4 address"],
    ),
    (
        lambda n: n.update(netpipe="netpipe; rm -rf /"),
        ["nodes[1].netpipe", "without spaces or quotes"],
    ),
    (
        lambda n: n["ssh"].update(port=0),
        ["nodes[1].ssh.port", "from 1 to 65535"],
    ),
    (lambda n: n.pop("data_interface"), ["nodes[1].data_interface", "missing"]),
]


@pytest.mark.parametrize(("change", "words"), CASES)
def test_a_bad_node_is_refused_naming_the_key_and_what_is_allowed(
    key: Path, change: Any, words: list[str]
):
    with pytest.raises(ConfigError) as err:
        validate(_broken(key, change))
    for word in words:
        assert word in str(err.value)


def test_a_password_is_never_echoed(key: Path):
    with pytest.raises(ConfigError) as err:
        validate(_broken(key, lambda n: n["ssh"].update({"password": "hunter2"})))
    assert "hunter2" not in str(err.value)


def test_switched_cells_need_two_nodes(key: Path):
    with pytest.raises(ConfigError, match="needs a server node and a client node"):
        validate(config([node(key)]))
    # Local cells need none.
    assert validate(config([], topology="local")).nodes == ()


def test_host_key_checking_can_be_turned_off_explicitly(key: Path):
    nodes = two(key)
    for n in nodes:
        n["ssh"]["known_hosts"] = "/nonexistent"
        n["ssh"]["host_key_check"] = False
    assert not validate(config(nodes)).nodes[0].ssh.host_key_check


def test_the_testbed_config_takes_the_testbed_inventory(key: Path, tmp_path: Path):
    repo = Path(__file__).resolve().parent.parent
    data = yaml.safe_load((repo / "config/switched-testbed.yaml").read_text())
    assert data["inventory"] == "/run/netpipe-testbed/inventory.yaml"
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"nodes": two(key)}))
    data["inventory"] = str(inv)
    cfg = validate(data)
    assert len(cfg.nodes) == 2
    assert {t for sub in cfg.matrix for t in sub["topology"]} == {"switched"}
