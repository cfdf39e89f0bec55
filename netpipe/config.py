"""Reading and validating a sweep configuration.

The JSON schema in ``netpipe/schemas/config.schema.yaml`` (linked from
``workflow/schemas/``) is the single source of the rules; this module applies
it, fills in defaults, adds the checks a schema cannot express (address pool
size, interface names, known drivers) and turns every violation into a
sentence naming the key, the value and what is allowed. The Snakefile and the
``netpipe`` command both go through :func:`validate`, so a config is rejected
the same way with or without Snakemake, before anything is provisioned.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from netpipe.errors import ConfigError
from netpipe.naming import validate_ifname


@cache
def schema() -> dict[str, Any]:
    """Return the configuration's JSON schema."""
    text = resources.files("netpipe").joinpath("schemas/config.schema.yaml")
    return yaml.safe_load(text.read_text())


@dataclass(frozen=True)
class IperfSettings:
    """How iperf3 runs in every cell."""

    binary: str
    duration_s: int
    omit_s: int
    udp_rate: str
    mss: int | str
    base_port: int


@dataclass(frozen=True)
class NetworkSettings:
    """Network resources netpipe may use."""

    address_pool: ipaddress.IPv4Network
    parent: str | None


@dataclass(frozen=True)
class Config:
    """A validated sweep configuration."""

    matrix: tuple[dict[str, Any], ...]
    repetitions: int
    iperf: IperfSettings
    network: NetworkSettings
    raw: dict[str, Any]


def load(path: str | Path) -> Config:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    return validate(data)


def validate(data: Any) -> Config:
    """Validate a config mapping (as Snakemake's ``config``) and fill defaults."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"the config must be a mapping of keys to values, got {_show(data)}."
        )
    data = copy.deepcopy(data)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=_error_rank)
    if errors:
        raise ConfigError(_explain(errors[0], data))

    _fill_defaults(data, schema())
    iperf = IperfSettings(**{**data["iperf"], "udp_rate": str(data["iperf"]["udp_rate"])})
    network = NetworkSettings(
        address_pool=_parse_pool(data["network"]["address_pool"]),
        parent=data["network"]["parent"],
    )
    if network.parent is not None:
        validate_ifname(network.parent, key="network.parent")
    config = Config(
        matrix=tuple(data["matrix"]),
        repetitions=data["repetitions"],
        iperf=iperf,
        network=network,
        raw=data,
    )
    _check_semantics(config)
    return config


def _check_semantics(config: Config) -> None:
    """Checks across keys that the schema cannot express."""
    from netpipe.drivers import known_drivers

    known = known_drivers()
    for i, sub in enumerate(config.matrix):
        for j, name in enumerate(sub["driver"]):
            if name not in known:
                hint = _nearest(name, known)
                raise ConfigError(
                    f"config key 'matrix[{i}].driver[{j}]': unknown driver "
                    f"{name!r}; allowed: {', '.join(sorted(known))}.{hint}"
                )

    largest = max(max(sub["pairs"]) for sub in config.matrix)
    usable = config.network.address_pool.num_addresses - 2
    if usable < 2 * largest:
        raise ConfigError(
            f"config key 'network.address_pool': {str(config.network.address_pool)!r}"
            f" has {max(usable, 0)} usable addresses, but the largest pair count "
            f"({largest}) needs {2 * largest}; use a larger network such as "
            "198.18.0.0/16."
        )
    top_port = config.iperf.base_port + largest - 1
    if top_port > 65535:
        raise ConfigError(
            f"config key 'iperf.base_port': {config.iperf.base_port} plus "
            f"{largest} pairs would need port {top_port}; allowed ports end at "
            "65535."
        )


def _parse_pool(value: str) -> ipaddress.IPv4Network:
    """Parse the address pool, which must be an IPv4 network."""
    try:
        pool = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ConfigError(
            f"config key 'network.address_pool': {value!r} is not an IPv4 network "
            f"({exc}); expected CIDR notation such as 198.18.0.0/16."
        ) from exc
    return pool


def _fill_defaults(data: dict[str, Any], node: dict[str, Any]) -> None:
    """Set every missing key that has a schema default, recursively."""
    for key, sub in node.get("properties", {}).items():
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
        if isinstance(data.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(data[key], sub)


def _error_rank(error: jsonschema.ValidationError) -> tuple[int, str]:
    """Order errors so that the most specific, first-located one is reported."""
    return (-len(error.absolute_path), json.dumps(list(error.absolute_path)))


def _key(path: Any) -> str:
    """Render a jsonschema path as the key a user reads in YAML."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "(top level)"


def _show(value: Any) -> str:
    """Render a config value for a message."""
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value)


def _nearest(word: str, choices: Any) -> str:
    """Return ' Did you mean X?' for a near miss, else ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def _explain(error: jsonschema.ValidationError, data: Any) -> str:
    """Turn one jsonschema error into a sentence naming key, value and rule."""
    key = _key(error.absolute_path)
    value = error.instance
    rule = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator

    if kind == "additionalProperties":
        allowed = sorted(rule.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        where = f"'{key}'" if error.absolute_path else "the top level"
        return (
            f"config key {extra[0]!r} under {where} is not a known key; allowed: "
            f"{', '.join(allowed)}.{_nearest(str(extra[0]), allowed)}"
        )
    if kind == "required":
        missing = [k for k in rule.get("required", []) if k not in value]
        where = f"'{key}'" if error.absolute_path else "the top level"
        return f"config key {missing[0]!r} is missing under {where}; it is required."
    if kind == "enum":
        return (
            f"config key '{key}': {_show(value)} is not allowed; allowed: "
            f"{', '.join(map(str, rule['enum']))}."
            f"{_nearest(str(value), map(str, rule['enum']))}"
        )
    if kind in ("minimum", "maximum"):
        low, high = rule.get("minimum"), rule.get("maximum")
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        return f"config key '{key}': {_show(value)} is out of range; expected {span}."
    if kind == "type":
        want = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
        return (
            f"config key '{key}': {_show(value)} is a {type(value).__name__}, but "
            f"it must be {' or '.join(_TYPE_WORDS.get(t, t) for t in want)}."
        )
    if kind == "minItems":
        return f"config key '{key}': the list is empty; give at least one value."
    if kind == "uniqueItems":
        seen: set[str] = set()
        dup = next(v for v in map(json.dumps, value) if v in seen or seen.add(v))
        return f"config key '{key}': the value {dup} appears twice; list each once."
    if kind == "pattern":
        return (
            f"config key '{key}': {_show(value)} does not have the allowed form "
            f"({rule.get('description', 'pattern ' + rule['pattern']).strip()})."
        )
    if kind == "oneOf":
        return (
            f"config key '{key}': {_show(value)} is not allowed; "
            f"{rule.get('description', error.message).strip()}"
        )
    return f"config key '{key}': {_show(value)} is not allowed: {error.message}."


_TYPE_WORDS = {
    "integer": "a whole number",
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
    "boolean": "true or false",
}
