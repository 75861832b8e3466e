"""Relay core: listeners, the order of checks, the handshake, claims,
process supervision and WebSocket hygiene (SPEC.md sections 1-3, 5.1, 7,
10-13)."""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import wsclient as W
from conftest import RELAY_BIN, new_id, wait_for

SERVER_CONFLICT = (4409, "server-id already claimed")
TEXT_PLAIN = "text/plain; charset=utf-8"


@pytest.fixture(scope="module")
def r(module_relay):
    """One relay shared by the tests of this module that leave it as they
    found it."""
    return module_relay(workers=2, extra=["--conflict-probe-timeout", "2s",
                                          "--grace-period", "1s"])


@pytest.fixture
def stable_workers(r):
    """Assert that no worker died during the test."""
    before = r.wait_workers()
    yield
    time.sleep(0.3)
    after = r.worker_pids()
    assert after == before, "worker pids changed: %r -> %r (a worker " \
        "crashed); log tail:\n%s" % (before, after, r.log_text()[-2000:])
    assert r.healthz()["status"] == "ok"


def assert_error(resp, status):
    assert isinstance(resp, W.HTTPResponse), \
        "expected HTTP %d, got an upgraded WebSocket" % status
    assert resp.status == status, resp
    assert resp.header("content-type") == TEXT_PLAIN, resp
    assert resp.header("connection", "").lower() == "close", resp
    assert resp.body, "error response must carry a short body: %r" % resp
    if resp.header("content-length") is not None:
        assert int(resp.header("content-length")) == len(resp.body), resp
    assert resp.eof, "relay did not close the socket after %d" % status


def raw_exchange(r, data, timeout=10.0):
    """Send raw bytes, read everything until the relay closes."""
    s = W.open_raw(r.host, r.port)
    try:
        s.sendall(data)
        return W.read_until_eof(s, timeout)
    finally:
        s.close()


def server_req(r, sid, **over):
    h = r.server_headers(sid)
    h.update(over)
    return h


# ------------------------------------------------------------------ listeners

def test_healthz_returns_exact_json_shape_and_headers(relay):
    rl = relay(workers=2)
    st, hdrs, body = rl.http_get("/healthz")
    hd = {k.lower(): v for k, v in hdrs}
    assert st == 200
    assert hd["content-type"] == "application/json; charset=utf-8"
    assert hd["cache-control"] == "no-store"
    assert re.fullmatch(
        rb'\{"status":"ok","version":"[^"\\]+","connected_binaries":0,'
        rb'"connected_phones":0,"uptime_seconds":\d+\}', body), body
    assert list(json.loads(body)) == ["status", "version",
                                      "connected_binaries",
                                      "connected_phones", "uptime_seconds"]


def test_healthz_answers_any_method(r):
    for method in ("GET", "POST", "HEAD", "PUT"):
        st, hdrs, body = r.http_get("/healthz", method=method)
        assert st == 200, method


def test_healthz_counts_live_binaries_and_all_phones_across_workers(relay):
    rl = relay(workers=2)
    sids = [new_id() for _ in range(3)]
    bins = [rl.claim(s) for s in sids]
    phones = [rl.attach(sids[0]), rl.attach(sids[1]), rl.attach(sids[1])]
    wait_for(lambda: rl.healthz()["connected_binaries"] == 3)
    assert rl.healthz()["connected_phones"] == 3
    assert rl.metric("pyrycode_relay_connected_binaries") == 3
    assert rl.metric("pyrycode_relay_connected_phones") == 3
    # a binary in grace is not counted; its phones still are
    bins[1].close_handshake(1000)
    wait_for(lambda: rl.healthz()["connected_binaries"] == 2)
    assert rl.healthz()["connected_phones"] == 3
    phones[0].close_handshake(1000)
    wait_for(lambda: rl.healthz()["connected_phones"] == 2)
    for w in bins + phones:
        w.close()


def test_unknown_path_returns_404(r):
    for path in ("/", "/v1", "/v1/server/x", "/v1/clients", "/metrics",
                 "/healthz/x"):
        resp = r.connect(path, server_req(r, new_id()))
        assert_error(resp, 404)


def test_query_string_does_not_change_the_endpoint(r):
    sid = new_id()
    resp = r.connect("/v1/server?x=1", server_req(r, sid))
    assert isinstance(resp, W.WebSocket), resp
    resp.ping_roundtrip()
    resp.close()


def test_metrics_listener_serves_only_metrics_with_every_series(relay):
    rl = relay(workers=2)
    st, hdrs, body = rl.http_get("/metrics", port=rl.metrics_port)
    assert st == 200
    ct = dict((k.lower(), v) for k, v in hdrs)["content-type"]
    assert ct.startswith("text/plain") and "0.0.4" in ct, ct
    text = body.decode()
    series = {(n, tuple(sorted(l.items()))) for n, l, v in
              __import__("conftest").parse_metrics(text)}
    want = [("pyrycode_relay_connected_binaries", ()),
            ("pyrycode_relay_connected_phones", ()),
            ("pyrycode_relay_grace_expiries_total", ())]
    for d in ("phone_to_binary", "binary_to_phone"):
        want.append(("pyrycode_relay_frames_forwarded_total",
                     (("direction", d),)))
    for ep in ("server", "client"):
        for oc in ("accept", "reject_headers", "reject_409", "reject_404",
                   "reject_429", "reject_rate_limit"):
            want.append(("pyrycode_relay_ws_upgrade_attempts_total",
                         (("endpoint", ep), ("outcome", oc))))
    for k in ("no_server", "server_in_use", "phones_at_cap", "ratelimit"):
        want.append(("pyrycode_relay_register_failures_total",
                     (("kind", k),)))
    missing = [w for w in want if w not in series]
    assert not missing, "series missing at start: %r" % missing
    assert "pyrycode_relay_push_wakes_total" not in text
    st, _, _ = rl.http_get("/healthz", port=rl.metrics_port)
    assert st == 404
    st, _, _ = rl.http_get("/v1/server", port=rl.metrics_port)
    assert st == 404


# ------------------------------------------------- /v1/server header checks

@pytest.mark.parametrize("header", ["x-pyrycode-server", "x-pyrycode-version",
                                    "user-agent"])
@pytest.mark.parametrize("value", [None, "", "   "],
                         ids=["missing", "empty", "spaces"])
def test_server_without_required_header_gets_400_and_claims_nothing(
        r, header, value):
    sid = new_id()
    h = server_req(r, sid)
    h[header] = value
    if header == "x-pyrycode-server" and value is None:
        h[header] = None
    assert_error(r.connect("/v1/server", h), 400)
    # the refused request claimed nothing: a valid claim now succeeds
    ws = r.claim(sid)
    ws.close()


def test_first_of_a_repeated_header_counts(r):
    sid = new_id()
    h = list(server_req(r, sid).items())
    h = [("x-pyrycode-server", "")] + h
    assert_error(r.connect("/v1/server", h), 400)
    h2 = list(server_req(r, sid).items()) + [("x-pyrycode-server", "")]
    ws = r.connect("/v1/server", h2)
    assert isinstance(ws, W.WebSocket), ws
    ws.close()


@pytest.mark.parametrize("bad", ["a" * 129, "has space", "tab\there",
                                 "caf\u00e9"], ids=["129-bytes", "space",
                                                    "tab", "non-ascii"])
def test_server_id_with_bad_syntax_gets_400(r, bad):
    assert_error(r.connect("/v1/server", server_req(r, new_id(), **{
        "x-pyrycode-server": bad})), 400)


def test_server_id_of_128_printable_bytes_is_accepted(r):
    sid = ("A-z0~!#$%&'*+." + new_id())
    sid = (sid * 4)[:128]
    ws = r.claim(sid)
    ws.close()


def test_required_headers_are_checked_before_the_handshake(r):
    # a POST without the server-id is a 400 (step 4), not a 405 (step 5)
    h = server_req(r, new_id())
    h["x-pyrycode-server"] = None
    assert_error(r.connect("/v1/server", h, method="POST"), 400)
    h = r.client_headers(new_id())
    h["user-agent"] = None
    assert_error(r.connect("/v1/client", h, method="POST"), 400)


# ----------------------------------------------------- handshake validation

@pytest.fixture(params=["/v1/server", "/v1/client"])
def endpoint(request):
    return request.param


def ep_headers(r, endpoint, **over):
    h = (r.server_headers(new_id()) if endpoint == "/v1/server"
         else r.client_headers(new_id()))
    h.update(over)
    return h


def test_post_gets_405(r, endpoint):
    assert_error(r.connect(endpoint, ep_headers(r, endpoint), method="POST"),
                 405)


def test_missing_upgrade_header_gets_426_with_upgrade_websocket(r, endpoint):
    resp = r.connect(endpoint, ep_headers(r, endpoint, Upgrade=None))
    assert_error(resp, 426)
    assert resp.header("upgrade", "").lower() == "websocket", resp


def test_upgrade_not_websocket_gets_426(r, endpoint):
    resp = r.connect(endpoint, ep_headers(r, endpoint, Upgrade="h2c"))
    assert_error(resp, 426)
    assert resp.header("upgrade", "").lower() == "websocket", resp


def test_connection_without_upgrade_token_gets_426(r, endpoint):
    resp = r.connect(endpoint, ep_headers(r, endpoint,
                                          Connection="keep-alive"))
    assert_error(resp, 426)
    assert resp.header("upgrade", "").lower() == "websocket", resp


def test_http_1_0_gets_426(r, endpoint):
    resp = r.connect(endpoint, ep_headers(r, endpoint),
                     http_version="HTTP/1.0")
    assert_error(resp, 426)
    assert resp.header("upgrade", "").lower() == "websocket", resp


@pytest.mark.parametrize("version", ["12", "8", "", "13, 8"])
def test_bad_websocket_version_gets_400_naming_13(r, endpoint, version):
    resp = r.connect(endpoint, ep_headers(
        r, endpoint, **{"Sec-WebSocket-Version": version or None}))
    assert_error(resp, 400)
    assert resp.header("sec-websocket-version") == "13", resp


@pytest.mark.parametrize("key", [None, "", "not base64!!",
                                 "AAAAAAAAAAAAAAAAAAAA",  # 15 bytes
                                 "AAAAAAAAAAAAAAAAAAAAAAA=",  # 17 bytes
                                 "AAAAAAAAAAAAAAAAAAAAAA"],  # no padding
                         ids=["missing", "empty", "garbage", "15-bytes",
                              "17-bytes", "unpadded"])
def test_bad_websocket_key_gets_400(r, endpoint, key):
    h = ep_headers(r, endpoint)
    h["Sec-WebSocket-Key"] = key
    if key is None:
        h["Sec-WebSocket-Key"] = None
    resp = r.connect(endpoint, h)
    assert_error(resp, 400)


def test_upgrade_tokens_are_case_insensitive_comma_lists(r):
    sid = new_id()
    ws = r.connect("/v1/server", server_req(
        r, sid, Upgrade="WebSocket", Connection="keep-alive, UPGRADE"))
    assert isinstance(ws, W.WebSocket), ws
    ws.ping_roundtrip()
    ws.close()


def test_valid_claim_gets_101_with_accept_and_no_extension_or_subprotocol(r):
    sid = new_id()
    before = len(r.log_lines("server_claimed", server_id=sid))
    ws = r.connect("/v1/server", server_req(
        r, sid, **{"Sec-WebSocket-Extensions":
                   "permessage-deflate; client_max_window_bits",
                   "Sec-WebSocket-Protocol": "pyry, chat",
                   "Origin": "https://evil.example",
                   "x-pyrycode-version": "9.8.7",
                   "user-agent": "SecretAgent/1.0"}))
    assert isinstance(ws, W.WebSocket), ws
    resp = ws.response
    assert resp.raw_head.startswith(b"HTTP/1.1 101 "), resp.raw_head
    assert resp.header("sec-websocket-accept") == W.accept_for(ws.key)
    assert resp.header("upgrade", "").lower() == "websocket"
    assert "upgrade" in resp.header("connection", "").lower()
    assert resp.header("sec-websocket-extensions") is None, resp
    assert resp.header("sec-websocket-protocol") is None, resp
    # no hello on this leg, and it stays open
    ws.expect_silence(1.5)
    ws.ping_roundtrip()
    lines = wait_for(lambda: r.log_lines("server_claimed", server_id=sid)[
        before:])
    assert lines[0]["binary_version"] == "9.8.7"
    assert lines[0]["remote"] == ws.source_ip
    assert "SecretAgent" not in r.log_text(), "user-agent was logged"
    ws.close()


# ------------------------------------------------------------------- claims

def test_second_claim_of_live_id_gets_4409_and_first_keeps_working(relay):
    rl = relay(workers=2, extra=["--conflict-probe-timeout", "2s"])
    sid = new_id()
    first = rl.claim(sid)
    second = rl.binary(sid)
    second.expect_closed(*SERVER_CONFLICT, timeout=30)
    rl.wait_log("server_id_conflict", server_id=sid)
    # the first binary still holds the id and routes
    first.ping_roundtrip()
    phone = rl.attach(sid)
    phone.send_text(b'{"hi":1}')
    got = first.recv_text()
    assert got.endswith(b',"frame":{"hi":1}}'), got
    h = rl.healthz()
    assert h["connected_binaries"] == 1 and h["connected_phones"] == 1, h
    assert rl.metric("pyrycode_relay_ws_upgrade_attempts_total",
                     endpoint="server", outcome="reject_409") == 1
    assert rl.metric("pyrycode_relay_register_failures_total",
                     kind="server_in_use") == 1


def test_fifty_concurrent_claims_of_one_id_leave_exactly_one_holder(r):
    sid = new_id()
    results = [None] * 50
    go = threading.Event()

    def claim(i):
        go.wait()
        try:
            results[i] = r.binary(sid, expect_open=False, timeout=30)
        except Exception as e:       # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(60)
    socks = [x for x in results if isinstance(x, W.WebSocket)]
    assert len(socks) == 50, "every request should upgrade: %r" % [
        x for x in results if not isinstance(x, W.WebSocket)]
    wait_for(lambda: sum(w.peer_close_payload is not None or w.eof
                         for w in socks) >= 49, timeout=60,
             what="49 refusals")
    time.sleep(3)      # longer than the probe timeout: no late decisions
    losers = [w for w in socks if w.peer_close_payload is not None or w.eof]
    holders = [w for w in socks if w not in losers]
    assert len(holders) == 1, "%d holders" % len(holders)
    for w in losers:
        w.expect_closed(*SERVER_CONFLICT, timeout=10)
    holder = holders[0]
    phone = r.attach(sid)
    phone.send_text(b"[50]")
    assert holder.recv_text().endswith(b',"frame":[50]}')
    for w in socks + [phone]:
        w.close()


def test_claim_after_disconnect_reclaims_immediately_and_after_expiry(r):
    sid = new_id()
    b1 = r.claim(sid)
    b1.close_handshake(1000)
    r.wait_log("server_released", server_id=sid)
    b2 = r.claim(sid)          # in grace: the newcomer wins at once
    b2.expect_silence(1.0)
    b2.abort()                 # dropped without a close frame
    r.wait_log("server_released", server_id=sid)
    time.sleep(2.0)            # grace is 1 s here: the slot is free again
    b3 = r.claim(sid)
    b3.expect_silence(1.0)
    b3.close()


def test_killed_worker_is_respawned_and_its_ids_become_claimable(relay):
    rl = relay(workers=2, extra=["--conflict-probe-timeout", "2s"])
    old = rl.wait_workers()
    sids = [new_id() for _ in range(8)]
    bins = {s: rl.claim(s) for s in sids}
    owner = {s: rl.log_lines("server_claimed", server_id=s)[-1]["pid"]
             for s in sids}
    victim = int(owner[sids[0]])
    assert victim in old, (victim, old)
    os.kill(victim, signal.SIGKILL)
    new = wait_for(lambda: (lambda s: s if len(s) == 2 and victim not in s
                            else None)(rl.worker_pids()), timeout=30,
                   what="respawned worker")
    assert len(new - old) == 1, (old, new)
    for s in sids:
        if int(owner[s]) == victim:
            assert bins[s].recv_close(timeout=15) == W.TCP_CLOSED
        else:
            bins[s].ping_roundtrip()    # other workers are untouched

    lost = [s for s in sids if int(owner[s]) == victim]

    def all_reclaimed():
        # claim every lost id at once, then wait past the probe timeout:
        # a refusal (4409) would have arrived by then
        socks = [rl.binary(s) for s in lost]
        time.sleep(3.0)
        ok = all(w.peer_close_payload is None and not w.eof for w in socks)
        if ok:
            for w in socks:
                w.ping_roundtrip()
        for w in socks:
            w.close()
        return ok

    wait_for(all_reclaimed, timeout=45, what="reclaim of the lost ids")
    fresh = rl.claim(new_id())
    fresh.close()
    assert rl.healthz()["status"] == "ok"


def test_sigterm_closes_peers_1001_shutting_down_and_exits_0(relay):
    rl = relay(workers=2)
    sid = new_id()
    b = rl.claim(sid)
    p = rl.attach(sid)
    other = rl.claim(new_id())
    rl.signal(signal.SIGTERM)
    for w in (b, p, other):
        got = w.recv_close(timeout=15)
        assert got == (1001, "shutting down"), got
    rc = rl.terminate()
    assert rc == 0, rl.log_text()[-2000:]


def test_sigterm_cuts_peers_that_never_answer_the_close(relay):
    rl = relay(workers=1, extra=["--drain-timeout", "1s"])
    b = rl.claim(new_id(), auto_close=False)
    rl.signal(signal.SIGTERM)
    # read the close but never answer it: the drain deadline cuts us
    f = b.recv_frame(timeout=15)
    while f.opcode != W.OP_CLOSE:
        f = b.recv_frame(timeout=15)
    assert f.payload == struct.pack("!H", 1001) + b"shutting down"
    rc = rl.terminate(timeout=15)
    assert rc == 0, rl.log_text()[-2000:]
    b.wait_tcp_closed(timeout=5)


# ---------------------------------------------------------------- rate limit

def test_upgrade_rate_limit_is_20_per_ip_then_429(r):
    ip = W.random_loopback_ip()
    before = r.metric("pyrycode_relay_ws_upgrade_attempts_total",
                      endpoint="client", outcome="reject_rate_limit") or 0
    # every request spends a token, even failing ones; both endpoints share
    for i in range(20):
        path = "/v1/server" if i % 2 else "/v1/client"
        h = {"user-agent": "x"}          # missing the server-id: 400
        resp = r.connect(path, h, source_ip=ip)
        assert isinstance(resp, W.HTTPResponse) and resp.status == 400, resp
    # /healthz does not spend
    st, _, _ = r.http_get("/healthz")
    assert st == 200
    resp = r.connect("/v1/client", r.client_headers(new_id()), source_ip=ip)
    assert_error(resp, 429)
    resp = r.connect("/v1/server", r.server_headers(new_id()), source_ip=ip)
    assert_error(resp, 429)
    r.wait_log("rate_limited", remote=ip)
    assert (r.metric("pyrycode_relay_ws_upgrade_attempts_total",
                     endpoint="client", outcome="reject_rate_limit") or 0) \
        >= before + 1
    # another IP is unaffected
    ws = r.claim(new_id())
    ws.close()


def test_x_forwarded_for_is_ignored_without_the_flag(r):
    ip = W.random_loopback_ip()
    for i in range(20):
        h = {"user-agent": "x", "X-Forwarded-For": "10.0.%d.1" % i}
        resp = r.connect("/v1/server", h, source_ip=ip)
        assert resp.status == 400, resp
    resp = r.connect("/v1/server", {"user-agent": "x",
                                    "X-Forwarded-For": "10.9.9.9"},
                     source_ip=ip)
    assert_error(resp, 429)


def test_connection_cap_answers_503(relay):
    rl = relay(workers=2, extra=["--max-connections", "2"])
    a = rl.claim(new_id())
    b = rl.claim(new_id())
    resp = rl.connect("/v1/server", rl.server_headers(new_id()))
    assert_error(resp, 503)
    st, _, _ = rl.http_get("/healthz")    # health checks do not count
    assert st == 200
    a.close_handshake(1000)
    c = wait_for(lambda: (lambda x: x if isinstance(x, W.WebSocket) else
                          None)(rl.connect("/v1/server",
                                           rl.server_headers(new_id()))),
                 timeout=15, what="a slot after one connection closed")
    c.close()
    b.close()


# ------------------------------------------------------------ hostile input

def test_garbage_bytes_get_400_or_nothing_and_no_crash(r, stable_workers):
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64,
                 b"\xff\xfe\r\n\r\n", b"GET\r\n\r\n",
                 b"GET /v1/server HTTP/9.9\r\n\r\n",
                 b"GET /v1/server HTTP/1.1\r\nno colon here\r\n\r\n",
                 b"GET /v1/server HTTP/1.1\r\nHost: a\0b\r\n\r\n"):
        data, how = raw_exchange(r, junk)
        assert how in ("eof", "reset"), (junk, how)
        assert data == b"" or data.startswith(b"HTTP/1.1 400 "), (junk, data)


def test_head_that_never_ends_is_closed_without_response(r, stable_workers):
    s = W.open_raw(r.host, r.port)
    s.sendall(b"GET /v1/server HTTP/1.1\r\nHost: x\r\n")
    data, how = W.read_until_eof(s, timeout=20)
    s.close()
    assert how in ("eof", "reset"), "still open after 20 s"
    assert data == b"", data


def test_head_trickled_slowly_is_cut_at_the_deadline(r, stable_workers):
    s = W.open_raw(r.host, r.port)
    s.sendall(b"GET /v1/server HTTP/1.1\r\nX-Slow: ")
    deadline = time.monotonic() + 25
    closed = False
    while time.monotonic() < deadline:
        try:
            s.sendall(b"a")
        except OSError:
            closed = True
            break
        s.settimeout(0.4)
        try:
            d = s.recv(100)
            assert d == b"", "relay answered a slow head: %r" % d
            closed = True
            break
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
            break
    s.close()
    assert closed, "a head trickled for 25 s was never cut"


def test_head_over_8_kib_gets_431(r, stable_workers):
    h = server_req(r, new_id())
    h["X-Pad"] = "p" * 9000
    resp = r.connect("/v1/server", h)
    assert_error(resp, 431)


def test_head_of_just_under_8_kib_is_accepted(r):
    h = server_req(r, new_id())
    base = len(W.build_request(r.host, r.port, "/v1/server", h))
    h["X-Pad"] = "p" * (8192 - base - len("X-Pad: \r\n") - 16)
    assert len(W.build_request(r.host, r.port, "/v1/server", h)) < 8192
    ws = r.connect("/v1/server", h)
    assert isinstance(ws, W.WebSocket), ws
    ws.close()


@pytest.fixture
def live(r):
    ws = r.claim(new_id())
    yield ws
    ws.close()


def test_unmasked_frame_closes_1002(live, stable_workers):
    live.send_text(b'{"a":1}', mask=False)
    live.expect_closed(1002)


@pytest.mark.parametrize("rsv", [4, 2, 1])
def test_reserved_bits_close_1002(live, stable_workers, rsv):
    live.send_text(b'{"a":1}', rsv=rsv)
    live.expect_closed(1002)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_unknown_opcode_closes_1002(live, stable_workers, opcode):
    live.send_frame(opcode, b"x")
    live.expect_closed(1002)


def test_ping_over_125_bytes_closes_1002(live, stable_workers):
    live.send_ping(b"p" * 200)
    live.expect_closed(1002)


def test_fragmented_ping_closes_1002(live, stable_workers):
    live.send_frame(W.OP_PING, b"ab", fin=False)
    live.expect_closed(1002)


def test_continuation_without_a_message_closes_1002(live, stable_workers):
    live.send_frame(W.OP_CONT, b"{}", fin=True)
    live.expect_closed(1002)


def test_new_message_inside_a_fragmented_one_closes_1002(live,
                                                          stable_workers):
    live.send_frame(W.OP_TEXT, b'{"a":', fin=False)
    live.send_frame(W.OP_TEXT, b'1}', fin=True)
    live.expect_closed(1002)


@pytest.mark.parametrize("payload", [b"\xff", b'{"a":"\xc3"}',
                                     b'"\xed\xa0\x80"', b'"\xc0\xaf"'],
                         ids=["ff", "truncated", "surrogate", "overlong"])
def test_invalid_utf8_text_closes_1007(live, stable_workers, payload):
    live.send_text(payload)
    live.expect_closed(1007)


def test_invalid_utf8_across_fragments_closes_1007(live, stable_workers):
    live.send_text(b'"\xe2\x82\xac\xe2\x82"', fragments=3)
    live.expect_closed(1007)


def test_300_kib_message_closes_1009(live, stable_workers):
    live.send_text(b'"' + b"x" * (300 * 1024) + b'"')
    live.expect_closed(1009, timeout=20)


def test_300_kib_fragmented_message_closes_1009(live, stable_workers):
    live.send_text(b'"' + b"x" * (300 * 1024) + b'"', fragments=3)
    live.expect_closed(1009, timeout=20)


def test_huge_declared_length_closes_1009(live, stable_workers):
    live.send_raw(W.build_frame(W.OP_TEXT, b"", length_override=1 << 40,
                                mask=True, mask_key=b"abcd")[:14])
    live.expect_closed(1009, timeout=20)


def test_ping_gets_pong_with_same_payload(live, stable_workers):
    for payload in (b"", b"hello", bytes(range(125))):
        live.send_ping(payload)
        op, got = live.recv(control=True)
        while op == W.OP_PING:
            op, got = live.recv(control=True)
        assert (op, got) == (W.OP_PONG, payload)


def test_ping_between_fragments_is_answered(r):
    sid = new_id()
    b = r.claim(sid)
    p = r.attach(sid)
    p.send_frame(W.OP_TEXT, b'{"x":', fin=False)
    p.send_ping(b"mid")
    op, got = p.recv(control=True)
    assert (op, got) == (W.OP_PONG, b"mid")
    p.send_frame(W.OP_CONT, b'[1,2]}', fin=True)
    assert b.recv_text().endswith(b',"frame":{"x":[1,2]}}')
    b.close()
    p.close()


@pytest.mark.parametrize("code,reason", [(1000, "bye"), (4000, ""),
                                         (1001, "going")])
def test_close_handshake_echoes_the_code(live, stable_workers, code, reason):
    got = live.close_handshake(code, reason)
    assert got != W.TCP_CLOSED, "relay closed TCP without a close frame"
    assert got[0] == code, got
    live.wait_tcp_closed()


# ---------------------------------------------------------- configuration

def run_config(args, env=None, timeout=15):
    e = dict(os.environ)
    e.pop("PYRYCODE_RELAY_PRODUCTION", None)
    if env:
        e.update(env)
    return subprocess.run([RELAY_BIN] + args, capture_output=True,
                          text=True, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [
    ["--insecure-listen", "127.0.0.1:0"],
    ["--insecure-listen", "127.0.0.1:65536"],
    ["--insecure-listen", "localhost:8080"],
    ["--insecure-listen", "127.0.0.1"],
    ["--metrics-listen", "0.0.0.0:9"],
    ["--max-connections", "0"],
    ["--max-connections", "-5"],
    ["--grace-period", "soon"],
    ["--no-such-flag"],
], ids=lambda a: " ".join(a))
def test_invalid_configuration_exits_2_with_one_line(args):
    p = run_config(["--insecure-listen", "127.0.0.1:1", "--metrics-listen",
                    ""] + args)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip(), "no message"


@pytest.mark.parametrize("args", [
    ["--tls-listen", "127.0.0.1:8443"],
    ["--tls-cert", "/nonexistent.pem"],
    ["--proxy-protocol"],
    ["--domain", "relay.example"],
], ids=lambda a: a[0])
def test_unsupported_features_are_refused_with_exit_2(args):
    p = run_config(["--insecure-listen", "127.0.0.1:1", "--metrics-listen",
                    ""] + args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "not supported in this build" in p.stderr, p.stderr


def test_production_env_other_than_1_is_an_error():
    p = run_config(["--insecure-listen", "127.0.0.1:1"],
                   env={"PYRYCODE_RELAY_PRODUCTION": "yes"})
    assert p.returncode == 2, (p.returncode, p.stderr)


def test_production_refuses_plain_listener_on_public_address():
    p = run_config(["--insecure-listen", "8.8.8.8:8080"],
                   env={"PYRYCODE_RELAY_PRODUCTION": "1"})
    assert p.returncode == 2, (p.returncode, p.stderr)


def test_listener_that_cannot_bind_exits_1():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        p = run_config(["--insecure-listen", "127.0.0.1:%d" %
                        s.getsockname()[1], "--metrics-listen", ""],
                       timeout=20)
    finally:
        s.close()
    assert p.returncode == 1, (p.returncode, p.stderr)


def test_version_and_help_exit_0():
    p = run_config(["--version"])
    assert p.returncode == 0 and p.stdout.strip(), p
    p = run_config(["--help"])
    assert p.returncode == 0 and "--insecure-listen" in p.stdout, p
