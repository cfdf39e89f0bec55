"""Names of what netpipe creates, and validation of names users give.

Everything netpipe creates is named ``np<token>...`` where the token is unique
per cell run, so a leftover can be traced to the run that made it and names
never collide with another run's. Interface names are held to what the kernel
accepts (``dev_valid_name``): 1 to 15 bytes, no '/', ':' or white space, not
'.' or '..'.
"""

from __future__ import annotations

import re
import secrets

from netpipe.errors import ConfigError

PREFIX = "np"
IFNAMSIZ = 16  # the kernel's buffer, including the terminating NUL
_IFNAME_BAD = re.compile(r"[/:\s]")
_NETNS_OK = re.compile(r"^np[a-z0-9]{1,30}$")


def new_token() -> str:
    """Return a fresh 4-character token for one cell run's names."""
    return secrets.token_hex(2)


def validate_ifname(name: str, *, key: str) -> str:
    """Reject an interface name the kernel would refuse, naming the config key."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"config key {key!r}: an interface name must not be empty.")
    if len(name.encode()) > IFNAMSIZ - 1:
        raise ConfigError(
            f"config key {key!r}: interface name {name!r} has {len(name.encode())} "
            f"characters; the kernel allows at most {IFNAMSIZ - 1}."
        )
    if name in (".", "..") or _IFNAME_BAD.search(name):
        raise ConfigError(
            f"config key {key!r}: interface name {name!r} is not allowed; it must "
            "not be '.' or '..' nor contain '/', ':' or white space."
        )
    return name


def check_own_name(name: str) -> str:
    """Assert that a name netpipe is about to create is one of its own."""
    if not _NETNS_OK.match(name) or len(name) > IFNAMSIZ - 1:
        raise ValueError(f"internal name {name!r} is not a valid netpipe name")
    return name
