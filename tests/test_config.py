"""Config validation: every bad config is refused with a message that helps.

Each rejected config must name the key, the offending value and what is
allowed, so the catalogue below checks all three for every case. No root and
no network namespaces are needed.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from netpipe.config import Config, load, schema, validate
from netpipe.errors import ConfigError
from netpipe.naming import validate_ifname

REPO = Path(__file__).resolve().parent.parent
SCHEMA_FILE = REPO / "netpipe" / "schemas" / "config.schema.yaml"


@pytest.fixture(autouse=True)
def nothing_left_behind() -> None:
    """Skip conftest's np* leak check: these tests create no kernel objects."""
    # The check compares the whole machine's np* links before and after each
    # test, so it fails these pure tests whenever a root test runs alongside.


def minimal() -> dict[str, Any]:
    """A small valid config with every section given, for a case to spoil."""
    return {
        "matrix": [
            {
                "topology": ["local"],
                "driver": ["veth-bridge"],
                "protocol": ["tcp", "udp"],
                "mtu": [1500, 9000],
                "pairs": [1, 4],
            }
        ],
        "repetitions": 2,
        "iperf": {"duration_s": 2, "omit_s": 1, "udp_rate": "500M", "mss": "auto"},
        "network": {"address_pool": "198.18.0.0/24", "parent": None},
    }


Edit = Callable[[dict[str, Any]], Any]


def top(**values: Any) -> Edit:
    """Set top-level keys."""
    return lambda c: c.update(values)


def sub(**values: Any) -> Edit:
    """Set keys of the first sub-matrix."""
    return lambda c: c["matrix"][0].update(values)


def iperf(**values: Any) -> Edit:
    """Set keys under iperf."""
    return lambda c: c["iperf"].update(values)


def net(**values: Any) -> Edit:
    """Set keys under network."""
    return lambda c: c["network"].update(values)


def dock(**values: Any) -> Edit:
    """Set keys under docker."""
    return lambda c: c.setdefault("docker", {}).update(values)


def drop(*path: str | int) -> Edit:
    """Remove the key at ``path``."""

    def edit(config: dict[str, Any]) -> None:
        node: Any = config
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


WHOLE_PAIRS = "a whole number from 1 to 500"
WHOLE_MTU = "a whole number from 68 to 65535"

# (edit, fragments the message must contain: key, value, what is allowed)
BAD: list[Any] = [
    # Unknown keys, with the nearest valid one suggested.
    pytest.param(
        top(repetition=3),
        [
            "'repetition'",
            "inventory, iperf, matrix, network, nodes, repetitions",
            "mean 'repetitions'",
        ],
        id="top-level-typo",
    ),
    pytest.param(
        iperf(duraton_s=3),
        ["'iperf.duraton_s'", "base_port, binary, duration_s", "mean 'duration_s'"],
        id="nested-typo",
    ),
    pytest.param(
        sub(pair=[1]),
        ["'matrix[0].pair'", "driver, mtu, pairs", "mean 'pairs'"],
        id="matrix-entry-typo",
    ),
    pytest.param(
        top(duration_s=3),
        ["'duration_s'", "not a known key", "belongs under 'iperf'"],
        id="key-at-wrong-level",
    ),
    # Wrong types.
    pytest.param(
        top(repetitions="3"),
        ["'repetitions'", "'3', a string", "a whole number from 1 to 1000", "quotes"],
        id="string-for-int",
    ),
    pytest.param(
        sub(pairs=[1.5]),
        ["'matrix[0].pairs[0]'", "1.5, a decimal number", WHOLE_PAIRS],
        id="float-pairs",
    ),
    pytest.param(
        sub(pairs=[2.0]),
        ["'matrix[0].pairs[0]'", "2.0, a decimal number", WHOLE_PAIRS, "write 2"],
        id="integral-float-pairs",
    ),
    pytest.param(
        sub(pairs=[True]),
        ["'matrix[0].pairs[0]'", "is true", WHOLE_PAIRS],
        id="bool-pairs",
    ),
    pytest.param(
        top(repetitions=False),
        ["'repetitions'", "is false", "a whole number from 1 to 1000"],
        id="bool-repetitions",
    ),
    pytest.param(
        sub(mtu=1500),
        ["'matrix[0].mtu'", "1500, a whole number", "a list", "write [1500]"],
        id="scalar-for-list",
    ),
    pytest.param(
        top(iperf=5),
        ["'iperf'", "5, a whole number", "a mapping"],
        id="int-for-mapping",
    ),
    pytest.param(
        top(iperf=None),
        ["'iperf'", "is null", "a mapping", "remove the key"],
        id="null-for-mapping",
    ),
    pytest.param(
        lambda c: c.update(matrix=c["matrix"][0]),
        ["'matrix'", "a mapping", "a list in which each item is a mapping", "'- '"],
        id="matrix-not-a-list",
    ),
    pytest.param(
        top(matrix=["veth-bridge"]),
        ["'matrix[0]'", "'veth-bridge', a string", "a mapping with driver"],
        id="matrix-entry-not-a-mapping",
    ),
    pytest.param(
        iperf(duration_s=dt.date(2024, 1, 2)),
        ["'iperf.duration_s'", "2024-01-02", "a date", "from 1 to 3600"],
        id="yaml-date-for-int",
    ),
    # Out of range.
    pytest.param(
        sub(mtu=[1500, 67]), ["'matrix[0].mtu[1]'", "is 67", WHOLE_MTU], id="mtu-67"
    ),
    pytest.param(
        sub(mtu=[65536]), ["'matrix[0].mtu[0]'", "65536", WHOLE_MTU], id="mtu-65536"
    ),
    pytest.param(
        sub(pairs=[0]), ["'matrix[0].pairs[0]'", "is 0", WHOLE_PAIRS], id="pairs-0"
    ),
    pytest.param(
        sub(pairs=[1, -1]),
        ["'matrix[0].pairs[1]'", "is -1", WHOLE_PAIRS],
        id="pairs-negative",
    ),
    pytest.param(
        top(repetitions=0),
        ["'repetitions'", "is 0", "a whole number from 1 to 1000"],
        id="repetitions-0",
    ),
    pytest.param(
        sub(repetitions=0),
        ["'matrix[0].repetitions'", "is 0", "from 1 to 1000"],
        id="sub-matrix-repetitions-0",
    ),
    pytest.param(
        iperf(omit_s=-1), ["'iperf.omit_s'", "is -1", "from 0 to 600"], id="omit-neg"
    ),
    pytest.param(
        iperf(duration_s=0),
        ["'iperf.duration_s'", "is 0", "from 1 to 3600"],
        id="duration-0",
    ),
    pytest.param(
        iperf(mss=10),
        ["'iperf.mss'", "is 10", "'auto' or a whole number from 88 to 9216"],
        id="mss-10",
    ),
    pytest.param(
        iperf(mss=20000),
        ["'iperf.mss'", "20000", "from 88 to 9216"],
        id="mss-above-iperf3-limit",
    ),
    pytest.param(
        iperf(mss="big"), ["'iperf.mss'", "'big'", "'auto' or"], id="mss-word"
    ),
    pytest.param(
        iperf(base_port=80),
        ["'iperf.base_port'", "is 80", "from 1024 to 65535"],
        id="base-port-privileged",
    ),
    # Empty lists and repeated values.
    pytest.param(
        sub(mtu=[]),
        ["'matrix[0].mtu'", "an empty list", "at least 1 item", WHOLE_MTU],
        id="empty-mtu",
    ),
    pytest.param(
        sub(driver=[]), ["'matrix[0].driver'", "an empty list"], id="empty-driver"
    ),
    pytest.param(
        top(matrix=[]), ["'matrix'", "an empty list", "a mapping"], id="empty-matrix"
    ),
    pytest.param(
        sub(topology=[]), ["'matrix[0].topology'", "empty list"], id="empty-topology"
    ),
    pytest.param(
        sub(mtu=[1500, 9000, 1500]),
        ["'matrix[0].mtu'", "1500 more than once", "only once"],
        id="duplicate-mtu",
    ),
    pytest.param(
        sub(protocol=["udp", "udp"]),
        ["'matrix[0].protocol'", "'udp' more than once"],
        id="duplicate-protocol",
    ),
    # Unknown names.
    pytest.param(
        sub(driver=["veth-brige"]),
        ["'matrix[0].driver[0]'", "'veth-brige'", "'macvlan-bridge'", "'veth-bridge'?"],
        id="driver-typo",
    ),
    pytest.param(
        sub(driver=["veth-bridge", "veth_bridge"]),
        ["'matrix[0].driver[1]'", "'veth_bridge'", "mean 'veth-bridge'"],
        id="driver-underscore",
    ),
    pytest.param(
        sub(protocol=["quic"]),
        ["'matrix[0].protocol[0]'", "'quic'", "one of 'tcp', 'udp'"],
        id="unknown-protocol",
    ),
    pytest.param(
        sub(protocol=["TCP"]),
        ["'matrix[0].protocol[0]'", "'TCP'", "mean 'tcp'"],
        id="protocol-upper-case",
    ),
    pytest.param(
        sub(topology=["remote"]),
        ["'matrix[0].topology[0]'", "'remote'", "must be one of 'local', 'switched'"],
        id="unknown-topology",
    ),
    # The address pool.
    pytest.param(
        net(address_pool="198.18.0.0/30"),
        ["'network.address_pool'", "'198.18.0.0/30'", "needs 8", "'198.18.0.0/28'"],
        id="pool-too-small",
    ),
    pytest.param(
        net(address_pool="198.18.0.1/16"),
        ["'network.address_pool'", "'198.18.0.1/16'", "host bits", "'198.18.0.0/16'"],
        id="pool-host-bits",
    ),
    pytest.param(
        net(address_pool="foo"),
        ["'network.address_pool'", "'foo'", "IPv4 network in CIDR notation"],
        id="pool-not-a-network",
    ),
    pytest.param(
        net(address_pool="fd00:198:18::/64"),
        ["'network.address_pool'", "'fd00:198:18::/64'", "IPv6", "IPv4"],
        id="pool-ipv6",
    ),
    pytest.param(
        net(address_pool=198),
        ["'network.address_pool'", "198, a whole number", "a non-empty string"],
        id="pool-not-a-string",
    ),
    # The parent interface.
    pytest.param(
        net(parent="np0123456789abcd"),
        ["'network.parent'", "'np0123456789abcd'", "16 bytes", "at most 15"],
        id="parent-too-long",
    ),
    pytest.param(
        net(parent="np/up"),
        ["'network.parent'", "'np/up'", "'/'"],
        id="parent-slash",
    ),
    pytest.param(
        net(parent="np up"),
        ["'network.parent'", "'np up'", "white space"],
        id="parent-space",
    ),
    pytest.param(
        net(parent=""),
        ["'network.parent'", "''", "1 to 15 bytes"],
        id="parent-empty",
    ),
    pytest.param(
        net(parent="lo"),
        ["'network.parent'", "'lo'", "loopback", "null for a veth uplink"],
        id="parent-loopback",
    ),
    pytest.param(
        net(parent=".."),
        ["'network.parent'", "'..'", "'.' or '..'"],
        id="parent-dot-dot",
    ),
    pytest.param(
        net(parent=False),
        ["'network.parent'", "is false", "a string or null", "quotes"],
        id="parent-yaml-no",
    ),
    # iperf3 settings.
    pytest.param(
        iperf(udp_rate="fast"),
        ["'iperf.udp_rate'", "'fast'", "K, M, G or T suffix"],
        id="udp-rate-word",
    ),
    pytest.param(
        iperf(udp_rate="0M"),
        ["'iperf.udp_rate'", "'0M'", "a positive number of bits per second"],
        id="udp-rate-zero",
    ),
    pytest.param(
        iperf(udp_rate=2.5),
        ["'iperf.udp_rate'", "2.5, a decimal number", "bits per second"],
        id="udp-rate-float",
    ),
    pytest.param(
        iperf(binary=""),
        ["'iperf.binary'", "''", "a non-empty string"],
        id="binary-empty",
    ),
    pytest.param(
        lambda c: (iperf(base_port=65535)(c), sub(pairs=[4])(c)),
        ["'iperf.base_port'", "65535", "port 65538", "at most 65532"],
        id="base-port-too-high-for-pairs",
    ),
    pytest.param(
        sub(mtu=[65000]),
        ["'matrix[0].mtu[0]'", "65000", "'auto'", "64960", "at most 9216"],
        id="auto-mss-beyond-iperf3",
    ),
    # Pools the host already uses, read from its interfaces (lo always has
    # 127.0.0.1/8).
    pytest.param(
        net(address_pool="127.0.0.0/24"),
        ["'network.address_pool'", "'127.0.0.0/24'", "127.0.0.1/8 on lo", "198.18"],
        id="pool-overlaps-host-address",
    ),
    # More duplicates and empty lists.
    pytest.param(
        sub(driver=["veth-bridge", "veth-bridge"]),
        ["'matrix[0].driver'", "'veth-bridge'", "more than once", "remove"],
        id="duplicate-driver",
    ),
    pytest.param(
        sub(pairs=[1, 2, 1]),
        ["'matrix[0].pairs'", "lists 1 more than once"],
        id="duplicate-pairs",
    ),
    pytest.param(
        sub(pairs=[]), ["'matrix[0].pairs'", "an empty list"], id="empty-pairs"
    ),
    pytest.param(
        sub(protocol=[]), ["'matrix[0].protocol'", "an empty list"], id="empty-protocol"
    ),
    # Retries of transient iperf3 failures.
    pytest.param(
        iperf(retries=-1),
        ["'iperf.retries'", "is -1", "from 0 to 10"],
        id="retries-neg",
    ),
    pytest.param(
        iperf(retries=100), ["'iperf.retries'", "100", "from 0 to 10"], id="retries-100"
    ),
    pytest.param(
        iperf(retry_backoff_s="soon"),
        ["'iperf.retry_backoff_s'", "'soon'", "a number from 0 to 60"],
        id="retry-backoff-word",
    ),
    pytest.param(
        iperf(retrys=2),
        ["'iperf.retrys'", "Did you mean 'retries'?"],
        id="retries-typo",
    ),
    pytest.param(
        sub(backend=["dockr"]),
        ["'matrix[0].backend[0]'", "'dockr'", "'netns', 'docker'", "'docker'?"],
        id="backend-typo",
    ),
    pytest.param(
        sub(backend=["netns", "netns"]),
        ["'matrix[0].backend'", "'netns' more than once"],
        id="backend-duplicate",
    ),
    pytest.param(
        dock(imgae="x"), ["'docker.imgae'", "Did you mean 'image'?"], id="docker-typo"
    ),
    pytest.param(
        dock(timeout_s=601),
        ["'docker.timeout_s'", "601", "above 0 and at most 600"],
        id="docker-timeout-huge",
    ),
    pytest.param(
        dock(timeout_s=0),
        ["'docker.timeout_s'", "0", "above 0 and at most 600"],
        id="docker-timeout-zero",
    ),
    pytest.param(
        dock(url="ftp://x"),
        ["'docker.url'", "'ftp://x'", "unix:///PATH"],
        id="docker-url-scheme",
    ),
    pytest.param(
        dock(image="Foo Bar"),
        ["'docker.image'", "'Foo Bar'", "image reference"],
        id="docker-image-space",
    ),
    pytest.param(
        dock(image="--help"),
        ["'docker.image'", "'--help'", "image reference"],
        id="docker-image-option",
    ),
    pytest.param(
        net(parent="eth0\x1b"),
        ["'network.parent'", "control characters"],
        id="parent-control-character",
    ),
    pytest.param(
        net(parent="np:0"), ["'network.parent'", "'np:0'", "':'"], id="parent-colon"
    ),
    # Missing keys.
    pytest.param(
        drop("matrix"), ["'matrix'", "missing", "a list"], id="missing-matrix"
    ),
    pytest.param(
        drop("matrix", 0, "driver"),
        ["'matrix[0].driver'", "missing", "driver, protocol, mtu and pairs"],
        id="matrix-entry-missing-driver",
    ),
]


@pytest.mark.parametrize(("edit", "fragments"), BAD)
def test_bad_config_is_refused_naming_key_value_and_rule(
    edit: Edit, fragments: list[str]
) -> None:
    config = minimal()
    edit(config)

    with pytest.raises(ConfigError) as caught:
        validate(config)

    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert message.rstrip().endswith((".", "?")), message


def test_catalogue_is_large() -> None:
    assert len(BAD) >= 30


def test_jsonschema_alone_takes_floats_as_integers_but_not_bools() -> None:
    # Why netpipe redefines "integer": plain JSON Schema accepts 1.0.
    plain = jsonschema.Draft202012Validator({"type": "integer"})

    assert not plain.is_valid(True)
    assert plain.is_valid(1.0)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(sub(pairs=[True]), id="pairs"),
        pytest.param(sub(mtu=[False]), id="mtu"),
        pytest.param(top(repetitions=True), id="repetitions"),
        pytest.param(iperf(duration_s=True), id="duration"),
        pytest.param(iperf(mss=True), id="mss"),
        pytest.param(iperf(udp_rate=True), id="udp-rate"),
        pytest.param(net(parent=True), id="parent"),
    ],
)
def test_bool_values_are_refused_and_called_true_or_false(edit: Edit) -> None:
    config = minimal()
    edit(config)

    with pytest.raises(ConfigError) as caught:
        validate(config)

    message = str(caught.value)
    assert "bool" not in message
    assert " is true" in message or " is false" in message


@pytest.mark.parametrize("data", [[1, 2], "matrix", None, 3])
def test_config_that_is_not_a_mapping_is_refused(data: Any) -> None:
    with pytest.raises(ConfigError, match="must be a mapping of keys to values"):
        validate(data)


def test_every_problem_is_reported_at_once() -> None:
    config = minimal()
    config["repetitions"] = 0
    config["iperf"]["omit_s"] = -1
    config["matrix"][0]["mtu"] = [67]

    with pytest.raises(ConfigError) as caught:
        validate(config)

    message = str(caught.value)
    assert message.startswith("the config has 3 problems:")
    for key in ("'repetitions'", "'iperf.omit_s'", "'matrix[0].mtu[0]'"):
        assert key in message


def test_validate_leaves_the_callers_mapping_alone() -> None:
    config = minimal()
    del config["iperf"]
    before = copy.deepcopy(config)

    validate(config)

    assert config == before


# --- files ------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    """Write a config file and return its path."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param(
            "matrix: [\n  {driver: [veth-bridge]\n",
            ["not valid YAML", "line 3"],
            id="unclosed-bracket",
        ),
        pytest.param(
            "matrix:\n  - driver: [veth-bridge]\n\tprotocol: [tcp]\n",
            ["not valid YAML", "line 3"],
            id="tab-indent",
        ),
        pytest.param("", ["is empty", "'matrix'"], id="empty-file"),
        pytest.param("# nothing but a comment\n", ["is empty"], id="only-comment"),
        pytest.param("- veth-bridge\n", ["a list", "a mapping"], id="list-file"),
        pytest.param("just words\n", ["'just words'", "a mapping"], id="string-file"),
        pytest.param(
            "matrix:\n  - {driver: [veth-bridge], protocol: [tcp], mtu: [1500], "
            "pairs: [yes]}\n",
            ["'matrix[0].pairs[0]'", "is true", WHOLE_PAIRS],
            id="yaml-yes-as-pairs",
        ),
    ],
)
def test_bad_config_file_is_refused_naming_the_file(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load(path)

    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "absent.yaml")


def test_non_utf8_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"repetitions: 3 # \xff\n")

    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


# --- good configs -------------------------------------------------------------


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load(REPO / "config" / name)

    assert isinstance(config, Config)
    assert config.matrix


def test_omitted_settings_get_the_schema_defaults() -> None:
    data = {"matrix": [{"driver": ["veth-bridge"], "protocol": ["tcp"]}]}
    data["matrix"][0].update(mtu=[1500], pairs=[1])
    props = schema()["properties"]

    config = validate(data)

    iperf_defaults = props["iperf"]["properties"]
    assert config.iperf.duration_s == iperf_defaults["duration_s"]["default"]
    assert config.iperf.mss == iperf_defaults["mss"]["default"]
    assert config.repetitions == props["repetitions"]["default"]
    assert config.network.parent is None
    assert config.network.address_pool == ipaddress.IPv4Network("198.18.0.0/16")
    assert config.matrix[0]["topology"] == ["local"]
    assert config.raw["iperf"]["duration_s"] == config.iperf.duration_s


def test_numeric_udp_rate_is_kept_as_text() -> None:
    config = minimal()
    config["iperf"]["udp_rate"] = 500000000

    assert validate(config).iperf.udp_rate == "500000000"


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(sub(mtu=[68, 65535], protocol=["udp"]), id="mtu-bounds-udp"),
        pytest.param(
            lambda c: (sub(mtu=[9256])(c), iperf(mss=9216)(c)), id="mss-at-limit"
        ),
        pytest.param(
            lambda c: (sub(mtu=[65535])(c), iperf(mss=1460)(c)), id="big-mtu-fixed-mss"
        ),
        pytest.param(
            lambda c: (
                sub(pairs=[500])(c),
                net(address_pool="198.18.0.0/21")(c),
                iperf(base_port=64537)(c),
            ),
            id="most-pairs-at-edges",
        ),
        pytest.param(
            # Three pairs take six addresses; a /29 has six besides network and
            # broadcast.
            lambda c: (sub(pairs=[3])(c), net(address_pool="198.18.0.0/29")(c)),
            id="pool-just-big-enough",
        ),
        pytest.param(net(parent="np0123456789abc"), id="parent-15-bytes"),
        pytest.param(iperf(udp_rate="1.5G"), id="udp-rate-decimal"),
    ],
)
def test_configs_at_the_edges_are_accepted(edit: Edit) -> None:
    config = minimal()
    edit(config)

    validate(config)


def test_interface_name_check_refuses_control_characters() -> None:
    with pytest.raises(ConfigError, match="control characters"):
        validate_ifname("np\x00up", key="network.parent")


# --- the schema itself -------------------------------------------------------


def properties(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (key, schema) for every property anywhere in a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties":
                for name, sub_schema in value.items():
                    path = f"{where}.{name}".lstrip(".")
                    yield path, sub_schema
                    yield from properties(sub_schema, path)
            else:
                yield from properties(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from properties(item, where)


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_every_schema_property_has_a_description() -> None:
    found = list(properties(schema()))

    assert len(found) >= 15
    for key, node in found:
        assert str(node.get("description", "")).strip(), f"{key} has no description"


def test_every_schema_default_is_itself_valid() -> None:
    for key, node in properties(schema()):
        if "default" in node:
            check = {k: v for k, v in node.items() if k != "default"}
            assert jsonschema.Draft202012Validator(check).is_valid(node["default"]), key


def test_every_schema_integer_has_both_bounds() -> None:
    # The messages say "from LOW to HIGH" and rely on both being there.
    def integers(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if node.get("type") == "integer":
                yield node
            for value in node.values():
                yield from integers(value)
        elif isinstance(node, list):
            for item in node:
                yield from integers(item)

    for node in integers(schema()):
        assert "minimum" in node and "maximum" in node, node


def test_workflow_schema_is_the_package_schema() -> None:
    linked = REPO / "workflow" / "schemas" / "config.schema.yaml"

    assert yaml.safe_load(linked.read_text()) == schema()
    assert yaml.safe_load(SCHEMA_FILE.read_text()) == schema()
