"""No way in: no shell, names checked before the kernel sees them, no secrets shown."""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

import pytest

from netpipe.drivers import Endpoint, Plan
from netpipe.redact import SHOWN, redact
from tests.conftest import REPO
from tests.test_report import RAW, make_results

SOURCES = sorted(
    p
    for folder in ("netpipe", "benchmarks", "workflow", "tests")
    for p in (REPO / folder).rglob("*.py")
)


def shell_calls(path: Path) -> list[str]:
    """Calls that would hand a string to a shell."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in ("os.system", "os.popen", "subprocess.getoutput"):
            found.append(f"{path.name}:{node.lineno} {name}")
        for kw in node.keywords:
            if kw.arg == "shell" and not (
                isinstance(kw.value, ast.Constant) and kw.value.value is False
            ):
                found.append(f"{path.name}:{node.lineno} shell=")
    return found


def test_no_source_file_runs_a_shell() -> None:
    assert len(SOURCES) > 40
    assert [c for p in SOURCES for c in shell_calls(p)] == []


@pytest.mark.parametrize("suffix", ["../x", "a b", "x:1", "VS0", "x" * 20, "v-0"])
def test_a_name_the_kernel_would_refuse_or_that_is_not_ours_is_never_made(
    suffix: str,
) -> None:
    ep = Endpoint("npab12s0", "server", 0, ipaddress.IPv4Interface("198.18.0.1/24"))
    plan = Plan("ab12", 1500, [ep])

    with pytest.raises(ValueError, match="not a valid netpipe name"):
        plan.name(suffix)


def test_secret_values_are_redacted_but_key_paths_stay() -> None:
    config = {
        "nodes": [
            {
                "name": "b",
                "ssh": {"host": "b.lab", "key_file": "/root/.ssh/id_ed25519"},
                "password": "hunter2",
                "key_passphrase": "open sesame",
            }
        ],
        "iperf": {"duration_s": 3},
    }

    shown = redact(config)

    node = shown["nodes"][0]
    assert node["password"] == node["key_passphrase"] == SHOWN
    assert node["ssh"]["key_file"] == "/root/.ssh/id_ed25519"
    assert shown["iperf"] == {"duration_s": 3}
    assert config["nodes"][0]["password"] == "hunter2"  # noqa: S105  (untouched)


def test_the_report_never_shows_a_secret_from_the_config(tmp_path: Path) -> None:
    from netpipe.aggregate import find_cells
    from netpipe.report import build_report

    cells, summary, _ = make_results(tmp_path, find_cells(RAW)[:2])
    config = {"nodes": [{"name": "b", "password": "hunter2-in-config"}]}

    html = build_report(cells, summary, config, tmp_path / "r.html").read_text()

    assert "hunter2-in-config" not in html
    assert SHOWN in html
