"""Reading and validating a sweep configuration.

The JSON schema in ``netpipe/schemas/config.schema.yaml`` (linked from
``workflow/schemas/``) is the single source of the rules; this module applies
it, fills in defaults, adds the checks a schema cannot express (address pool
size, interface names, known drivers, port range, iperf3's MSS limit) and
turns every violation into a sentence naming the key, the value and what is
allowed. All problems are reported at once, so a user fixes a config in one
pass. The Snakefile and the ``netpipe`` command both go through
:func:`validate`, so a config is rejected the same way with or without
Snakemake, before anything is provisioned.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import ipaddress
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from netpipe import inventory
from netpipe.errors import ConfigError
from netpipe.hostnet import overlaps
from netpipe.naming import validate_ifname

IPERF_MAX_MSS = 9216
"""The largest ``-M`` iperf3 accepts (its ``MAX_MSS``), in bytes."""

_MAX_SHOWN = 20
"""How many problems one error message lists before it says how many more."""


@cache
def schema() -> dict[str, Any]:
    """Return the configuration's JSON schema."""
    text = resources.files("netpipe").joinpath("schemas/config.schema.yaml")
    return yaml.safe_load(text.read_text())


def _is_integer(checker: Any, instance: Any) -> bool:
    """Whole numbers only: no bools, and no floats such as 1.0."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _validator() -> jsonschema.protocols.Validator:
    """Return the schema's validator, with a strict idea of an integer."""
    # JSON Schema counts 1.0 as an integer; a cell's MTU of 1500.0 would then
    # name a result file mtu1500.0.json and break range(), so floats are out.
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", _is_integer)
    strict = jsonschema.validators.extend(base, type_checker=checker)
    return strict(schema())


@dataclass(frozen=True)
class IperfSettings:
    """How iperf3 runs in every cell."""

    binary: str
    duration_s: int
    omit_s: int
    udp_rate: str
    mss: int | str
    base_port: int
    retries: int = 2
    retry_backoff_s: float = 1.0


@dataclass(frozen=True)
class NetworkSettings:
    """Network resources netpipe may use."""

    address_pool: ipaddress.IPv4Network
    parent: str | None


@dataclass(frozen=True)
class DockerSettings:
    """The engine and image of the docker backend."""

    url: str | None = None
    image: str = "auto"
    timeout_s: float = 60


@dataclass(frozen=True)
class Config:
    """A validated sweep configuration."""

    matrix: tuple[dict[str, Any], ...]
    repetitions: int
    iperf: IperfSettings
    network: NetworkSettings
    raw: dict[str, Any]
    docker: DockerSettings = DockerSettings()
    nodes: tuple[inventory.Node, ...] = ()


def load(path: str | Path) -> Config:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); save it as "
            "UTF-8."
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} {_yaml_problem(exc)}") from exc

    if data is None:
        raise ConfigError(
            f"config file {path} is empty, but it must be a mapping with at least "
            "a 'matrix' key; see config/config.yaml for an example."
        )
    try:
        return validate(data)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def validate(data: Any) -> Config:
    """Validate a config mapping (as Snakemake's ``config``) and fill defaults."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"the config is {_show(data)}{_kind(data)}, but it must be a mapping "
            f"of keys to values ({', '.join(sorted(schema()['properties']))})."
        )
    data = copy.deepcopy(data)
    early = inventory.prepare(data)
    errors = sorted(_validator().iter_errors(data), key=_error_order)
    _raise_if(early + [line for error in errors for line in _explain(error)])

    _fill_defaults(data, schema())
    _raise_if(_semantic_problems(data) + inventory.node_problems(data))

    iperf = {**data["iperf"], "udp_rate": str(data["iperf"]["udp_rate"])}
    return Config(
        matrix=tuple(data["matrix"]),
        repetitions=data["repetitions"],
        iperf=IperfSettings(**iperf),
        network=NetworkSettings(
            address_pool=ipaddress.IPv4Network(data["network"]["address_pool"]),
            parent=data["network"]["parent"],
        ),
        raw=data,
        docker=DockerSettings(**data["docker"]),
        nodes=inventory.nodes_from(data),
    )


def _raise_if(problems: list[str]) -> None:
    """Raise one ConfigError listing every problem, if there are any."""
    problems = list(dict.fromkeys(problems))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        shown = "\n".join(f"- {p}" for p in problems[:_MAX_SHOWN])
        more = len(problems) - _MAX_SHOWN
        tail = f"\n- and {more} more; fix these and validate again." if more > 0 else ""
        raise ConfigError(f"the config has {len(problems)} problems:\n{shown}{tail}")


def _semantic_problems(data: dict[str, Any]) -> list[str]:
    """Checks across keys that the schema cannot express."""
    from netpipe.drivers import known_drivers

    problems = []
    known = sorted(known_drivers())
    allowed = ", ".join(map(repr, known))
    for i, sub in enumerate(data["matrix"]):
        for j, name in enumerate(sub["driver"]):
            if name not in known:
                problems.append(
                    f"config key 'matrix[{i}].driver[{j}]' is {_show(name)}, but it "
                    f"must be one of {allowed}.{_nearest(name, known)}"
                )

    largest, where = 0, ""
    for i, sub in enumerate(data["matrix"]):
        if max(sub["pairs"]) > largest:
            largest, where = max(sub["pairs"]), f"matrix[{i}].pairs"
    problems += _pool_problems(data["network"]["address_pool"], largest, where)

    base = data["iperf"]["base_port"]
    if base + largest - 1 > 65535:
        problems.append(
            f"config key 'iperf.base_port' is {base}, but with {largest} pairs "
            f"(in {where}) the last pair would use port {base + largest - 1}, past "
            f"65535; use a base_port of at most {65536 - largest}."
        )

    if data["iperf"]["mss"] == "auto":
        problems += _auto_mss_problems(data["matrix"])

    parent = data["network"]["parent"]
    if parent == "lo":
        # The loopback device cannot carry sub-devices, and netpipe would set
        # the host's loopback MTU before finding that out.
        problems.append(
            "config key 'network.parent' is 'lo', but the loopback device cannot "
            "be a macvlan or ipvlan parent; name a NIC, or null for a veth uplink."
        )
    elif parent is not None:
        try:
            validate_ifname(parent, key="network.parent")
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def _pool_problems(value: str, largest: int, where: str) -> list[str]:
    """Check that the address pool is an IPv4 network holding every endpoint."""
    key = "config key 'network.address_pool'"
    try:
        loose = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return [
            f"{key} is {_show(value)}, but it must be an IPv4 network in CIDR "
            "notation, such as 198.18.0.0/16."
        ]
    if loose.version != 4:
        return [
            f"{key} is {_show(value)}, an IPv6 network, but netpipe supports only "
            "IPv4 address pools so far; use one such as 198.18.0.0/16."
        ]
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return [
            f"{key} is {_show(value)}, which has host bits set, but it must be a "
            f"network address; did you mean {str(loose)!r}?"
        ]

    clash = overlaps(ipaddress.IPv4Network(value))
    if clash:
        return [
            f"{key} is {_show(value)}, which overlaps this machine's own "
            f"address{'es' if len(clash) > 1 else ''} {_join(clash[:3])}, but it "
            "must be a network the host does not use; pick one inside "
            "198.18.0.0/15 that no interface has, such as '198.18.0.0/16'."
        ]

    # Pair i takes the network address plus 2i+1 and 2i+2; the network and
    # broadcast addresses stay unused.
    usable = max(loose.num_addresses - 2, 0)
    if usable < 2 * largest:
        prefix = 32 - math.ceil(math.log2(2 * largest + 2))
        bigger = (
            loose.supernet(new_prefix=prefix) if prefix < loose.prefixlen else loose
        )
        return [
            f"{key} is {_show(value)}, which holds {usable} usable addresses, but "
            f"the largest pair count ({largest}, in {where}) needs {2 * largest}; "
            f"use a /{prefix} or larger, such as {str(bigger)!r}."
        ]
    return []


def _auto_mss_problems(matrix: list[dict[str, Any]]) -> list[str]:
    """With mss 'auto', a TCP cell's MTU - 40 must be an MSS iperf3 accepts."""
    problems = []
    for i, sub in enumerate(matrix):
        if "tcp" not in sub["protocol"]:
            continue
        for j, mtu in enumerate(sub["mtu"]):
            if mtu - 40 > IPERF_MAX_MSS:
                problems.append(
                    f"config key 'matrix[{i}].mtu[{j}]' is {mtu}, which with "
                    f"protocol tcp and iperf.mss 'auto' asks iperf3 for an MSS of "
                    f"{mtu - 40}, but iperf3 allows at most {IPERF_MAX_MSS}; set "
                    f"iperf.mss to a number from 88 to {IPERF_MAX_MSS}, or keep TCP "
                    f"MTUs at or below {IPERF_MAX_MSS + 40}."
                )
    return problems


def _fill_defaults(data: dict[str, Any], node: dict[str, Any]) -> None:
    """Set every missing key that has a schema default, recursively."""
    for key, sub in node.get("properties", {}).items():
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
        value = data.get(key)
        if isinstance(value, dict) and sub.get("type") == "object":
            _fill_defaults(value, sub)
        if isinstance(value, list) and sub.get("type") == "array":
            for item in value:
                if isinstance(item, dict):
                    _fill_defaults(item, sub.get("items", {}))


def _error_order(error: jsonschema.ValidationError) -> tuple[Any, ...]:
    """Order errors by where they are in the config, as a reader meets them."""
    where = [
        (0, part, "") if isinstance(part, int) else (1, 0, str(part))
        for part in error.absolute_path
    ]
    return (*where, (2, 0, str(error.validator)))


def _key(path: Iterable[Any]) -> str:
    """Render a jsonschema path as the key a user reads in YAML."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "(top level)"


def _show(value: Any) -> str:
    """Render a config value for a message, as YAML would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str | int | float):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):  # keys json cannot write, such as dates
            text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    """Say what sort of value this is, as ', a string' (nothing for true/null)."""
    if isinstance(value, bool) or value is None:
        return ""
    word = next((w for t, w in _KINDS if isinstance(value, t)), type(value).__name__)
    return f", {word}"


# Ordered so that a subclass (datetime of date) comes before its base.
_KINDS: tuple[tuple[type, str], ...] = (
    (str, "a string"),
    (int, "a whole number"),
    (float, "a decimal number"),
    (list, "a list"),
    (dict, "a mapping"),
    (dt.datetime, "a date and time"),
    (dt.date, "a date"),
)


def _join(words: list[str], last: str = "and") -> str:
    """Join words as 'a, b and c'."""
    return (
        words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"
    )


def _nearest(word: Any, choices: Iterable[Any]) -> str:
    """Return ' Did you mean X?' for a near miss (any letter case), else ''."""
    by_lower = {str(c).lower(): c for c in choices}
    match = difflib.get_close_matches(str(word).lower(), by_lower, n=1, cutoff=0.6)
    return f" Did you mean {_show(by_lower[match[0]])}?" if match else ""


def _allowed(rule: dict[str, Any]) -> str:
    """Say in words what a schema node allows."""
    if "x-allowed" in rule:
        return str(rule["x-allowed"]).strip()
    if "enum" in rule:
        values = rule["enum"]
        shown = ", ".join(_show(v) for v in values)
        return shown if len(values) == 1 else f"one of {shown}"
    for key in ("oneOf", "anyOf"):
        if key in rule:
            return " or ".join(_allowed(alternative) for alternative in rule[key])

    types = rule.get("type", [])
    words = []
    for name in [types] if isinstance(types, str) else types:
        if name == "integer":
            # Every integer in the schema has both bounds.
            low, high = rule.get("minimum"), rule.get("maximum")
            words.append(f"a whole number from {low} to {high}")
        elif name == "number" and "exclusiveMinimum" in rule:
            low, high = rule["exclusiveMinimum"], rule.get("maximum")
            words.append(f"a number above {low} and at most {high}")
        elif name == "number":
            low, high = rule.get("minimum"), rule.get("maximum")
            words.append(f"a number from {low} to {high}")
        elif name == "string":
            words.append("a non-empty string" if rule.get("minLength") else "a string")
        elif name == "object" and rule.get("required"):
            words.append(f"a mapping with {_join(rule['required'])}")
        elif name == "array":
            items = _allowed(rule.get("items", {}))
            words.append(f"a list in which each item is {items}")
        else:
            words.append(_TYPE_WORDS.get(name, name))
    return " or ".join(words) or "a value the schema allows"


_TYPE_WORDS = {"object": "a mapping", "null": "null", "boolean": "true or false"}


@cache
def _homes() -> dict[str, list[str]]:
    """Map every key name in the schema to where it may appear, in words."""
    top = schema()["properties"]
    homes: dict[str, list[str]] = {}
    for name, sub in top.items():
        homes.setdefault(name, []).append("at the top level")
        nested = sub.get("properties") or sub.get("items", {}).get("properties", {})
        where = f"in every entry of '{name}'" if "items" in sub else f"under '{name}'"
        for inner in nested:
            homes.setdefault(inner, []).append(where)
    return homes


def _explain(error: jsonschema.ValidationError) -> list[str]:
    """Turn one jsonschema error into sentences naming key, value and rule."""
    path = list(error.absolute_path)
    key = _key(path)
    value: Any = error.instance
    rule = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    at = "at the top level" if not path else f"under '{key}'"

    if kind == "additionalProperties":
        allowed = sorted(rule.get("properties", {}))
        lines = []
        for extra in sorted((k for k in value if k not in allowed), key=str):
            # A key put at the wrong level is a likelier slip than a typo.
            elsewhere = [h for h in _homes().get(str(extra), []) if h != at]
            hint = (
                f" {_show(extra)} belongs {_join(elsewhere, 'or')}."
                if elsewhere
                else _nearest(extra, allowed)
            )
            lines.append(
                f"config key {_key([*path, str(extra)])!r} is not a known key; allowed "
                f"{at}: {', '.join(allowed)}.{hint}"
            )
        return lines
    if kind == "required":
        needed = rule.get("required", [])
        props = rule.get("properties", {})
        return [
            f"config key {_key([*path, name])!r} is missing, but "
            f"{'the config' if not path else repr(key)} must give "
            f"{_join(needed)}; {name} must be {_allowed(props.get(name, {}))}."
            for name in needed
            if name not in value
        ]
    if kind == "minItems":
        return [
            f"config key '{key}' is an empty list, but it needs at least "
            f"{rule['minItems']} item; each must be {_allowed(rule.get('items', {}))}."
        ]
    if kind == "uniqueItems":
        return [f"config key '{key}' {_repeat(value)}"]
    if kind == "type":
        return [
            f"config key '{key}' is {_show(value)}{_kind(value)}, but it must be "
            f"{_allowed(rule)}{_type_hint(value, rule)}."
        ]
    if kind in (
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "pattern",
        "minLength",
        "oneOf",
    ):
        nearest = _nearest(value, rule["enum"]) if kind == "enum" else ""
        return [
            f"config key '{key}' is {_show(value)}, but it must be "
            f"{_allowed(rule)}.{nearest}"
        ]
    return [
        f"config key '{key}' is {_show(value)}, which is not allowed: {error.message}."
    ]


def _repeat(values: list[Any]) -> str:
    """Name the first value a list repeats."""
    for i, value in enumerate(values):
        for earlier in values[:i]:
            # JSON Schema, like Python, holds 1 == 1.0 but, unlike it, 1 != true.
            if earlier == value and isinstance(earlier, bool) == isinstance(
                value, bool
            ):
                return (
                    f"lists {_show(value)} more than once, but each value may appear "
                    "only once; remove the repeat."
                )
    return "repeats a value, but each value may appear only once; remove the repeat."


def _type_hint(value: Any, rule: dict[str, Any]) -> str:
    """Suggest the likely fix for a value of the wrong type."""
    types = rule.get("type", [])
    wanted = {types} if isinstance(types, str) else set(types)
    if isinstance(value, bool):
        if "string" in wanted and "integer" not in wanted:
            return (
                "; YAML reads yes, no, on, off, true and false as true/false, so put "
                "quotes around it if you meant text"
            )
        return ""
    if "integer" in wanted and isinstance(value, float) and value.is_integer():
        return f"; write {int(value)}, without the decimal point"
    if "integer" in wanted and isinstance(value, str) and value.strip().isdigit():
        return f"; write {value.strip()} without quotes"
    if "array" in wanted and isinstance(value, str | int | float):
        flow = yaml.safe_dump([value], default_flow_style=True).strip()
        return f"; write {flow} for a list of one"
    if "array" in wanted and isinstance(value, dict):
        return "; start each entry with '- '"
    if "object" in wanted and value is None:
        return "; remove the key to use the defaults"
    return ""


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Describe a YAML syntax error with its line and column."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"is not valid YAML: {problem}."
    return (
        f"is not valid YAML: {problem} at line {mark.line + 1}, column "
        f"{mark.column + 1}; fix the syntax there (keys and values as 'key: value', "
        "nested keys indented with spaces)."
    )
