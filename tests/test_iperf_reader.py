"""Tests for netpipe.iperf.reader: one per iperf3 version difference it handles.

Inputs live in tests/data/iperf: files named 3.12-* are real iperf3 3.12 output
captured on loopback; the others are small hand-written inputs in the format
that iperf3's source prints for the version in their name.
"""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from netpipe.iperf.reader import IperfResult, parse_file, parse_text

DATA = Path(__file__).parent / "data" / "iperf"
FIGURES = (
    "duration_s",
    "sent_bps",
    "received_bps",
    "retransmits",
    "cpu_host_pct",
    "cpu_remote_pct",
    "jitter_ms",
    "lost_packets",
    "packets",
    "lost_percent",
)


def text(name: str) -> str:
    return (DATA / name).read_text()


def assert_no_figures(result: IperfResult) -> None:
    assert [getattr(result, name) for name in FIGURES] == [None] * len(FIGURES)


def test_tcp_takes_sent_from_sum_sent_and_received_from_sum_received():
    result = parse_file(DATA / "3.12-tcp-client-server-output.json")
    end = json.loads(text("3.12-tcp-client-server-output.json"))["end"]

    assert result.status == "ok"
    assert result.error is None
    assert (result.version, result.protocol, result.streams) == ("3.12", "tcp", 1)
    assert result.sent_bps == end["sum_sent"]["bits_per_second"]
    assert result.received_bps == end["sum_received"]["bits_per_second"]
    assert result.retransmits == end["sum_sent"]["retransmits"]
    assert result.duration_s == end["sum_sent"]["seconds"]
    assert result.cpu_host_pct == end["cpu_utilization_percent"]["host_total"]
    assert result.cpu_remote_pct == end["cpu_utilization_percent"]["remote_total"]
    assert result.jitter_ms is None and result.lost_packets is None
    assert result.flags == ()


def test_udp_from_3_11_takes_received_rate_from_sum_received():
    result = parse_file(DATA / "3.12-udp-client.json")
    end = json.loads(text("3.12-udp-client.json"))["end"]

    assert result.status == "ok"
    assert result.protocol == "udp"
    assert result.sent_bps == end["sum_sent"]["bits_per_second"]
    assert result.received_bps == end["sum_received"]["bits_per_second"]
    assert result.received_bps != result.sent_bps
    assert result.jitter_ms == end["sum_received"]["jitter_ms"]
    assert (result.lost_packets, result.packets) == (0, 382)
    assert result.retransmits is None
    assert result.flags == ()


def test_udp_before_3_11_takes_received_rate_from_server_output():
    client = parse_text(text("3.9-udp-client.json"))
    result = parse_text(
        text("3.9-udp-client.json"), server_text=text("3.9-udp-server.json")
    )

    # The server's end.sum says 0 bytes (it prints before the results
    # exchange); the rate is its 1527 received datagrams over its duration.
    assert result.status == "ok"
    assert result.received_bps == pytest.approx(1527 * 1448 * 8 / 2.000612)
    assert (
        result.sent_bps == client.sent_bps == pytest.approx(1727 * 1448 * 8 / 2.000043)
    )
    assert (result.lost_packets, result.packets) == (200, 1727)
    assert result.lost_percent == pytest.approx(100 * 200 / 1727)
    assert "received-from-server-output" in result.flags
    assert "received-from-intervals" in result.flags


def test_udp_before_3_11_takes_received_rate_from_embedded_server_output_json():
    result = parse_file(DATA / "3.9-udp-client-server-output.json")

    assert result.received_bps == pytest.approx(1527 * 1448 * 8 / 2.000612)
    assert "received-from-server-output" in result.flags


def test_udp_before_3_11_without_server_output_never_reports_the_sender_rate():
    result = parse_file(DATA / "3.9-udp-client.json")

    assert result.status == "ok"
    assert result.received_bps is None
    assert result.sent_bps == pytest.approx(1727 * 1448 * 8 / 2.000043)
    assert result.lost_packets == 200
    assert result.flags == ("udp-receiver-rate-unknown",)


def test_udp_reverse_before_3_11_takes_received_rate_from_the_client_intervals():
    result = parse_file(DATA / "3.9-udp-reverse-client.json")

    assert result.received_bps == pytest.approx(1527 * 1448 * 8 / 2.000612)
    assert result.flags == ("received-from-intervals",)


def test_interval_derived_rate_matches_iperf3_own_receiver_figure_with_omit():
    # Real 3.12 output run with -O 1: remove the 3.11+ keys from the server's
    # view to make it look like an older server, and compare with iperf3's
    # own receiver figure.
    doc = json.loads(text("3.12-udp-omit-client-server-output.json"))
    truth = doc["end"]["sum_received"]["bits_per_second"]
    server = doc.pop("server_output_json")
    for key in ("sum_sent", "sum_received"):
        del doc["end"][key]
        del server["end"][key]
    assert any(interval["sum"]["omitted"] for interval in server["intervals"])

    result = parse_text(json.dumps(doc), server_text=json.dumps(server))

    assert result.received_bps == pytest.approx(truth, rel=1e-9)
    assert result.received_bps != result.sent_bps


def test_server_output_of_another_test_is_not_used():
    server = text("3.9-udp-server.json").replace(
        "oldstyleudpcookie0000000000000000000", "someothertestcookie00000000000000000"
    )

    result = parse_text(text("3.9-udp-client.json"), server_text=server)

    assert result.received_bps is None
    assert "server-output-mismatch" in result.flags
    assert "udp-receiver-rate-unknown" in result.flags


@pytest.mark.parametrize(
    ("server_text", "flag"),
    [
        (
            '{"start": {}, "intervals": [], "end": {}, '
            '"error": "the client has unexpectedly closed the connection"}',
            "server-output-error",
        ),
        ('{"start": {"version": "iperf 3.9"}, "interv', "server-output-unusable"),
    ],
)
def test_server_output_with_an_error_or_broken_json_is_not_used(server_text, flag):
    result = parse_text(text("3.9-udp-client.json"), server_text=server_text)

    assert result.status == "ok"
    assert result.received_bps is None
    assert flag in result.flags


def test_error_key_is_failed_even_with_partial_end_data():
    result = parse_file(DATA / "3.9-tcp-control-socket-closed.json")

    assert result.status == "failed"
    assert result.error == "control socket has closed unexpectedly"
    assert result.version == "3.9"
    assert_no_figures(result)
    assert result.flags == ("partial-end-data",)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (
            "3.12-connection-refused.json",
            "unable to connect to server: Connection refused",
        ),
        ("3.12-server-busy.json", "the server is busy running a test. try again later"),
    ],
)
def test_connection_refused_and_server_busy_are_failed_with_iperf3_error(name, error):
    result = parse_file(DATA / name)

    assert result.status == "failed"
    assert result.error == error
    assert_no_figures(result)
    assert result.flags == ()


@pytest.mark.parametrize("output", ["", "  \n"])
def test_empty_output_is_failed_with_a_sentence(output):
    result = parse_text(output)

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("The iperf3 client output is empty")
    assert_no_figures(result)


def test_truncated_output_is_failed_without_numbers():
    result = parse_file(DATA / "3.12-tcp-client-truncated.json")

    assert result.status == "failed"
    assert result.error is not None
    assert "not valid JSON" in result.error and "line 72" in result.error
    assert result.version is None
    assert_no_figures(result)


def test_two_json_documents_back_to_back_are_failed():
    result = parse_file(DATA / "tcp-client-printed-twice.json")

    assert result.status == "failed"
    assert result.error is not None
    assert "more than one JSON document" in result.error
    assert "line 250" in result.error
    assert_no_figures(result)


@pytest.mark.parametrize(
    "output",
    ["iperf3: error - unable to connect to server: Connection refused\n", "[1, 2, 3]"],
)
def test_output_that_holds_no_json_object_is_failed(output):
    result = parse_text(output)

    assert result.status == "failed"
    assert result.error is not None
    assert "holds no JSON object" in result.error


def test_document_without_end_is_failed_naming_what_is_missing():
    result = parse_file(DATA / "no-end.json")

    assert result.status == "failed"
    assert result.error is not None
    assert "'end'" in result.error and "'start'" not in result.error
    assert (result.version, result.protocol) == ("3.9", "tcp")
    assert_no_figures(result)


def test_end_without_any_summary_is_failed():
    doc = json.loads(text("3.12-udp-client.json"))
    doc["end"] = {"cpu_utilization_percent": doc["end"]["cpu_utilization_percent"]}

    result = parse_text(json.dumps(doc))

    assert result.status == "failed"
    assert result.error is not None
    assert "no summary" in result.error
    assert_no_figures(result)


def test_bidir_before_3_11_keeps_the_first_client_to_server_duplicate():
    result = parse_file(DATA / "3.7-tcp-bidir-client.json")

    # First sum_sent: 1310720000 bytes in 1.000041 s, 3 retransmits; the
    # second (server to client) has 12 and must not win, as json would make it.
    assert result.status == "ok"
    assert result.sent_bps == pytest.approx(1310720000 * 8 / 1.000041)
    assert result.received_bps == pytest.approx(1309671424 * 8 / 1.000322)
    assert result.retransmits == 3
    assert result.flags == ("bidirectional", "duplicate-keys")


def test_bidir_from_3_11_reads_the_client_to_server_keys():
    result = parse_file(DATA / "3.12-tcp-bidir-client.json")
    end = json.loads(text("3.12-tcp-bidir-client.json"))["end"]

    assert result.sent_bps == end["sum_sent"]["bits_per_second"]
    assert result.received_bps == end["sum_received"]["bits_per_second"]
    assert result.flags == ("bidirectional",)


def test_equal_repeated_keys_of_3_12_parallel_output_are_not_flagged():
    # 3.12 with -P 3 -R repeats sock_bufsize and its siblings with equal values.
    assert '"sock_bufsize"' in text("3.12-tcp-parallel-reverse-client.json")
    assert text("3.12-tcp-parallel-reverse-client.json").count('"sock_bufsize"') > 1

    result = parse_file(DATA / "3.12-tcp-parallel-reverse-client.json")

    assert result.status == "ok"
    assert result.streams == 3
    assert result.flags == ()


def test_repeated_top_level_end_is_failed_as_ambiguous():
    output = '{"start": {"version": "iperf 3.9"}, "end": {"sum": {}}, "end": {}}'

    result = parse_text(output)

    assert result.status == "failed"
    assert result.error is not None
    assert "repeats the top-level key(s) end" in result.error


def test_lost_percent_out_of_range_is_flagged_and_kept():
    result = parse_file(DATA / "3.1.7-udp-loss-over-100.json")

    assert result.lost_percent == pytest.approx(100 * 1900 / 1727)
    assert "lost-percent-out-of-range" in result.flags
    assert "lost-exceeds-packets" in result.flags


def test_negative_lost_packets_are_flagged_and_kept():
    result = parse_file(DATA / "3.1.2-udp-omit-negative-loss.json")

    assert result.lost_packets == -12
    assert "negative-lost-packets" in result.flags
    assert "lost-percent-out-of-range" in result.flags


def test_old_cjson_exponent_floats_and_bare_nan_are_read():
    result = parse_file(DATA / "3.0.11-udp-client-nothing-received.json")

    assert result.status == "ok"
    assert result.version == "3.0.11"
    assert result.sent_bps == 9.999935e09
    assert result.lost_percent is None  # printed as bare -nan
    assert result.packets == 0
    assert "old-float-format" in result.flags
    assert "non-finite-number" in result.flags
    assert "udp-receiver-rate-unknown" in result.flags


def test_old_cjson_integers_where_floats_are_expected_are_read_as_floats():
    result = parse_file(DATA / "3.0.11-udp-client-nothing-received.json")

    assert result.jitter_ms == 0.0
    assert isinstance(result.jitter_ms, float)


@pytest.mark.parametrize("token", ["nan", "-nan", "inf", "-inf", "NaN", "null"])
def test_non_finite_figures_become_none_and_are_flagged(token):
    doc = text("3.12-udp-client.json").replace(
        '"jitter_ms":\t0.011584950842888467', f'"jitter_ms":\t{token}'
    )

    result = parse_text(doc)

    assert result.status == "ok"
    assert result.jitter_ms is None
    assert "non-finite-number" in result.flags


def test_nan_inside_a_string_is_left_alone():
    doc = text("3.12-udp-client.json").replace("Linux vm", "Linux nan inf vm")

    result = parse_text(doc)

    assert result.status == "ok"
    assert result.flags == ()


def test_single_stream_3_0_2_without_sums_reads_the_stream_entries():
    result = parse_file(DATA / "3.0.2-tcp-client-single-stream.json")

    assert result.status == "ok"
    assert result.sent_bps == 9.448725e09
    assert result.received_bps == 9.447047e09
    assert result.retransmits == 17
    assert "summary-from-streams" in result.flags


def test_text_around_the_json_is_skipped_and_flagged():
    result = parse_file(DATA / "udp-client-warning-before-json.json")
    clean = parse_file(DATA / "3.12-udp-client.json")

    assert result.status == "ok"
    assert result.received_bps == clean.received_bps
    assert result.flags == ("text-around-json",)


def test_server_json_read_as_client_output_is_flagged():
    result = parse_file(DATA / "3.12-udp-server.json")

    assert "server-side-output" in result.flags


def test_non_numeric_figure_becomes_none_and_is_flagged():
    doc = json.loads(text("3.12-tcp-client-server-output.json"))
    doc["end"]["sum_sent"]["retransmits"] = "many"

    result = parse_text(json.dumps(doc))

    assert result.retransmits is None
    assert "invalid-number" in result.flags


def test_to_record_is_json_ready_with_exactly_the_public_fields():
    result = parse_file(DATA / "3.9-udp-client-server-output.json")

    record = result.to_record()

    assert list(record) == [field.name for field in dataclasses.fields(IperfResult)]
    assert record["flags"] == ["received-from-intervals", "received-from-server-output"]
    assert json.loads(json.dumps(record, allow_nan=False)) == record


def test_result_is_frozen():
    result = parse_text("")

    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "ok"  # type: ignore[misc]


def test_every_sample_input_gives_finite_figures_or_none():
    for path in sorted(DATA.glob("*.json")):
        result = parse_file(path)
        assert result.status in ("ok", "failed"), path.name
        assert (result.status == "failed") == (result.error is not None), path.name
        for name in FIGURES:
            value = getattr(result, name)
            assert value is None or math.isfinite(value), (path.name, name)
