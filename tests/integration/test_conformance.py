"""RFC 6455 conformance of the relay's connection layer.

Runs the shared conformance probe (../shared/tools beside the source tree)
in --strict mode against tests/ws_echo, an echo server built on the same
conn.c the relay runs: every protocol error must produce a close frame with
the exact code, not just a dropped connection.
"""
import os
import socket
import subprocess
import sys
import time

import pytest

SRCDIR = os.environ.get(
    "RELAY_SRCDIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
PROBE = os.path.join(SRCDIR, "..", "shared", "tools",
                     "ws_conformance_probe.py")
ECHO = os.environ.get("RELAY_ECHO",
                      os.path.join(SRCDIR, "_build", "tests", "ws_echo"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not os.path.exists(PROBE),
                    reason="shared conformance probe not present")
def test_connection_layer_passes_strict_rfc6455_probe():
    port = _free_port()
    echo = subprocess.Popen([ECHO, str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        assert echo.stdout.readline().strip() == b"ready"
        out = subprocess.run(
            [sys.executable, PROBE, "127.0.0.1", str(port), "--strict",
             "--cap", "262144"],
            capture_output=True, text=True, timeout=300)
        last = out.stdout.strip().splitlines()[-1]
        assert out.returncode == 0, out.stdout[-3000:]
        assert last.endswith(" 0 failed"), last
    finally:
        echo.kill()
        echo.wait()
