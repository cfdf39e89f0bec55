"""The node inventory of a config: loading, checks the schema cannot make, nodes.

A config names its remote nodes under ``nodes`` or includes an inventory file
with ``inventory: PATH`` (the file holds the same ``nodes`` list; ``netpipe
testbed up`` writes one). The schema checks each entry's shape; this module
reads the file, refuses passwords without ever echoing one, and checks what
needs the file system or several keys at once: key files that exist, unique
names, interface names, data addresses, and enough nodes for switched cells.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netpipe.errors import ConfigError
from netpipe.naming import validate_ifname

SWITCHED = "switched"
# Keys that would carry a secret; reported by name only, never by value.
SECRET_KEYS = ("password", "passphrase", "key_password")


@dataclass(frozen=True)
class SshTarget:
    """How the controller reaches one node."""

    host: str
    port: int
    user: str
    key_file: str
    known_hosts: str
    host_key_check: bool
    timeout_s: int


@dataclass(frozen=True)
class Node:
    """One remote node of the inventory, validated."""

    name: str
    ssh: SshTarget
    data_interface: str
    data_addresses: tuple[ipaddress.IPv4Interface, ...]
    netpipe: str
    iperf3: str

    @property
    def data_address(self) -> ipaddress.IPv4Interface:
        """The node's first data address: its VXLAN underlay address."""
        return self.data_addresses[0]


def prepare(data: dict[str, Any]) -> list[str]:
    """Read the inventory file into ``data['nodes']``; drop secrets; say problems.

    Runs before the schema, so that the file's nodes are checked as if they
    were written in the config, and a password is named but never shown.
    """
    problems: list[str] = []
    path = data.get("inventory")
    if isinstance(path, str) and path:
        if data.get("nodes"):
            problems.append(
                f"config key 'inventory' is {path!r} and 'nodes' is given too, but "
                "only one of them may name the nodes; remove one."
            )
        else:
            try:
                nodes = _read_inventory(Path(path).expanduser())
            except ConfigError as exc:
                problems.append(str(exc))
            else:
                data["nodes"] = nodes
    given = data.get("nodes")
    for i, node in enumerate(given if isinstance(given, list) else []):
        if not isinstance(node, dict):
            continue
        places = [("", node)]
        if isinstance(node.get("ssh"), dict):
            places.append(("ssh.", node["ssh"]))
        for prefix, where in places:
            for secret in SECRET_KEYS:
                if secret in where:
                    del where[secret]
                    problems.append(
                        f"config key 'nodes[{i}].{prefix}{secret}' is set, but "
                        "netpipe takes no passwords in the config; log in with "
                        "ssh.key_file, a key without a passphrase (or one an "
                        "ssh-agent holds), and remove the key."
                    )
    return problems


def _read_inventory(path: Path) -> list[Any]:
    """Return the ``nodes`` list of an inventory file."""
    key = f"config key 'inventory' is {str(path)!r}"
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{key}, but that file cannot be read: {exc.strerror}; for the "
            "emulated testbed run `netpipe testbed up` first, which writes it."
        ) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}, but that file is not valid YAML: {exc}") from exc
    if not isinstance(content, dict) or not isinstance(content.get("nodes"), list):
        raise ConfigError(
            f"{key}, but that file must be a mapping with a 'nodes' list, as "
            "`netpipe testbed up` writes."
        )
    return content["nodes"]


def node_problems(data: dict[str, Any]) -> list[str]:
    """Checks of the (schema-valid, defaults filled) nodes the schema cannot make."""
    problems = []
    nodes = data["nodes"]
    seen: dict[str, int] = {}
    addresses: dict[str, str] = {}
    for i, node in enumerate(nodes):
        at = f"config key 'nodes[{i}]"
        if node["name"] in seen:
            problems.append(
                f"{at}.name' is {node['name']!r}, but nodes[{seen[node['name']]}] "
                "has that name already; every node needs a name of its own."
            )
        seen.setdefault(node["name"], i)
        ssh = node["ssh"]
        if all(part.isdigit() for part in ssh["host"].split(".")):
            try:
                ipaddress.IPv4Address(ssh["host"])
            except ValueError:
                problems.append(
                    f"{at}.ssh.host' is {ssh['host']!r}, which looks like an IPv4 "
                    "address but is not one (four numbers from 0 to 255); give the "
                    "node's management address or host name."
                )
        key_file = Path(ssh["key_file"]).expanduser()
        if not key_file.is_file():
            what = "is a folder" if key_file.is_dir() else "does not exist"
            problems.append(
                f"{at}.ssh.key_file' is {ssh['key_file']!r}, but that {what} "
                f"(node {node['name']}); give the path of the SSH private key "
                "file that logs in to the node."
            )
        known = Path(ssh["known_hosts"]).expanduser()
        if ssh["host_key_check"] and not known.is_file():
            problems.append(
                f"{at}.ssh.known_hosts' is {ssh['known_hosts']!r}, but no such file "
                f"exists (node {node['name']}), so its host key cannot be checked; "
                f"add the key with `ssh-keyscan -p {ssh['port']} {ssh['host']} >> "
                f"{ssh['known_hosts']}` after checking its fingerprint, or set "
                "host_key_check: false for a throwaway lab."
            )
        try:
            validate_ifname(node["data_interface"], key=f"nodes[{i}].data_interface")
        except ConfigError as exc:
            problems.append(str(exc))
        for j, text in enumerate(node["data_addresses"]):
            try:
                address = ipaddress.ip_interface(text)
            except ValueError:
                address = None
            if address is None or address.version != 4 or "/" not in text:
                problems.append(
                    f"{at}.data_addresses[{j}]' is {text!r}, but it must be an "
                    "IPv4 address with its prefix length, such as 198.19.1.11/24."
                )
                continue
            ip = str(address.ip)
            if ip in addresses:
                problems.append(
                    f"{at}.data_addresses[{j}]' is {text!r}, but {addresses[ip]} "
                    "has that address already; every node needs its own."
                )
            addresses.setdefault(ip, f"node {node['name']}")

    switched = any(SWITCHED in sub.get("topology", []) for sub in data["matrix"])
    if switched and len(nodes) < 2:
        problems.append(
            f"the matrix has topology {SWITCHED!r}, which needs a server node and a "
            f"client node, but 'nodes' lists {len(nodes)}; add two nodes (or "
            "`inventory: /run/netpipe-testbed/inventory.yaml` after `netpipe "
            "testbed up`)."
        )
    return problems


def nodes_from(data: dict[str, Any]) -> tuple[Node, ...]:
    """Build the validated nodes of a config mapping."""
    iperf = data["iperf"]["binary"]
    return tuple(
        Node(
            name=node["name"],
            ssh=SshTarget(
                host=node["ssh"]["host"],
                port=node["ssh"]["port"],
                user=node["ssh"]["user"],
                key_file=str(Path(node["ssh"]["key_file"]).expanduser()),
                known_hosts=str(Path(node["ssh"]["known_hosts"]).expanduser()),
                host_key_check=node["ssh"]["host_key_check"],
                timeout_s=node["ssh"]["timeout_s"],
            ),
            data_interface=node["data_interface"],
            data_addresses=tuple(
                ipaddress.IPv4Interface(a) for a in node["data_addresses"]
            ),
            netpipe=node["netpipe"],
            iperf3=node["iperf3"] or iperf,
        )
        for node in data["nodes"]
    )
