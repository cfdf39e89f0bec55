"""iperf3: the command lines netpipe runs and the reader of their JSON output."""
