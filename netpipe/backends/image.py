"""The default endpoint image: this machine's own iperf3, imported into Docker.

No registry is needed: the image holds the host's iperf3 binary, ``sleep``
(the container's idle command), the shared libraries both load and the
dynamic loader, each at the path the binaries ask for, plus a world-writable
``/tmp`` (iperf3 keeps its stream buffers in temporary files there). Its tag
is a digest of those files, so it is built once per iperf3 build and again
only when the host's iperf3 or its libraries change; the image measures the
same iperf3 the netns backend runs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from netpipe.errors import ProvisionError

log = logging.getLogger(__name__)

REPOSITORY = "netpipe-iperf3"
IDLE = "sleep"
LABEL = "io.netpipe.image"
# "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" or
# "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


def shared_libraries(binary: str) -> list[str]:
    """Return the absolute paths of every shared object ``binary`` loads."""
    ldd = shutil.which("ldd")
    if ldd is None:
        raise ProvisionError(
            "cannot build the iperf3 image: ldd is missing (Debian package libc-bin)."
        )
    done = subprocess.run(
        [ldd, binary], capture_output=True, text=True, check=False, timeout=30
    )
    if done.returncode != 0:
        raise ProvisionError(
            f"cannot build the iperf3 image: ldd {binary} failed: "
            f"{(done.stderr or done.stdout).strip()[:200]}"
        )
    paths = []
    for line in done.stdout.splitlines():
        match = _LDD_LINE.match(line)
        if match:
            paths.append(match.group(1))
        elif "not found" in line:
            raise ProvisionError(
                f"cannot build the iperf3 image: {binary} needs a library this "
                f"machine lacks: {line.strip()}"
            )
    return paths


def image_files(iperf3: str) -> list[str]:
    """Every file the image holds, as absolute paths on this machine."""
    idle = shutil.which(IDLE)
    if idle is None:
        raise ProvisionError("cannot build the iperf3 image: `sleep` is missing.")
    files: list[str] = []
    for binary in (iperf3, idle):
        for path in (binary, *shared_libraries(binary)):
            if path not in files:
                files.append(path)
    return files


def image_tag(files: list[str]) -> str:
    """A tag naming the exact contents: a digest of every path and its bytes."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.encode() + b"\0")
        digest.update(Path(path).read_bytes())
    return f"{REPOSITORY}:host-{digest.hexdigest()[:16]}"


def rootfs_tar(files: list[str]) -> bytes:
    """A tar of the image's root file system: the files, their folders, /tmp."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folders = {"tmp"}
        for path in files:
            parent = Path(path).parent
            while str(parent) != "/":
                folders.add(str(parent).lstrip("/"))
                parent = parent.parent
        for folder in sorted(folders):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        for path in files:
            # Symbolic links (the loader's /lib64 entry) are stored as the
            # files they point to, so the image needs no link targets.
            data = Path(path).read_bytes()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = os.stat(path).st_mode & 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ensure_host_image(api: Any, iperf3: str) -> str:
    """Return the tag of the host-iperf3 image, importing it if it is missing."""
    files = image_files(iperf3)
    tag = image_tag(files)
    if api.images(name=tag, quiet=True):
        return tag
    log.info("building image %s from this machine's %s", tag, iperf3)
    repository, _, version = tag.partition(":")
    api.import_image_from_data(
        rootfs_tar(files),
        repository=repository,
        tag=version,
        changes=[
            f'CMD ["{shutil.which(IDLE)}", "infinity"]',
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            f"LABEL {LABEL}=host-iperf3",
        ],
    )
    return tag
