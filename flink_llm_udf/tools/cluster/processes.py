"""Processes and ports on this machine, read from Linux ``/proc``: find, watch, stop.

A standalone cluster's processes are found by what they carry (their command line, their
environment, the sockets they listen on), never by name, so a user's own Flink processes are
never mixed in.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "alive",
    "is_descendant",
    "listening_ports",
    "port_free",
    "port_range",
    "proc_files",
    "stat_after_name",
    "terminate",
    "wait_gone",
]

logger = logging.getLogger(__name__)

_LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


def port_free(port: int) -> bool:
    """Whether a server could bind ``port`` on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers that will bind it: a port held only by TIME_WAIT connections is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_range(spec: str) -> set[int]:
    """Flink's port-range syntax: ``9249``, ``9249-9260``, ``9249,9251-9253``."""
    ports: set[int] = set()
    for part in str(spec).split(","):
        low, _, high = part.strip().partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state on sockets that process ``pid`` holds."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def proc_files(name: str) -> list[tuple[int, bytes]]:
    """``(pid, /proc/<pid>/<name>)`` of every process readable now, by PID."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / name).read_bytes()))
            except OSError:
                continue  # gone, or not ours to read
    return sorted(found)


def stat_after_name(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent PID, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own dead child not yet reaped) is gone for our purposes.
    fields = stat_after_name(pid)
    return fields is not None and fields[0] != "Z"


def wait_gone(pids: Iterable[int], deadline: float) -> list[int]:
    """Wait until none of ``pids`` is :func:`alive` or ``deadline`` (monotonic) passes; those left."""
    left = [pid for pid in pids if alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if alive(pid)]
    return left


def is_descendant(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is ``pid``'s parent, grandparent, ..."""
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        fields = stat_after_name(pid)
        if fields is None:
            return False
        pid = int(fields[1])  # the parent PID
        if pid == ancestor:
            return True
    return False


def terminate(pids: Sequence[int], deadline: float) -> None:
    """SIGTERM ``pids``; SIGKILL those still alive at ``deadline`` (monotonic), and wait for them."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in wait_gone(pids, deadline):
        logger.warning("process %s ignored SIGTERM; killing it", pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(pids, time.monotonic() + 5.0)
