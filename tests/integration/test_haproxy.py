"""Two relays behind HAProxy, as contrib/haproxy/pyrycode-relay.cfg runs
them: a binary and its phones always meet on the same relay.

The test runs the contrib file itself, with its TLS bind and server lines
replaced by loopback addresses and maxconn cut to this machine's fd limit,
and checks that every server-id's claim and phones land on one relay, that
both relays get ids, that messages route through the proxy both ways, and
that the relays see the client's address from X-Forwarded-For rather than
HAProxy's.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import wsclient as W
from conftest import free_port, new_id, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = os.path.join(HERE, "..", "..", "contrib", "haproxy",
                   "pyrycode-relay.cfg")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                reason="haproxy is not installed")


def _config(port, relays):
    text = open(CFG).read()
    # this machine's descriptor limit is far below a production host's
    text = re.sub(r"maxconn \d+", "maxconn 2000", text)
    text = re.sub(r"(?m)^\s*bind .*$", "    bind 127.0.0.1:%d" % port, text)
    text = re.sub(r"(?m)^\s*server .*\n", "", text)
    servers = "".join("    server relay%d 127.0.0.1:%d check inter 500ms\n"
                      % (i + 1, r.port) for i, r in enumerate(relays))
    return text.rstrip("\n") + "\n" + servers


def _up(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def sharded(relay, tmp_path):
    relays = [relay(workers=1, extra=["--trust-x-forwarded-for"])
              for _ in range(2)]
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(_config(port, relays))
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _up(port), timeout=10, what="haproxy listening")
        # both relays pass HAProxy's health check before traffic starts
        time.sleep(1.5)
        yield port, relays
    finally:
        proc.terminate()
        proc.wait(10)


def _connect(port, path, headers):
    ws = W.connect("127.0.0.1", port, path, headers)
    assert isinstance(ws, W.WebSocket), ws
    return ws


def test_a_binary_and_its_phones_meet_on_one_relay_behind_haproxy(sharded):
    port, relays = sharded
    ids = [new_id() for _ in range(12)]
    peers = []
    for sid in ids:
        b = _connect(port, "/v1/server", {"x-pyrycode-server": sid,
                                          "x-pyrycode-version": "1.0",
                                          "user-agent": "pyry-test/1"})
        wait_for(lambda: any(r.log_lines("server_claimed", server_id=sid)
                             for r in relays), what="claim of " + sid)
        ps = [_connect(port, "/v1/client", {"x-pyrycode-server": sid,
                                            "user-agent": "phone-test/1"})
              for _ in range(2)]
        peers.append((sid, b, ps))

    for sid, b, ps in peers:
        for n, p in enumerate(ps):
            p.send_text(b'{"n":%d}' % n)
            env = json.loads(b.recv_text())
            assert env["frame"] == {"n": n}
            b.send_text(b'{"conn_id":"%s","frame":{"back":%d}}'
                        % (env["conn_id"].encode(), n))
            assert p.recv_text() == b'{"back":%d}' % n

    # every id lives on exactly one relay, its phones with it
    homes = []
    for sid, b, ps in peers:
        holders = [i for i, r in enumerate(relays)
                   if r.log_lines("server_claimed", server_id=sid)]
        assert len(holders) == 1, (sid, holders)
        h = holders[0]
        assert len(relays[h].log_lines("phone_registered",
                                       server_id=sid)) == 2
        assert not relays[1 - h].log_lines("phone_registered",
                                           server_id=sid)
        homes.append(h)
        # the relay saw the client's address, not HAProxy's
        remote = relays[h].log_lines("server_claimed",
                                     server_id=sid)[-1]["remote"]
        assert remote == b.source_ip, (remote, b.source_ip)
    assert set(homes) == {0, 1}, homes

    assert sum(r.healthz()["connected_binaries"] for r in relays) == 12
    assert sum(r.healthz()["connected_phones"] for r in relays) == 24
    for sid, b, ps in peers:
        for w in [b] + ps:
            w.close()
