"""iperf3: the command lines netpipe runs and the reader of their JSON output."""

from netpipe.iperf.reader import IperfResult, parse_file, parse_text

__all__ = ["IperfResult", "parse_file", "parse_text"]
