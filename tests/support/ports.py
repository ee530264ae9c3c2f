"""A free TCP port on the loopback, for the servers tests and benchmarks start (xdist workers included)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just gave out and took back: free now, and not handed out again right away."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
