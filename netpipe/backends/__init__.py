"""Backends make the endpoints that stand in for containers.

Only ``netns`` exists so far: every endpoint is a bare network namespace.
A backend creates and removes endpoints, hands out a netlink socket inside
each one, and starts processes in them.
"""

from netpipe.backends.netns import NetnsBackend, Process

__all__ = ["NetnsBackend", "Process"]
