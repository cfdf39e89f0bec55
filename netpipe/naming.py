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
    rule = (
        f"an interface name must have 1 to {IFNAMSIZ - 1} bytes, must not be '.' "
        "or '..', and must not contain '/', ':', white space or control characters"
    )
    if not isinstance(name, str):
        raise ConfigError(f"config key {key!r} is {name!r}, but {rule}.")
    size = len(name.encode())
    if size == 0:
        raise ConfigError(f"config key {key!r} is '' (empty), but {rule}.")
    if size > IFNAMSIZ - 1:
        raise ConfigError(
            f"config key {key!r} is {name!r}, which has {size} bytes, but the kernel "
            f"allows at most {IFNAMSIZ - 1} in an interface name."
        )
    # The kernel refuses white space itself; control characters it would take,
    # but a name with a NUL or an escape in it is never what a user meant.
    if name in (".", "..") or _IFNAME_BAD.search(name) or not name.isprintable():
        raise ConfigError(f"config key {key!r} is {name!r}, but {rule}.")
    return name


def check_own_name(name: str) -> str:
    """Assert that a name netpipe is about to create is one of its own."""
    if not _NETNS_OK.match(name) or len(name) > IFNAMSIZ - 1:
        raise ValueError(f"internal name {name!r} is not a valid netpipe name")
    return name
