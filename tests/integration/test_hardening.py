"""Hardening: the relay under abuse (SPEC.md sections 2, 7, 9, 10, 13, 15).

Per-IP upgrade rate limit, the global connection cap, slowloris heads,
oversized and malformed frames, slow peers (phone outbox, binary inbox,
bounded memory), a worker killed while it holds the registry lock, a storm
of garbage connections and descriptor exhaustion.  Every test checks the
exact status or close code, and that peers not involved keep working.
"""

import concurrent.futures
import json
import os
import random
import re
import resource
import signal
import socket
import stat
import struct
import subprocess
import threading
import time

import pytest

import conftest
import wsclient as W
from conftest import RELAY_BIN, new_id, wait_for

TEXT_PLAIN = "text/plain; charset=utf-8"
SERVER_CONFLICT = (4409, "server-id already claimed")
BACKLOG_FULL = (1011, "phone backlog full")
MAX_MSG = 262144
MIB = 1024 * 1024
RSS_BOUND = 200 * MIB


# ------------------------------------------------------------------ helpers

@pytest.fixture(scope="module")
def r(module_relay):
    """A relay shared by the tests that leave it as they found it."""
    return module_relay(workers=2, extra=["--grace-period", "2s",
                                          "--conflict-probe-timeout", "2s"])


def env_re(sid):
    return re.compile(rb'\{"conn_id":"(client-' + re.escape(sid.encode()) +
                      rb'-[0-9a-f]{8})","frame":(.*)\}\Z', re.S)


def unwrap(sid, msg):
    m = env_re(sid).match(msg)
    assert m, "not a relay envelope for %s: %r" % (sid, msg[:300])
    return m.group(1).decode(), m.group(2)


def notice(cid, code):
    return b'{"conn_id":"%s","close_code":%d}' % (cid.encode(), code)


def envelope(cid, frame):
    return b'{"conn_id":' + json.dumps(cid).encode() + b',"frame":' + \
        frame + b'}'


def hello(b, p, sid, payload=b'{"hello":true}'):
    """The phone speaks first, so the binary learns its conn_id."""
    p.send_text(payload)
    cid, frame = unwrap(sid, b.recv_text())
    assert frame == payload
    return cid


class Pair:
    """A binary and its phones; .check() proves both directions route."""

    def __init__(self, rl, phones=1):
        self.rl = rl
        self.sid = new_id()
        self.b = rl.claim(self.sid)
        self.phones = [rl.attach(self.sid) for _ in range(phones)]
        self.cids = [hello(self.b, p, self.sid) for p in self.phones]
        self.n = 0

    def check(self, timeout=10.0):
        for p, cid in zip(self.phones, self.cids):
            self.n += 1
            up = b'{"up":%d}' % self.n
            p.send_text(up)
            got_cid, got = unwrap(self.sid, self.b.recv_text(timeout))
            assert (got_cid, got) == (cid, up), (got_cid, got, cid, up)
            down = b'{"down":%d}' % self.n
            self.b.send_text(envelope(cid, down))
            assert p.recv_text(timeout) == down

    def close(self):
        for w in self.phones + [self.b]:
            w.close()


def assert_error(resp, status):
    assert isinstance(resp, W.HTTPResponse), \
        "expected HTTP %d, got an upgraded WebSocket" % status
    assert resp.status == status, resp
    assert resp.header("content-type") == TEXT_PLAIN, resp
    assert resp.header("connection", "").lower() == "close", resp
    assert resp.body, "error response must carry a short body: %r" % resp
    assert resp.eof, "relay did not close the socket after %d" % status


def raw_upgrade(rl, path, headers, rcvbuf=None, source_ip=None):
    """Upgrade on a plain socket without starting a reader, so the test
    decides when (and whether) the peer reads.  Returns (sock, resp, rest,
    key); wrap later with W.WebSocket(sock, resp, rest, key=key)."""
    ip = source_ip or W.random_loopback_ip()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((ip, 0))
    s.settimeout(10)
    s.connect((rl.host, rl.port))
    key = W.new_key()
    h = dict(headers)
    h["Sec-WebSocket-Key"] = key
    s.sendall(W.build_request(rl.host, rl.port, path, h))
    resp, rest = W.read_response(s, 10)
    assert resp.status == 101, resp
    return s, resp, rest, key


def rss_total(rl):
    """Sum of VmRSS (bytes) of the master and every worker."""
    total = 0
    for pid in [rl.proc.pid] + sorted(rl.worker_pids()):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def no_worker_exited(rl):
    lines = rl.log_lines("worker_exited")
    assert not lines, "a worker exited: %r\nlog tail:\n%s" % (
        lines, rl.log_text()[-3000:])


# ------------------------------------------------------- upgrade rate limit

def test_21st_upgrade_from_one_ip_gets_429_on_both_endpoints_across_workers(
        relay):
    rl = relay(workers=2)
    bystander = Pair(rl)
    ip = W.random_loopback_ip()
    t0 = time.monotonic()
    # 14 claims and 6 phones from one IP: 20 tokens, both endpoints.  The
    # per-worker SO_REUSEPORT listeners spread them over both workers.
    sids = [new_id() for _ in range(14)]
    bins = [rl.binary(s, source_ip=ip) for s in sids]
    for b in bins[:6]:
        b.ping_roundtrip()
    phones = [rl.phone(s, source_ip=ip) for s in sids[:6]]
    refused = [rl.connect("/v1/client", rl.client_headers(sids[0]),
                          source_ip=ip),
               rl.connect("/v1/server", rl.server_headers(new_id()),
                          source_ip=ip)]
    refused += [rl.connect(p, h, source_ip=ip) for p, h in
                [("/v1/server", rl.server_headers(new_id()))] * 3 +
                [("/v1/client", rl.client_headers(sids[1]))] * 3]
    spent = time.monotonic() - t0
    assert spent < 5.5, "setup too slow (%.1fs) for a 6 s refill" % spent
    for resp in refused:
        assert_error(resp, 429)
    rl.wait_log("rate_limited", remote=ip)
    # the 20 accepted requests really landed on both workers
    owners = {rl.wait_log("server_claimed", server_id=s)[-1]["pid"]
              for s in sids}
    assert len(owners) == 2, "all 14 claims landed on one worker %r; the " \
        "cross-worker sharing of the bucket was not exercised" % owners
    # what the IP had before the limit keeps working
    for s, b, p in zip(sids, bins, phones):
        cid = hello(b, p, s)
        b.send_text(envelope(cid, b'"ok"'))
        assert p.recv_text() == b'"ok"'
    # another IP is unaffected
    other = rl.claim(new_id())
    other.close()
    bystander.check()
    assert rl.healthz()["status"] == "ok"
    for w in bins + phones:
        w.close()
    bystander.close()


def test_with_trust_x_forwarded_for_the_leftmost_entry_is_the_bucket(relay):
    rl = relay(workers=2, extra=["--trust-x-forwarded-for"])
    bystander = Pair(rl)
    left = "198.51.100.%d" % random.randint(1, 254)
    used_ip = W.random_loopback_ip()
    # 20 requests from 20 different TCP peers, same left-most entry
    for i in range(20):
        h = {"user-agent": "x", "X-Forwarded-For": "%s, 10.0.0.%d" % (left, i)}
        resp = rl.connect("/v1/server" if i % 2 else "/v1/client", h,
                          source_ip=used_ip if i == 0 else None)
        assert isinstance(resp, W.HTTPResponse) and resp.status == 400, resp
    # a 21st with the same left-most entry, from yet another peer
    h = rl.client_headers(new_id())
    h["X-Forwarded-For"] = left
    assert_error(rl.connect("/v1/client", h), 429)
    h = rl.server_headers(new_id())
    h["X-Forwarded-For"] = "%s,203.0.113.9" % left
    assert_error(rl.connect("/v1/server", h), 429)
    rl.wait_log("rate_limited")
    # the TCP peer of a spent request, with another left-most entry (the
    # spent one further right), is not limited
    h = rl.server_headers(new_id())
    h["X-Forwarded-For"] = "198.51.100.%d, %s" % (
        (int(left.rsplit(".", 1)[1]) % 254) + 1, left)
    ws = rl.connect("/v1/server", h, source_ip=used_ip)
    assert isinstance(ws, W.WebSocket), ws
    ws.ping_roundtrip()
    ws.close()
    bystander.check()
    bystander.close()


# -------------------------------------------------------- connection cap

def test_full_registry_refuses_a_new_id_with_503_before_upgrade(relay):
    rl = relay(workers=2, extra=["--max-servers", "3",
                                 "--grace-period", "1s"])
    pairs = [Pair(rl) for _ in range(3)]
    assert_error(rl.connect("/v1/server", rl.server_headers(new_id())), 503)
    rl.wait_log("registry_full")
    for pr in pairs:
        pr.check()
    # once an entry is free again (its grace over), a new id fits
    pairs[0].close()
    rl.wait_log("server_released", server_id=pairs[0].sid)

    def fits():
        w = rl.connect("/v1/server", rl.server_headers(new_id()))
        return w if isinstance(w, W.WebSocket) else None
    fits_ws = wait_for(fits, timeout=15, what="a freed registry entry")
    for pr in pairs[1:]:
        pr.check()
        pr.close()
    fits_ws.close()


def test_connection_cap_51st_upgrade_gets_503_and_a_freed_slot_is_reused(
        relay):
    rl = relay(workers=2, extra=["--max-connections", "50"])
    pairs = [Pair(rl, phones=9) for _ in range(5)]            # 50 conns
    for ep, h in (("/v1/server", rl.server_headers(new_id())),
                  ("/v1/client", rl.client_headers(pairs[0].sid))):
        assert_error(rl.connect(ep, h), 503)
    rl.wait_log("conn_cap_reached")
    st, hdrs, body = rl.http_get("/healthz")
    assert st == 200, (st, body)
    hz = json.loads(body)
    assert (hz["connected_binaries"], hz["connected_phones"]) == (5, 45), hz
    for pr in pairs:
        pr.check()
    # free one place: a new upgrade gets it (eventually)
    gone = pairs[1].phones.pop()
    gone_cid = pairs[1].cids.pop()
    gone.close_handshake(1000)
    assert pairs[1].b.recv_text() == notice(gone_cid, 1000)

    def takes_slot():
        w = rl.connect("/v1/client", rl.client_headers(pairs[1].sid))
        return w if isinstance(w, W.WebSocket) else None
    newcomer = wait_for(takes_slot, timeout=15, what="a freed slot")
    pairs[1].phones.append(newcomer)
    pairs[1].cids.append(hello(pairs[1].b, newcomer, pairs[1].sid))
    # full again
    assert_error(rl.connect("/v1/server", rl.server_headers(new_id())), 503)
    for pr in pairs:
        pr.check()
        pr.close()


def run_config(args, timeout=15):
    env = dict(os.environ)
    env.pop("PYRYCODE_RELAY_PRODUCTION", None)
    p = subprocess.run([RELAY_BIN, "--insecure-listen",
                        "127.0.0.1:%d" % conftest.free_port(),
                        "--metrics-listen", ""] + args,
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, env=env)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def test_max_connections_beyond_the_fd_limit_refuses_to_start_naming_it():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = 1000000 if hard == resource.RLIM_INFINITY or hard < 900000 \
        else hard * 2
    rc, out = run_config(["--workers", "1", "--max-connections", str(want)])
    assert rc == 2, (rc, out)
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "max-connections" in out, out
    assert "RLIMIT_NOFILE" in out or "file-descriptor" in out, out
    if hard != resource.RLIM_INFINITY:
        assert str(hard) in out, "message does not name the limit %d: %r" % (
            hard, out)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_connections_zero_or_negative_refuses_to_start(value):
    rc, out = run_config(["--workers", "1", "--max-connections", value])
    assert rc == 2, (rc, out)
    assert len(out.strip().splitlines()) == 1, out
    assert "max-connections" in out, out


# ---------------------------------------------------------- hostile heads

def test_slowloris_head_is_closed_with_zero_bytes_and_others_keep_routing(
        r):
    pair = Pair(r)
    s = W.open_raw(r.host, r.port)
    head = b"GET /v1/client HTTP/1.1\r\nHost: x\r\nX-Slow: "
    s.sendall(head[:10])
    start = time.monotonic()
    got = b""
    how = None
    i = 10
    while time.monotonic() - start < 10.0:
        try:
            s.sendall(head[i:i + 1] if i < len(head) else b"a")
            i += 1
        except OSError:
            how = "send failed"
            break
        s.settimeout(0.3)
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            how = "reset"
            break
        if not d:
            how = "eof"
            break
        got += d
    elapsed = time.monotonic() - start
    s.close()
    assert got == b"", "relay wrote to a slowloris head: %r" % got[:200]
    assert how is not None, "a head trickled for 10 s was never cut"
    assert elapsed < 10.0, elapsed
    pair.check()
    pair.close()


def test_head_of_9_kib_gets_431_and_others_keep_routing(r):
    pair = Pair(r)
    h = r.server_headers(new_id())
    h["X-Pad"] = "p" * (9 * 1024)
    assert_error(r.connect("/v1/server", h), 431)
    h = r.client_headers(pair.sid)
    h["X-Pad"] = "q" * (9 * 1024)
    assert_error(r.connect("/v1/client", h), 431)
    pair.check()
    pair.close()


# -------------------------------------------------------- hostile frames

def test_phone_message_of_256_kib_plus_one_closes_it_1009_others_unaffected(
        r):
    pair = Pair(r, phones=2)
    bad, good = pair.phones
    bad_cid = pair.cids[0]
    msg = b'"' + b"a" * (MAX_MSG - 1) + b'"'          # 262145 bytes
    assert len(msg) == MAX_MSG + 1
    bad.send_text(msg)
    got = bad.recv_close(timeout=10, echo=False)
    assert got != W.TCP_CLOSED and got[0] == 1009, got
    bad.close()
    assert pair.b.recv_text() == notice(bad_cid, 1001)
    pair.phones, pair.cids = [good], [pair.cids[1]]
    pair.check()
    pair.close()


def test_binary_message_of_256_kib_plus_one_closes_it_1009_others_unaffected(
        r):
    victim = Pair(r)
    bystander = Pair(r)
    cid = victim.cids[0]
    pre = envelope(cid, b'"')
    msg = pre + b"b" * (MAX_MSG + 1 - len(pre) - 2) + b'"}'
    assert len(msg) == MAX_MSG + 1
    victim.b.send_text(msg)
    got = victim.b.recv_close(timeout=10, echo=False)
    assert got != W.TCP_CLOSED and got[0] == 1009, got
    victim.b.close()
    victim.phones[0].expect_silence(0.5)      # grace: phone stays open
    bystander.check()
    bystander.close()
    victim.close()


def test_phone_message_of_exactly_256_kib_is_delivered_byte_for_byte(r):
    pair = Pair(r, phones=2)
    msg = b'"' + bytes(random.choice(b"abcdefghij") for _ in range(16)) * \
        ((MAX_MSG - 2) // 16) + b"z" * ((MAX_MSG - 2) % 16) + b'"'
    assert len(msg) == MAX_MSG
    pair.phones[0].send_binary(msg, fragments=5)
    op, payload = pair.b.recv(timeout=15)
    assert op == W.OP_TEXT, op
    cid, frame = unwrap(pair.sid, payload)
    assert cid == pair.cids[0]
    assert frame == msg
    pair.check()
    pair.close()


def _bad_utf8(p):
    p.send_text(b'"\xc3\x28"')


def _unmasked(p):
    p.send_text(b'{"a":1}', mask=False)


def _rsv(p):
    p.send_text(b'{"a":1}', rsv=4)


def _big_ping(p):
    p.send_ping(b"x" * 200)


@pytest.mark.parametrize("send,code", [(_bad_utf8, 1007), (_unmasked, 1002),
                                       (_rsv, 1002), (_big_ping, 1002)],
                         ids=["invalid_utf8_1007", "unmasked_1002",
                              "reserved_bits_1002", "ping_200_bytes_1002"])
def test_bad_frame_closes_only_the_sender_with_its_code(r, send, code):
    pair = Pair(r, phones=2)
    bad, bad_cid = pair.phones[0], pair.cids[0]
    send(bad)
    got = bad.recv_close(timeout=10, echo=False)
    assert got != W.TCP_CLOSED and got[0] == code, \
        "expected close %d, got %r" % (code, got)
    bad.close()                   # dropped without answering: notice 1001
    assert pair.b.recv_text() == notice(bad_cid, 1001)
    pair.phones, pair.cids = pair.phones[1:], pair.cids[1:]
    pair.check()
    pair.close()


def test_message_dribbled_past_30s_drops_tcp_and_others_keep_routing(r):
    pair = Pair(r, phones=2)
    slow, slow_cid = pair.phones[0], pair.cids[0]
    slow.send_frame(W.OP_TEXT, b'{"dribble":"', fin=False)
    start = time.monotonic()
    result = None
    while time.monotonic() - start < 45:
        try:
            slow.send_frame(W.OP_CONT, b"a", fin=False)
        except OSError:
            break
        try:
            f = slow.recv_frame(timeout=2.0)
        except W.Timeout:
            continue
        except W.TCPClosed:
            result = W.TCP_CLOSED
            break
        if f.opcode == W.OP_CLOSE:
            result = ("close frame", f.payload)
            break
    if result is None:
        try:
            result = slow.recv_close(timeout=5, echo=False)
        except W.Timeout:
            result = "still open"
    elapsed = time.monotonic() - start
    assert result == W.TCP_CLOSED, "expected the TCP connection dropped " \
        "without a close frame, got %r after %.1fs" % (result, elapsed)
    assert elapsed < 45, elapsed
    assert pair.b.recv_text() == notice(slow_cid, 1001)
    pair.phones, pair.cids = pair.phones[1:], pair.cids[1:]
    pair.check()
    pair.close()


# ------------------------------------------------------------ backpressure

def test_phone_that_never_reads_is_closed_1011_backlog_full_others_flow(r):
    sid = new_id()
    b = r.claim(sid)
    others = [r.attach(sid) for _ in range(2)]
    ocids = [hello(b, p, sid) for p in others]
    s, resp, rest, key = raw_upgrade(r, "/v1/client", r.client_headers(sid),
                                     rcvbuf=4096)
    r.wait_log("phone_registered", server_id=sid, timeout=10)
    s.sendall(W.build_frame(W.OP_TEXT, b'{"slow":1}'))
    slow_cid, frame = unwrap(sid, b.recv_text())
    assert frame == b'{"slow":1}'
    # ~10 MiB to the phone that never reads, interleaved with traffic to
    # and from the others
    big = b'"' + b"s" * (250 * 1024) + b'"'
    for i in range(40):
        b.send_text(envelope(slow_cid, big))
        for j, (p, c) in enumerate(zip(others, ocids)):
            b.send_text(envelope(c, b'[%d,%d]' % (i, j)))
            p.send_text(b'{"from":%d,"i":%d}' % (j, i))
    # the outbox (4 MiB) overflows long before the 10 s write-progress rule
    # could apply: the phone is closed 1011, the close frame queued behind
    # what was already queued.  Read it now (before the 10 s stall rule).
    r.wait_log("phone_backlog_full", conn_id=slow_cid, timeout=8)
    slow = W.WebSocket(s, resp, rest, key=key)
    closed = slow.recv_close(timeout=15, echo=False)
    assert closed == BACKLOG_FULL, "slow phone got %r; log:\n%s" % (
        closed, "\n".join(l for l in r.log_text().splitlines()
                          if slow_cid in l))
    for op, payload in slow.unread:
        assert op == W.OP_TEXT and payload == big, (op, payload[:80])
    slow.close()                 # dropped without echoing: notice 1001
    for j, (p, c) in enumerate(zip(others, ocids)):
        for i in range(40):
            assert p.recv_text(timeout=15) == b'[%d,%d]' % (i, j)
    got = {0: [], 1: []}
    closed_notice = False
    while sum(len(v) for v in got.values()) < 80 or not closed_notice:
        m = b.recv_text(timeout=15)
        if m == notice(slow_cid, 1001):
            closed_notice = True
            continue
        cid, frame = unwrap(sid, m)
        j = ocids.index(cid)
        got[j].append(frame)
    for j in (0, 1):
        assert got[j] == [b'{"from":%d,"i":%d}' % (j, i)
                          for i in range(40)], got[j][:5]
    # binary and the other phones keep flowing
    for p, c in zip(others, ocids):
        b.send_text(envelope(c, b'"after"'))
        assert p.recv_text() == b'"after"'
        p.send_text(b'"up-after"')
        assert unwrap(sid, b.recv_text()) == (c, b'"up-after"')
    for w in others + [b]:
        w.close()


def test_sixteen_phones_flooding_a_slow_binary_lose_nothing_and_rss_bounded(
        relay):
    rl = relay(workers=2)
    sid = new_id()
    s, resp, rest, key = raw_upgrade(rl, "/v1/server",
                                     rl.server_headers(sid))
    rl.wait_log("server_claimed", server_id=sid)
    phones = [rl.attach(sid) for _ in range(16)]
    per_phone = 500
    pad = "x" * 4000
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_total(rl))
            time.sleep(0.1)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    errors = []

    def flood(j, p):
        try:
            p.send_many_text([json.dumps([j, i, pad]).encode()
                              for i in range(per_phone)])
        except Exception as e:       # noqa: BLE001
            errors.append((j, e))
    floods = [threading.Thread(target=flood, args=(j, p), daemon=True)
              for j, p in enumerate(phones)]
    for t in floods:
        t.start()
    time.sleep(4.0)                  # binary reads nothing (< 10 s stall)
    fwd = "pyrycode_relay_frames_forwarded_total"
    stalled = rl.metric(fwd, direction="phone_to_binary")
    time.sleep(1.0)
    stalled2 = rl.metric(fwd, direction="phone_to_binary")
    print("forwarded while the binary did not read: %r, %r of %d; rss %.1f"
          " MiB" % (stalled, stalled2, 16 * per_phone, max(samples) / MIB))
    # flow control: the relay stopped reading the phones (high watermark
    # 8 MiB) instead of queueing all 32 MiB for the binary
    assert stalled2 == stalled, (stalled, stalled2)
    assert stalled2 * 4100 < 20 * MIB, \
        "relay read %d frames (%.1f MiB) for a binary that reads nothing" % (
            stalled2, stalled2 * 4100 / MIB)
    b = W.WebSocket(s, resp, rest, key=key)
    seen = {}
    total = 16 * per_phone
    try:
        for _ in range(total):
            cid, frame = unwrap(sid, b.recv_text(timeout=30))
            j, i, _p = json.loads(frame)
            seen.setdefault(cid, []).append((j, i))
    finally:
        stop.set()
        sampler.join(5)
    for t in floods:
        t.join(30)
    assert not errors, errors
    assert len(seen) == 16, sorted(seen)
    for cid, lst in seen.items():
        j = lst[0][0]
        assert lst == [(j, i) for i in range(per_phone)], \
            "phone %d: lost or reordered messages: %r" % (j, lst[:10])
    peak = max(samples)
    assert peak < RSS_BOUND, "relay RSS peaked at %.1f MiB (bound %d MiB)" % (
        peak / MIB, RSS_BOUND // MIB)
    # still routes both ways afterwards
    cids = list(seen)
    for p in phones:
        p.send_text(b'"done"')
        cid, frame = unwrap(sid, b.recv_text())
        assert frame == b'"done"'
    b.send_text(envelope(cids[0], b'"back"'))
    back = [p for p in phones if seen[cids[0]][0][0] == phones.index(p)][0]
    assert back.recv_text() == b'"back"'
    no_worker_exited(rl)
    for w in phones + [b]:
        w.close()


# ----------------------------------------------------- registry lock death

def test_worker_killed_holding_registry_lock_is_repaired_and_respawned(relay):
    rl = relay(workers=2, env={"PYRYCODE_RELAY_TEST_HOOKS": "1"},
               extra=["--conflict-probe-timeout", "2s"])
    old = rl.wait_workers()
    owned = {}
    bins = {}
    for _ in range(24):
        sid = new_id()
        bins[sid] = rl.claim(sid)
        pid = int(rl.log_lines("server_claimed", server_id=sid)[-1]["pid"])
        owned.setdefault(pid, []).append(sid)
        if len(owned) == 2:
            break
    assert len(owned) == 2, "claims never reached both workers: %r" % owned
    victim = int(rl.log_lines("server_claimed",
                              server_id=next(iter(bins)))[-1]["pid"])
    survivor = (old - {victim}).pop()
    assert set(owned) == old, (owned, old)
    # a pair living on the survivor
    ssid = owned[survivor][0]
    sp = rl.attach(ssid)
    scid = hello(bins[ssid], sp, ssid)

    os.kill(victim, signal.SIGUSR2)
    rl.wait_log("test_hold_lock", pid=str(victim))
    # a claim made while the lock is held completes once it is repaired
    pending_sid = new_id()
    pending = {}

    def claim_meanwhile():
        try:
            pending["ws"] = rl.binary(pending_sid, timeout=30)
        except Exception as e:       # noqa: BLE001
            pending["err"] = e
    t = threading.Thread(target=claim_meanwhile, daemon=True)
    t.start()
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)

    new = wait_for(lambda: (lambda s: s if len(s) == 2 and victim not in s
                            else None)(rl.worker_pids()), timeout=30,
                   what="respawn of the killed worker")
    assert survivor in new, (survivor, new)
    rl.wait_log("worker_exited", pid=str(victim), timeout=15)
    t.join(30)
    assert "err" not in pending, pending
    rl.wait_log("server_claimed", server_id=pending_sid, timeout=15)
    pending["ws"].ping_roundtrip()

    # the killed worker's binaries lost TCP; the survivor's pair still routes
    for sid in owned[victim]:
        assert bins[sid].recv_close(timeout=15) == W.TCP_CLOSED
    bins[ssid].send_text(envelope(scid, b'"still"'))
    assert sp.recv_text() == b'"still"'
    sp.send_text(b'"up"')
    assert unwrap(ssid, bins[ssid].recv_text()) == (scid, b'"up"')
    for sid in owned[survivor]:
        bins[sid].ping_roundtrip()

    # new claims succeed on both workers, and first-claim-wins still holds
    fresh = [new_id() for _ in range(6)]
    fbins = [rl.claim(s) for s in fresh]
    for s, fb in zip(fresh[:3], fbins):
        second = rl.binary(s)
        second.expect_closed(*SERVER_CONFLICT, timeout=15)
        fb.ping_roundtrip()
    second = rl.binary(pending_sid)
    second.expect_closed(*SERVER_CONFLICT, timeout=15)
    # the half-done update the dead worker left holds nothing
    hold = rl.claim("test-hold-lock")
    hold.close()
    # the killed worker's ids are claimable again
    for sid in owned[victim]:
        w = wait_for(lambda: (lambda ws: ws if ws.peer_close_payload is None
                              and not ws.eof else ws.close())(
            rl.claim(sid)), timeout=20, what="reclaim of %s" % sid)
        w.close()
    assert rl.healthz()["status"] == "ok"
    for w in list(bins.values()) + fbins + [sp, pending["ws"]]:
        w.close()


# --------------------------------------------------------- garbage storm

def _garbage_one(rl, rng, sink_sid):
    kind = rng.randrange(5)
    ip = W.random_loopback_ip()
    try:
        s = W.open_raw(rl.host, rl.port, source_ip=ip, timeout=5)
    except OSError:
        return "connect"
    try:
        if rng.random() < 0.2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))       # close with RST
        if kind == 0:                                   # random bytes
            s.sendall(rng.randbytes(rng.randrange(1, 4096)))
        elif kind in (1, 2):                            # (partial) heads
            path = rng.choice(["/v1/server", "/v1/client", "/healthz", "/",
                               "/v1/server?x=\xff"])
            req = bytearray(W.build_request(
                rl.host, rl.port, path.encode("latin-1").decode("latin-1"),
                rl.server_headers(new_id())))
            for _ in range(rng.randrange(0, 6)):
                req[rng.randrange(len(req))] = rng.randrange(256)
            if kind == 1:
                req = req[:rng.randrange(1, len(req))]
            s.sendall(bytes(req))
            if kind == 2:
                W.read_until_eof(s, timeout=0.5)
        else:                                           # frames after 101
            if kind == 3:
                path, h = "/v1/server", rl.server_headers(new_id())
            else:
                path, h = "/v1/client", rl.client_headers(sink_sid)
            h["Sec-WebSocket-Key"] = W.new_key()
            s.sendall(W.build_request(rl.host, rl.port, path, h))
            resp, _ = W.read_response(s, 5)
            if resp.status != 101:
                return "refused %d" % resp.status
            out = b""
            for _ in range(rng.randrange(1, 6)):
                if rng.random() < 0.3:
                    out += rng.randbytes(rng.randrange(1, 300))
                else:
                    n = rng.choice([0, 1, 125, 126, 200, 70000])
                    out += W.build_frame(
                        rng.randrange(16), rng.randbytes(n),
                        fin=rng.random() < 0.7, rsv=rng.choice([0] * 5 + [1]),
                        mask=rng.random() < 0.9,
                        length_override=rng.choice(
                            [None] * 6 + [n + 10, 1 << 40]))
            s.sendall(out)
            W.read_until_eof(s, timeout=0.2)
        return "ok"
    except (OSError, W.Timeout, W.TCPClosed, W.ProtocolError, ValueError):
        return "error"
    finally:
        s.close()


def test_thousand_garbage_connections_crash_no_worker_and_pair_routes(relay):
    rl = relay(workers=2, extra=["--grace-period", "1s"])
    before = rl.wait_workers()
    pair = Pair(rl, phones=2)
    sink_sid = new_id()
    sink = rl.claim(sink_sid)
    seed = random.randrange(1 << 30)
    start = time.monotonic()

    def batch(k):
        rng = random.Random(seed + k)
        return [_garbage_one(rl, rng, sink_sid) for _ in range(125)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        results = [x for lst in ex.map(batch, range(8)) for x in lst]
    assert len(results) == 1000
    kinds = {}
    for x in results:
        kinds[x] = kinds.get(x, 0) + 1
    print("garbage outcomes (seed %d): %r" % (seed, kinds))
    assert time.monotonic() - start < 90, "garbage storm too slow"
    time.sleep(0.5)
    after = rl.worker_pids()
    assert after == before, "worker pids changed (seed %d): %r -> %r\n%s" % (
        seed, before, after, rl.log_text()[-3000:])
    no_worker_exited(rl)
    assert rl.healthz()["status"] == "ok"
    pair.check()
    sink.ping_roundtrip()
    pair.close()
    sink.close()


# ------------------------------------------------------------------ EMFILE

def test_fd_exhaustion_pauses_accept_and_relay_recovers(relay, tmp_path,
                                                       monkeypatch):
    wrapper = tmp_path / "relay-lowfd.sh"
    wrapper.write_text("#!/bin/sh\nulimit -n 200 || exit 9\nexec %s \"$@\"\n"
                       % RELAY_BIN)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(conftest, "RELAY_BIN", str(wrapper))
    rl = relay(workers=1, extra=["--max-connections", "20"])
    pair = Pair(rl)
    socks = []
    try:
        for _ in range(400):
            try:
                socks.append(W.open_raw(rl.host, rl.port, timeout=5))
            except OSError:
                break
        rl.wait_log("accept_paused", timeout=10)
        # not spinning: a few pauses per second at most
        n1 = len(rl.log_lines("accept_paused"))
        time.sleep(2.0)
        n2 = len(rl.log_lines("accept_paused"))
        pair.check()              # established connections keep working
    finally:
        for s in socks:
            s.close()
    st = wait_for(lambda: (lambda x: x[0] == 200 and x)(
        rl.http_get("/healthz")), timeout=20, what="healthz after EMFILE")
    assert st[0] == 200
    fresh = wait_for(lambda: (lambda ws: ws if isinstance(ws, W.WebSocket)
                              else None)(rl.binary(new_id(),
                                                   expect_open=False)),
                     timeout=20, what="a claim after EMFILE")
    fresh.ping_roundtrip()
    fresh.close()
    pair.check()
    no_worker_exited(rl)
    pair.close()
    assert n2 - n1 <= 20, "accept is spinning: accept_paused logged %d " \
        "times in 2 s while descriptors were exhausted" % (n2 - n1)


def test_idle_connections_parked_for_memory_resume_on_the_next_byte(relay):
    """An idle WebSocket drops its framing state after 2 s without traffic
    (it costs only its struct then) and gets it back on the next byte, in
    either direction; a message split across the park is not lost."""
    rl = relay(workers=1)
    pr = Pair(rl, phones=2)
    pr.check()
    # a message whose first fragment arrives before the park and whose
    # last arrives after it: an unfinished message must keep the state
    p = pr.phones[0]
    p.send_frame(W.OP_TEXT, b'{"split":', fin=False)
    time.sleep(3.5)
    p.send_frame(W.OP_CONT, b'"yes"}')
    cid, got = unwrap(pr.sid, pr.b.recv_text())
    assert (cid, got) == (pr.cids[0], b'{"split":"yes"}')
    # both directions after everything went idle
    time.sleep(3.5)
    pr.b.send_text(envelope(pr.cids[1], b'{"after":"idle"}'))
    assert pr.phones[1].recv_text() == b'{"after":"idle"}'
    time.sleep(3.5)
    pr.check()
    pr.b.ping_roundtrip(b"parked")
    pr.close()
