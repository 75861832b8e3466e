"""Operations: metrics, logs, signals, configuration, privileges, install and
the init script (SPEC.md sections 11-13, pyrycode-relay(8)).

Every test here runs the real daemon (conftest's `relay` factory) and checks
exact codes and bytes; timings are only ever generous upper bounds.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

import wsclient as W
from conftest import (RELAY_BIN, Relay, free_port, new_id, parse_log_line,
                      wait_for)

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:                     # pragma: no cover - env problem
    text_string_to_metric_families = None

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("RELAY_SRCDIR") or os.path.normpath(
    os.path.join(HERE, "..", ".."))
BUILDDIR = os.path.dirname(os.path.dirname(RELAY_BIN))
MAN_PAGE = os.path.join(SRCDIR, "doc", "pyrycode-relay.8")
INIT_SCRIPT = os.path.join(SRCDIR, "contrib", "init.d", "pyrycode-relay")

SHUTTING_DOWN = (1001, "shutting down")
IS_ROOT = os.geteuid() == 0

# SPEC 12.1: every series, present from start
P = "pyrycode_relay_"
ENDPOINTS = ("server", "client")
OUTCOMES = ("accept", "reject_headers", "reject_409", "reject_404",
            "reject_429", "reject_rate_limit")
KINDS = ("no_server", "server_in_use", "phones_at_cap", "ratelimit")
DIRECTIONS = ("phone_to_binary", "binary_to_phone")


def spec_series():
    """{(sample name, frozenset(labels)): prometheus type}"""
    out = {(P + "connected_binaries", frozenset()): "gauge",
           (P + "connected_phones", frozenset()): "gauge",
           (P + "grace_expiries_total", frozenset()): "counter"}
    for d in DIRECTIONS:
        out[(P + "frames_forwarded_total",
             frozenset({("direction", d)}))] = "counter"
    for ep in ENDPOINTS:
        for oc in OUTCOMES:
            out[(P + "ws_upgrade_attempts_total",
                 frozenset({("endpoint", ep), ("outcome", oc)}))] = "counter"
    for k in KINDS:
        out[(P + "register_failures_total",
             frozenset({("kind", k)}))] = "counter"
    return out


SPEC_SERIES = spec_series()

# SPEC 12.2
ALLOWED_LOG_KEYS = {"server_id", "conn_id", "binary_conn_id", "device_name",
                    "remote", "binary_version", "err", "path", "close_code",
                    "token_fp", "duration", "worker", "pid"}
LEVELS = ("alert", "err", "warn", "notice", "info", "debug")


# ===================================================================== helpers

def scrape(rl):
    """Scrape /metrics and parse it with the real Prometheus text parser.
    Returns ({(name, frozenset(labels)): value}, {family name: type}, text).
    """
    if text_string_to_metric_families is None:
        pytest.fail("python3-prometheus-client is not installed "
                    "(apt-get install python3-prometheus-client)")
    st, hdrs, body = rl.http_get("/metrics", port=rl.metrics_port)
    assert st == 200, (st, body[:300])
    ct = dict((k.lower(), v) for k, v in hdrs).get("content-type", "")
    assert ct.startswith("text/plain") and "version=0.0.4" in ct, ct
    text = body.decode("utf-8")
    samples, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, "duplicate series %r" % (key,)
            samples[key] = s.value
    return samples, types, text


def spec_values(rl):
    samples, _, _ = scrape(rl)
    return {k: samples.get(k) for k in SPEC_SERIES}


def key(name, **labels):
    return (P + name, frozenset(labels.items()))


def describe(k):
    return "%s{%s}" % (k[0], ",".join("%s=%s" % kv for kv in sorted(k[1])))


def wait_metrics(rl, expected, timeout=10.0):
    """Wait until every SPEC series has exactly the expected value."""
    last = {}

    def check():
        last.clear()
        last.update(spec_values(rl))
        return all(last[k] == v for k, v in expected.items())
    try:
        wait_for(check, timeout, what="metrics to reach expected values")
    except BaseException:
        diff = ["%s: want %r got %r" % (describe(k), v, last.get(k))
                for k, v in expected.items() if last.get(k) != v]
        raise AssertionError("metrics differ from expected:\n  " +
                             "\n  ".join(diff))
    return last


def start_relay(factory, tmp_path, workers=2, extra=(), env=None,
                log_name="relay.log"):
    """Start a relay that logs to --log-file; its log helpers read that
    file.  Returns the Relay."""
    log = str(tmp_path / log_name)
    rl = factory(workers=workers, extra=list(extra) + ["--log-file", log],
                 env=env)
    rl.stderr_path = rl.log_path
    rl.log_path = log
    return rl


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_daemon(args, env=None, timeout=15, input_env_clear=True):
    """Run the daemon to completion (it must exit by itself).  Returns
    (returncode, stdout, stderr).  A daemon that does not exit is killed
    with its whole session and reported as returncode None."""
    e = dict(os.environ)
    if input_env_clear:
        e.pop("PYRYCODE_RELAY_PRODUCTION", None)
        e.pop("PYRYCODE_RELAY_FCM_CREDENTIALS", None)
    if env:
        e.update(env)
    p = subprocess.Popen([RELAY_BIN] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=e, start_new_session=True, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = p.communicate()
        rc = None
    # nothing the daemon forked may outlive it
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    return rc, out, err


def base_args(metrics=False):
    """A plain listener on a free loopback port; metrics off unless asked."""
    a = ["--insecure-listen", "127.0.0.1:%d" % free_port()]
    a += ["--metrics-listen",
          "127.0.0.1:%d" % free_port() if metrics else ""]
    return a


def env_re(sid):
    return re.compile(rb'\{"conn_id":"(client-' + re.escape(sid.encode()) +
                      rb'-[0-9a-f]{8})","frame":(.*)\}\Z', re.S)


def envelope(cid, frame):
    return b'{"conn_id":"' + cid.encode() + b'","frame":' + frame + b'}'


def hello(b, p, sid, payload=b'{"hello":true}'):
    """The binary learns the phone's conn_id from its first frame."""
    p.send_text(payload)
    m = env_re(sid).match(b.recv_text())
    assert m and m.group(2) == payload
    return m.group(1).decode()


def proc_ids(pid):
    """(uids, gids) lists from /proc/PID/status."""
    uids = gids = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                uids = [int(x) for x in line.split()[1:]]
            elif line.startswith("Gid:"):
                gids = [int(x) for x in line.split()[1:]]
    return uids, gids


# ===================================================================== metrics

def test_metrics_parse_with_prometheus_parser_and_every_series_at_start(
        relay):
    rl = relay(workers=2)
    samples, types, text = scrape(rl)
    missing = [describe(k) for k in SPEC_SERIES if k not in samples]
    assert not missing, "series missing at start: %s" % missing
    for k, typ in SPEC_SERIES.items():
        fam = k[0][:-len("_total")] if typ == "counter" else k[0]
        assert types.get(fam) == typ, (fam, types.get(fam), typ)
        assert samples[k] == 0, "%s starts at %r" % (describe(k), samples[k])
    # no other label combination of the SPEC families
    spec_names = {k[0] for k in SPEC_SERIES}
    extra = [describe(k) for k in samples
             if k[0] in spec_names and k not in SPEC_SERIES]
    assert not extra, "unexpected label sets: %s" % extra
    # every series the relay adds is under the prefix
    assert all(k[0].startswith(P) for k in samples), \
        [k[0] for k in samples if not k[0].startswith(P)]
    # push is not configured: no push_wakes_total family at all
    assert P + "push_wakes" not in types
    assert not any(k[0].startswith(P + "push_wakes_total") for k in samples)
    assert not re.search(r"^pyrycode_relay_push_wakes_total\b", text, re.M)


def test_metrics_only_on_metrics_listener_and_healthz_only_on_public(relay):
    rl = relay(workers=2)
    st, _, body = rl.http_get("/metrics")
    assert st == 404, (st, body[:200])
    st, _, body = rl.http_get("/healthz", port=rl.metrics_port)
    assert st == 404, (st, body[:200])
    st, _, _ = rl.http_get("/metrics", port=rl.metrics_port)
    assert st == 200
    st, _, _ = rl.http_get("/healthz")
    assert st == 200


def test_empty_metrics_listen_disables_the_metrics_listener(relay):
    rl = relay(workers=1, extra=["--metrics-listen", ""])
    s = socket.socket()
    s.settimeout(5)
    try:
        with pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", rl.metrics_port))
    finally:
        s.close()
    assert rl.healthz()["status"] == "ok"


def test_every_series_moves_when_its_event_happens(relay):
    rl = relay(workers=2, extra=["--grace-period", "1s",
                                 "--conflict-probe-timeout", "1s"])
    exp = spec_values(rl)
    assert all(v == 0 for v in exp.values()), exp
    up = lambda ep, oc: key("ws_upgrade_attempts_total", endpoint=ep,
                            outcome=oc)
    rf = lambda k: key("register_failures_total", kind=k)
    fwd = lambda d: key("frames_forwarded_total", direction=d)
    used_ids, used_ips = set(), set()

    # accept (server) and the connected_binaries gauge
    sid = new_id()
    used_ids.add(sid)
    b = rl.claim(sid)
    used_ips.add(b.source_ip)
    exp[up("server", "accept")] += 1
    exp[key("connected_binaries")] += 1
    wait_metrics(rl, exp)

    # accept (client) and the connected_phones gauge
    p = rl.attach(sid)
    used_ips.add(p.source_ip)
    exp[up("client", "accept")] += 1
    exp[key("connected_phones")] += 1
    wait_metrics(rl, exp)

    # frames both directions
    cid = hello(b, p, sid)
    exp[fwd("phone_to_binary")] += 1
    for i in range(3):
        p.send_text(b"[%d]" % i)
        assert env_re(sid).match(b.recv_text()).group(2) == b"[%d]" % i
    exp[fwd("phone_to_binary")] += 3
    for i in range(2):
        b.send_text(envelope(cid, b'{"n":%d}' % i))
        assert p.recv_text() == b'{"n":%d}' % i
    exp[fwd("binary_to_phone")] += 2
    wait_metrics(rl, exp)

    # reject_headers on both endpoints (400: a required header missing)
    h = rl.server_headers(new_id())
    del h["x-pyrycode-version"]
    resp = rl.connect("/v1/server", h)
    assert isinstance(resp, W.HTTPResponse) and resp.status == 400, resp
    h = rl.client_headers(sid)
    del h["user-agent"]
    resp = rl.connect("/v1/client", h)
    assert isinstance(resp, W.HTTPResponse) and resp.status == 400, resp
    exp[up("server", "reject_headers")] += 1
    exp[up("client", "reject_headers")] += 1
    wait_metrics(rl, exp)

    # reject_409 / server_in_use (the holder answers the probe)
    b2 = rl.binary(sid)
    b2.expect_closed(4409, "server-id already claimed", timeout=15)
    exp[up("server", "reject_409")] += 1
    exp[rf("server_in_use")] += 1
    wait_metrics(rl, exp)
    b.ping_roundtrip()

    # reject_404 / no_server
    nosid = new_id()
    used_ids.add(nosid)
    q = rl.phone(nosid)
    q.expect_closed(4404, "no server with that id")
    exp[up("client", "reject_404")] += 1
    exp[rf("no_server")] += 1
    wait_metrics(rl, exp)

    # reject_429 / phones_at_cap: the 17th phone
    sid2 = new_id()
    used_ids.add(sid2)
    b3 = rl.claim(sid2)
    exp[up("server", "accept")] += 1
    exp[key("connected_binaries")] += 1
    phones = [rl.attach(sid2) for _ in range(16)]
    exp[up("client", "accept")] += 16
    exp[key("connected_phones")] += 16
    wait_metrics(rl, exp)
    extra = rl.phone(sid2)
    extra.expect_closed(4429, "too many phones for server-id")
    exp[up("client", "reject_429")] += 1
    exp[rf("phones_at_cap")] += 1
    wait_metrics(rl, exp)

    # reject_rate_limit / ratelimit: 21 upgrades from one source IP
    ip = W.random_loopback_ip()
    used_ips.add(ip)
    for i in range(20):
        path = "/v1/server" if i % 2 else "/v1/client"
        resp = rl.connect(path, {"user-agent": "x"}, source_ip=ip)
        assert isinstance(resp, W.HTTPResponse) and resp.status == 400, \
            (i, resp)
    exp[up("server", "reject_headers")] += 10
    exp[up("client", "reject_headers")] += 10
    resp = rl.connect("/v1/server", rl.server_headers(new_id()), source_ip=ip)
    assert isinstance(resp, W.HTTPResponse) and resp.status == 429, resp
    resp = rl.connect("/v1/client", rl.client_headers(sid), source_ip=ip)
    assert isinstance(resp, W.HTTPResponse) and resp.status == 429, resp
    exp[up("server", "reject_rate_limit")] += 1
    exp[up("client", "reject_rate_limit")] += 1
    exp[rf("ratelimit")] += 2
    wait_metrics(rl, exp)

    # phones leave: the gauge goes down
    for w in phones[:6]:
        w.close_handshake(1000)
    exp[key("connected_phones")] -= 6
    wait_metrics(rl, exp)

    # a binary leaves: connected_binaries drops at once (grace is not
    # live), grace_expiries_total moves when the 1 s window runs out and
    # its remaining phones are closed 1000
    b3.close_handshake(1000)
    exp[key("connected_binaries")] -= 1
    for w in phones[6:]:
        got = w.recv_close(timeout=15)
        assert got == (1000, ""), got
    exp[key("grace_expiries_total")] += 1
    exp[key("connected_phones")] -= 10
    wait_metrics(rl, exp, timeout=15)

    # the last phone and binary
    p.close_handshake(1000)
    assert b.recv_text() == b'{"conn_id":"%s","close_code":1000}' % \
        cid.encode()
    exp[key("connected_phones")] -= 1
    b.close_handshake(1000)
    exp[key("connected_binaries")] -= 1
    exp[key("grace_expiries_total")] += 1
    wait_metrics(rl, exp, timeout=15)
    assert exp[key("connected_phones")] == 0
    assert exp[key("connected_binaries")] == 0

    # no label value anywhere is a server-id or an IP
    samples, _, text = scrape(rl)
    uuid_re = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    ip_re = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|::")
    for name, labels in samples:
        for lk, lv in labels:
            assert not uuid_re.search(lv) and not ip_re.search(lv), \
                "label %s=%r on %s" % (lk, lv, name)
    for s in used_ids | used_ips:
        assert s not in text, "%r appears in /metrics" % s


# ======================================================================== logs

LINE_RE = re.compile(
    r'^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d))'
    r' (?P<level>[a-z]+) event=(?P<event>[a-z0-9_]+)(?P<rest>.*)$')
KV_RE = re.compile(r' ([a-z_][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def strict_parse(line):
    """Parse one log line strictly; returns (level, event, [keys])."""
    m = LINE_RE.match(line)
    assert m, "log line does not start 'TIMESTAMP LEVEL event=NAME': %r" % \
        line
    rest = m.group("rest")
    keys = []
    pos = 0
    while pos < len(rest):
        kv = KV_RE.match(rest, pos)
        assert kv, "log line is not key=value at %r: %r" % (rest[pos:],
                                                            line)
        keys.append(kv.group(1))
        pos = kv.end()
    return m.group("level"), m.group("event"), keys


def test_busy_log_has_only_spec_keys_and_never_secrets(relay, tmp_path):
    rl = start_relay(relay, tmp_path, workers=2,
                     extra=["--log-level", "debug", "--grace-period", "1s",
                            "--conflict-probe-timeout", "1s"])
    tag = new_id().replace("-", "")
    token = "TOKSECRET" + tag
    ua_b = "UASECRETB" + tag
    ua_p = "UASECRETP" + tag
    payload = "PAYLOADSECRET" + tag
    push_tok = "PUSHSECRET" + tag
    secrets = [token, ua_b, ua_p, payload, push_tok]

    def bin_hdr(sid):
        return {"x-pyrycode-server": sid, "x-pyrycode-version": "9.9.9",
                "user-agent": ua_b}

    def ph_hdr(sid, device="Pixel 9"):
        return {"x-pyrycode-server": sid, "user-agent": ua_p,
                "x-pyrycode-token": token, "x-pyrycode-device-name": device}

    sid = new_id()
    b = rl.connect("/v1/server", bin_hdr(sid))
    assert isinstance(b, W.WebSocket), b
    rl.wait_log("server_claimed", server_id=sid)
    b.ping_roundtrip()
    phones = []
    for i in range(4):
        p = rl.connect("/v1/client", ph_hdr(sid, "dev\x01ice %d" % i))
        assert isinstance(p, W.WebSocket), p
        phones.append(p)
    wait_for(lambda: len(rl.log_lines("phone_registered",
                                      server_id=sid)) == 4,
             what="4 phone_registered")
    cids = [hello(b, p, sid, b'{"s":"%s","i":%d}' % (payload.encode(), i))
            for i, p in enumerate(phones)]
    # traffic both ways, with the payload marker inside
    for i, p in enumerate(phones):
        b.send_text(envelope(cids[i], b'["%s"]' % payload.encode()))
        assert p.recv_text() == b'["%s"]' % payload.encode()
    # bad envelopes from the binary: not JSON, unknown conn_id, push wake
    b.send_text(b"not json " + payload.encode())
    b.send_text(envelope("client-%s-00000000" % sid,
                         b'"%s"' % payload.encode()))
    b.send_text(b'{"push_wake":{"platform":"fcm","token":"%s"}}' %
                push_tok.encode())
    b.send_text(b'{"push_wake":{"platform":"apns","token":"%s"}}' %
                push_tok.encode())
    b.ping_roundtrip()
    # a phone sends invalid JSON carrying the payload marker: closed 1000
    phones[0].send_text(b"{bad " + payload.encode())
    assert phones[0].recv_close(timeout=10) == (1000, "")
    # a phone closes with a code (close notice)
    phones[1].close_handshake(4000)
    # conflict, no server, headers, rate limit
    b2 = rl.connect("/v1/server", bin_hdr(sid))
    b2.expect_closed(4409, "server-id already claimed", timeout=15)
    q = rl.connect("/v1/client", ph_hdr(new_id()))
    q.expect_closed(4404, "no server with that id")
    resp = rl.connect("/v1/client", {"user-agent": ua_p,
                                     "x-pyrycode-token": token})
    assert resp.status == 400, resp
    ip = W.random_loopback_ip()
    for i in range(21):
        resp = rl.connect("/v1/client", {"user-agent": ua_p,
                                         "x-pyrycode-token": token},
                          source_ip=ip)
    assert resp.status == 429, resp
    rl.wait_log("rate_limited", remote=ip)
    # binary leaves; grace expires, the last phones are closed 1000
    b.close_handshake(1000)
    for p in phones[2:]:
        assert p.recv_close(timeout=15) == (1000, "")
    wait_for(lambda: rl.metric(P + "grace_expiries_total") >= 1,
             timeout=15, what="grace expiry")
    rc = rl.terminate()
    assert rc == 0, rl.log_text()[-3000:]

    raw = open(rl.log_path, "rb").read()
    text = raw.decode("utf-8")
    lines = text.splitlines()
    assert len(lines) > 20, text
    events, bad_keys = set(), {}
    for line in lines:
        level, event, keys = strict_parse(line)
        assert level in LEVELS, line
        events.add(event)
        for k in keys:
            if k not in ALLOWED_LOG_KEYS:
                bad_keys.setdefault(k, line)
        assert len(set(keys)) == len(keys), "repeated key: %r" % line
    assert not bad_keys, "keys outside SPEC 12.2: %r" % bad_keys
    for s in secrets:
        assert s.encode() not in raw, "%s found in the log" % s[:12]
    # the user-agent never appears, not even its prefix
    assert b"UASECRET" not in raw and b"TOKSECRET" not in raw
    # the events the run caused were logged under their SPEC names
    for ev in ("server_claimed", "phone_registered", "phone_unregistered",
               "server_id_conflict", "phone_register_no_server",
               "binary_forwarder_unmarshal_err",
               "binary_forwarder_unknown_conn_id",
               "binary_forwarder_push_wake_dropped",
               "phone_forwarder_marshal_err", "rate_limited",
               "server_released"):
        assert ev in events, "no event=%s in the log" % ev
    # nothing went to stderr once the log file was open
    assert open(rl.stderr_path, "rb").read() == b""


def test_log_level_warn_suppresses_info_lines(relay, tmp_path):
    rl = start_relay(relay, tmp_path, workers=2,
                     extra=["--log-level", "warn"])
    sid = new_id()
    b = rl.binary(sid)
    b.ping_roundtrip()
    p = rl.phone(sid)
    p.ping_roundtrip()
    cid = hello(b, p, sid)
    q = rl.phone(new_id())
    q.expect_closed(4404, "no server with that id")
    p.close_handshake(1000)
    assert b.recv_text() == b'{"conn_id":"%s","close_code":1000}' % \
        cid.encode()
    b.close_handshake(1000)
    assert rl.healthz()["status"] == "ok"
    rc = rl.terminate()
    assert rc == 0
    text = rl.log_text()
    for line in text.splitlines():
        level, event, _ = strict_parse(line)
        assert level in ("warn", "err", "alert"), \
            "line below warn with --log-level warn: %r" % line
    for ev in ("server_claimed", "phone_registered", "phone_unregistered",
               "phone_register_no_server", "server_released"):
        assert "event=%s " % ev not in text + " ", ev


def test_sigusr1_reopens_log_in_master_and_every_worker(relay, tmp_path):
    rl = start_relay(relay, tmp_path, workers=2)
    path = rl.log_path
    workers = rl.wait_workers()
    # every process has written to the first file
    wait_for(lambda: len(rl.log_lines("worker_started")) == 2,
             what="worker_started x2")
    os.rename(path, path + ".1")
    rl.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(path), timeout=10,
             what="new log file at %s after SIGUSR1" % path)

    # the workers: claims until every worker has logged server_claimed
    # into the new file
    conns = []

    def worker_pids_in_new():
        return {int(d["pid"]) for d in rl.log_lines("server_claimed")
                if d.get("pid")}

    def spread():
        if worker_pids_in_new() >= workers:
            return True
        b = rl.binary(new_id())
        b.ping_roundtrip()
        conns.append(b)
        return False
    wait_for(spread, timeout=30, interval=0.01,
             what="server_claimed lines from every worker in the new file")
    assert worker_pids_in_new() == workers
    # the master: a reload is logged by the master (its pid) into the new
    # file
    rl.signal(signal.SIGHUP)
    line = rl.wait_log("reloaded")[0]
    assert int(line["pid"]) == rl.pid, line
    old = open(path + ".1").read()
    for b in conns:
        b.close()
    assert "event=server_claimed" not in old, \
        "a worker kept writing to the moved file"
    assert "event=reloaded" not in old
    assert rl.healthz()["status"] == "ok"


def test_hostile_ids_and_device_names_keep_lines_parseable(relay, tmp_path):
    rl = start_relay(relay, tmp_path, workers=1)
    # a server-id is any printable ASCII without spaces: quotes, '=' and
    # backslashes included
    sid = 'q"uo=te\\x' + new_id()[:8]
    device = 'evil" event=forged k="v\\ \x7f\x1b[31m'
    b = rl.claim(sid)
    p = rl.attach(sid, headers={"x-pyrycode-device-name": device})
    b.close()
    p.close()
    rl.wait_log("server_released", server_id=sid)
    text = rl.log_text()
    for line in text.splitlines():
        strict_parse(line)
    claimed = rl.log_lines("server_claimed")
    assert [d["server_id"] for d in claimed] == [sid], claimed
    reg = rl.log_lines("phone_registered")
    assert len(reg) == 1 and reg[0]["server_id"] == sid, reg
    dn = reg[0]["device_name"]
    assert dn.startswith('evil" event=forged'), dn
    assert "\x1b" not in dn and "\x7f" not in dn, dn
    assert all(d.get("event") != "forged" for d in
               map(parse_log_line, text.splitlines()))
    assert "\x1b" not in text


def test_log_file_is_created_with_mode_0640(relay, tmp_path):
    old = os.umask(0o022)
    try:
        rl = start_relay(relay, tmp_path, workers=1)
    finally:
        os.umask(old)
    mode = os.stat(rl.log_path).st_mode & 0o777
    assert mode == 0o640, oct(mode)


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_sigusr1_reopens_log_after_privileges_were_dropped(relay):
    # like the init script: a log directory owned by the relay's user
    d = tempfile.mkdtemp(prefix="relay-log-")
    try:
        os.chmod(d, 0o755)
        nobody = pwd.getpwnam("nobody")
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
        path = os.path.join(d, "relay.log")
        rl = relay(workers=2, extra=["--user", "nobody", "--log-file", path])
        rl.stderr_path, rl.log_path = rl.log_path, path
        workers = rl.wait_workers()
        wait_for(lambda: len(rl.log_lines("worker_started")) == 2,
                 what="worker_started x2")
        os.rename(path, path + ".1")
        rl.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(path), timeout=10,
                 what="log reopened by the unprivileged relay; stderr:\n" +
                 open(rl.stderr_path).read()[-2000:])
        conns = []

        def spread():
            pids = {int(x["pid"]) for x in rl.log_lines("server_claimed")}
            if pids >= workers:
                return True
            b = rl.binary(new_id())
            b.ping_roundtrip()
            conns.append(b)
            return False
        wait_for(spread, timeout=30, interval=0.01,
                 what="every worker writing to the reopened file")
        assert os.stat(path).st_uid == nobody.pw_uid
        assert os.stat(path).st_mode & 0o777 == 0o640
        assert "log_reopen_failed" not in open(path + ".1").read()
        for b in conns:
            b.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_pid_file_holds_master_pid_and_is_removed_on_stop(relay, tmp_path):
    pidf = str(tmp_path / "relay.pid")
    rl = relay(workers=1, extra=["--pid-file", pidf])
    assert open(pidf).read() == "%d\n" % rl.pid
    rc = rl.terminate()
    assert rc == 0
    assert not os.path.exists(pidf)


# ===================================================================== signals

class Pump:
    """Keeps a WebSocket sending until the relay closes it; then echoes the
    close (from this thread, so no data frame follows our close)."""

    def __init__(self, ws, make_msg, period=0.01):
        self.ws = ws
        self.make_msg = make_msg
        self.period = period
        self.sent = 0
        self.error = None
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        ws = self.ws
        try:
            while not self.stop.is_set():
                pc = ws.peer_close_payload
                if pc is not None or ws.eof:
                    if pc is not None and not ws.close_sent:
                        code = struct.unpack("!H", pc[:2])[0] if len(pc) >= 2 \
                            else None
                        ws.send_close(code)
                    return
                ws.send_text(self.make_msg(self.sent))
                self.sent += 1
                time.sleep(self.period)
        except OSError as e:
            self.error = e


def test_sigterm_under_traffic_closes_every_peer_1001_and_exits_0(relay):
    rl = relay(workers=2, extra=["--drain-timeout", "5s"])
    sid = new_id()
    b = rl.claim(sid)
    phones = [rl.attach(sid) for _ in range(5)]
    cids = [hello(b, p, sid) for p in phones]
    other = rl.claim(new_id())
    pumps = [Pump(p, lambda n, i=i: b'{"p":%d,"n":%d}' % (i, n))
             for i, p in enumerate(phones)]
    pumps.append(Pump(b, lambda n: envelope(cids[n % len(cids)],
                                            b'{"b":%d}' % n)))
    time.sleep(0.5)
    assert all(pp.sent > 0 for pp in pumps)
    t0 = time.monotonic()
    rl.signal(signal.SIGTERM)
    for w in [b, other] + phones:
        got = w.recv_close(timeout=15, echo=(w is other))
        assert got == SHUTTING_DOWN, got
    rc = rl.terminate(timeout=20)
    assert rc == 0, "exit %r; log tail:\n%s" % (rc, rl.log_text()[-3000:])
    assert time.monotonic() - t0 < 5 + 10, "drain overran"
    for w in [b, other] + phones:
        w.wait_tcp_closed(timeout=5)
    for pp in pumps:
        pp.stop.set()


def test_sigquit_stops_at_once_without_close_frames(relay):
    rl = relay(workers=2)
    sid = new_id()
    b = rl.claim(sid)
    p = rl.attach(sid)
    workers = rl.wait_workers()
    rl.signal(signal.SIGQUIT)
    wait_for(lambda: rl.proc.poll() is not None, timeout=5,
             what="master gone after SIGQUIT")
    wait_for(lambda: not any(pid_alive(w) for w in workers), timeout=5,
             what="workers gone after SIGQUIT")
    for w in (b, p):
        assert w.recv_close(timeout=5) == W.TCP_CLOSED, \
            "SIGQUIT must cut connections without a close frame"


def test_sigquit_leaves_no_process_behind_and_frees_the_port(relay):
    rl = relay(workers=2)
    rl.wait_workers()
    rl.signal(signal.SIGQUIT)
    wait_for(lambda: rl.proc.poll() is not None, timeout=5,
             what="master gone")
    # the public port can be bound again: no worker holds it
    def refused():
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", rl.port))
            return False
        except ConnectionRefusedError:
            return True
        finally:
            s.close()
    wait_for(refused, timeout=5, what="public port closed after SIGQUIT")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", rl.port))     # nobody listens there any more
        s.listen(1)
    finally:
        s.close()


CFG_BASE = """# test configuration
ping-interval = 30s
grace-period = 1s
reload-drain-timeout = 120s
"""


def write_cfg(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def test_sighup_reload_under_traffic_drops_nothing(relay, tmp_path):
    cfg = str(tmp_path / "relay.conf")
    write_cfg(cfg, CFG_BASE)
    rl = start_relay(relay, tmp_path, workers=2, extra=["--config", cfg])
    old_workers = rl.wait_workers()

    # 7 server-ids: 1 binary each, 100 phones in all (16-phone cap)
    counts = [15, 15, 15, 15, 15, 15, 10]
    sids = [new_id() for _ in counts]
    binaries = [rl.claim(s) for s in sids]
    phones = []                         # (sid index, ws)
    for si, n in enumerate(counts):
        for _ in range(n):
            phones.append((si, rl.attach(sids[si])))
    assert len(phones) == 100
    assert rl.healthz()["connected_phones"] == 100

    # each binary echoes every phone message back to the phone
    lock = threading.Lock()
    got_by_binary = {}                  # phone index -> [n, ...]
    echo_errors = []
    stop_echo = threading.Event()

    def echo(si):
        b = binaries[si]
        rx = env_re(sids[si])
        while not stop_echo.is_set():
            try:
                msg = b.recv_text(timeout=0.5)
            except W.Timeout:
                continue
            except Exception as e:      # noqa: BLE001
                echo_errors.append("binary %d: %r" % (si, e))
                return
            m = rx.match(msg)
            if not m:
                echo_errors.append("binary %d got %r" % (si, msg[:200]))
                continue
            d = json.loads(m.group(2))
            with lock:
                got_by_binary.setdefault(d["p"], []).append(d["n"])
            try:
                b.send_text(envelope(m.group(1).decode(), m.group(2)))
            except OSError as e:
                echo_errors.append("binary %d send: %r" % (si, e))
                return
    echo_threads = [threading.Thread(target=echo, args=(si,), daemon=True)
                    for si in range(len(sids))]
    for t in echo_threads:
        t.start()

    sent = [0] * len(phones)
    stop_send = threading.Event()
    send_errors = []

    def sender():
        while not stop_send.is_set():
            for i, (si, p) in enumerate(phones):
                try:
                    p.send_text(b'{"p":%d,"n":%d}' % (i, sent[i]))
                except OSError as e:
                    send_errors.append("phone %d: %r" % (i, e))
                    return
                sent[i] += 1
            time.sleep(0.1)
    st = threading.Thread(target=sender, daemon=True)
    st.start()
    time.sleep(1.5)

    # reload with a changed ping interval
    write_cfg(cfg, CFG_BASE.replace("ping-interval = 30s",
                                    "ping-interval = 1s"))
    rl.signal(signal.SIGHUP)
    rl.wait_log("reloaded", timeout=15)
    new_workers = wait_for(
        lambda: (lambda s: s if len(s & old_workers) == 0 and len(s) >= 2
                 else None)(rl.worker_pids() - old_workers),
        timeout=15, what="a new generation of 2 workers")
    assert len(new_workers) == 2, new_workers
    time.sleep(1.5)

    # new connections work while the old ones stream: a fresh id ...
    nsid = new_id()
    nb = rl.claim(nsid)
    np_ = rl.attach(nsid)
    ncid = hello(nb, np_, nsid)
    nb.send_text(envelope(ncid, b'{"new":1}'))
    assert np_.recv_text() == b'{"new":1}'
    # ... served with the new configuration (pinged after ~1 s idle)
    wait_for(lambda: np_.pings, timeout=15,
             what="a ping under the reloaded ping-interval")
    # ... and a new phone for a binary held by an old worker
    lp = rl.attach(sids[-1])
    lp.send_text(b'{"p":-1,"n":0}')
    # (the echo thread of that binary sends it back)
    assert lp.recv_text(timeout=10) == b'{"p":-1,"n":0}'

    stop_send.set()
    st.join(10)
    assert not send_errors, send_errors

    def all_back():
        with lock:
            for i in range(len(phones)):
                if len(got_by_binary.get(i, [])) < sent[i]:
                    return False
        return True
    wait_for(all_back, timeout=30, what="every phone message at its binary")
    stop_echo.set()
    for t in echo_threads:
        t.join(5)
    assert not echo_errors, echo_errors[:5]
    lost = []
    for i, (si, p) in enumerate(phones):
        seq = got_by_binary.get(i, [])
        if seq != list(range(sent[i])):
            lost.append("phone %d -> binary: sent %d, got %d (first bad %r)"
                        % (i, sent[i], len(seq), seq[:5]))
            continue
        back = []
        try:
            while len(back) < sent[i]:
                back.append(p.recv_text(timeout=10))
        except (W.Timeout, W.TCPClosed) as e:
            lost.append("binary -> phone %d: sent %d, got %d (%r)" %
                        (i, sent[i], len(back), e))
            continue
        want = [b'{"p":%d,"n":%d}' % (i, n) for n in range(sent[i])]
        if back != want:
            lost.append("binary -> phone %d: wrong/misordered frames" % i)
    assert not lost, "%d phones lost messages:\n%s" % (len(lost),
                                                        "\n".join(lost[:10]))
    for w in binaries + [p for _, p in phones]:
        assert w.peer_close_payload is None and not w.eof, \
            "a connection was closed across the reload (%r, %s)" % (
                w.peer_close_payload, w.eof_how)
    assert sum(sent) >= 100 * 20, sent[:5]
    assert rl.healthz()["connected_phones"] == 100 + 2

    # the old generation exits once its connections end; an old worker
    # that happened to own none of the ids may already be gone
    holders = {int(d["pid"]) for sid in sids
               for d in rl.log_lines("server_claimed", server_id=sid)}
    assert holders <= old_workers, (holders, old_workers)
    assert all(pid_alive(pid) for pid in holders), \
        "old workers exited while they still held connections"
    for w in binaries + [p for _, p in phones] + [lp]:
        w.close()
    wait_for(lambda: not any(pid_alive(pid) for pid in old_workers),
             timeout=30, what="old workers to exit after their "
             "connections ended")
    for pid in old_workers:
        # a zombie counts as gone before the master has reaped and logged it
        lines = rl.wait_log("worker_exited", timeout=10, pid=str(pid))
        assert lines[-1].get("err") == "exit status 0", lines
    assert rl.worker_pids() == new_workers
    nb.ping_roundtrip()
    np_.ping_roundtrip()
    nb.close()
    np_.close()


def test_reload_drain_timeout_closes_old_connections_1001(relay, tmp_path):
    rl = start_relay(relay, tmp_path, workers=2,
                     extra=["--reload-drain-timeout", "1s"])
    old = rl.wait_workers()
    sid = new_id()
    b = rl.claim(sid)
    p = rl.attach(sid)
    rl.signal(signal.SIGHUP)
    rl.wait_log("reloaded")
    for w in (b, p):
        assert w.recv_close(timeout=15) == SHUTTING_DOWN
    wait_for(lambda: not any(pid_alive(x) for x in old), timeout=15,
             what="old workers gone after the reload drain timeout")
    # the id is free again: the new generation serves it
    b2 = wait_for(lambda: (lambda x: x if isinstance(x, W.WebSocket) and
                           not x.peer_close_payload else None)(
        rl.binary(sid, expect_open=False)), timeout=15,
        what="reclaim of the id by a new-generation worker")
    b2.ping_roundtrip()
    b2.close()


def test_sighup_with_invalid_config_keeps_running_with_old(relay, tmp_path):
    cfg = str(tmp_path / "relay.conf")
    write_cfg(cfg, CFG_BASE)
    rl = start_relay(relay, tmp_path, workers=2, extra=["--config", cfg])
    workers = rl.wait_workers()
    sid = new_id()
    b = rl.claim(sid)
    p = rl.attach(sid)
    cid = hello(b, p, sid)
    write_cfg(cfg, CFG_BASE.replace("ping-interval = 30s",
                                    "ping-interval = sometimes"))
    rl.signal(signal.SIGHUP)
    line = rl.wait_log("reload_failed")[0]
    assert "%s:2" % cfg in line.get("err", ""), line
    assert not rl.log_lines("reloaded")
    time.sleep(0.5)
    assert rl.worker_pids() == workers, "workers replaced on a failed reload"
    b.send_text(envelope(cid, b'{"still":"here"}'))
    assert p.recv_text() == b'{"still":"here"}'
    nb = rl.claim(new_id())
    nb.close()
    # a fixed file reloads fine afterwards
    write_cfg(cfg, CFG_BASE)
    rl.signal(signal.SIGHUP)
    rl.wait_log("reloaded")
    b.ping_roundtrip()
    p.ping_roundtrip()
    b.close()
    p.close()


def test_reload_keeps_restart_only_settings_and_warns(relay, tmp_path):
    cfg = str(tmp_path / "relay.conf")
    pid_a, pid_b = str(tmp_path / "a.pid"), str(tmp_path / "b.pid")
    write_cfg(cfg, CFG_BASE + "pid-file = %s\n" % pid_a)
    rl = start_relay(relay, tmp_path, workers=2, extra=["--config", cfg])
    assert open(pid_a).read().strip() == str(rl.pid)
    write_cfg(cfg, CFG_BASE + "pid-file = %s\n" % pid_b)
    rl.signal(signal.SIGHUP)
    rl.wait_log("reloaded")
    assert rl.log_lines("reload_needs_restart"), rl.log_text()[-2000:]
    assert not os.path.exists(pid_b)
    # still 2 workers in the new generation, serving
    wait_for(lambda: len(rl.worker_pids()) == 2, timeout=15,
             what="2 workers after reload")
    rl.claim(new_id()).close()
    assert rl.terminate() == 0
    assert not os.path.exists(pid_a), "the pid file in use was not removed"


def test_sigterm_after_reload_stops_both_generations(relay, tmp_path):
    rl = start_relay(relay, tmp_path, workers=2,
                     extra=["--drain-timeout", "5s"])
    old = rl.wait_workers()
    s1 = new_id()
    b1 = rl.claim(s1)
    p1 = rl.attach(s1)
    rl.signal(signal.SIGHUP)
    rl.wait_log("reloaded")
    wait_for(lambda: len(rl.worker_pids() - old) == 2, timeout=15,
             what="new generation")
    s2 = new_id()
    b2 = rl.claim(s2)
    p2 = rl.attach(s2)
    everyone = rl.worker_pids()
    holder = int(rl.log_lines("server_claimed", server_id=s1)[-1]["pid"])
    assert holder in old and holder in everyone, (holder, old, everyone)
    rl.signal(signal.SIGTERM)
    for w in (b1, p1, b2, p2):
        assert w.recv_close(timeout=15) == SHUTTING_DOWN
    assert rl.terminate(timeout=20) == 0
    assert not any(pid_alive(x) for x in everyone)


def test_counters_never_go_backwards_across_reload_and_worker_death(
        relay, tmp_path):
    rl = start_relay(relay, tmp_path, workers=2,
                     extra=["--grace-period", "1s"])
    up = key("ws_upgrade_attempts_total", endpoint="server", outcome="accept")
    conns = []
    for _ in range(4):
        sid = new_id()
        b = rl.claim(sid)
        p = rl.attach(sid)
        cid = hello(b, p, sid)
        b.send_text(envelope(cid, b"[1]"))
        assert p.recv_text() == b"[1]"
        conns.append((sid, b, p))
    before = spec_values(rl)
    assert before[up] == 4 and before[key("connected_binaries")] == 4
    assert before[key("connected_phones")] == 4

    def monotonic(prev):
        cur = spec_values(rl)
        back = [describe(k) for k, t in SPEC_SERIES.items()
                if t == "counter" and cur[k] < prev[k]]
        assert not back, "counters went backwards: %s" % back
        return cur

    # reload: old workers keep the connections, totals stay
    old = rl.wait_workers()
    rl.signal(signal.SIGHUP)
    rl.wait_log("reloaded")
    wait_for(lambda: len(rl.worker_pids() - old) == 2, timeout=15,
             what="new generation")
    cur = monotonic(before)
    assert cur[key("connected_binaries")] == 4, cur
    assert cur[key("connected_phones")] == 4, cur
    h = rl.healthz()
    assert (h["connected_binaries"], h["connected_phones"]) == (4, 4), h

    # SIGKILL the old worker holding the first id: its gauges vanish, its
    # counters stay in the totals
    sid0 = conns[0][0]
    owner = int(rl.log_lines("server_claimed", server_id=sid0)[-1]["pid"])
    held = [c for c in conns if int(rl.log_lines(
        "server_claimed", server_id=c[0])[-1]["pid"]) == owner]
    os.kill(owner, signal.SIGKILL)
    for _, b, p in held:
        assert b.recv_close(timeout=10) == W.TCP_CLOSED
        assert p.recv_close(timeout=10) == W.TCP_CLOSED
    wait_for(lambda: rl.log_lines("worker_exited", pid=str(owner)),
             what="worker_exited for the killed worker")
    left = 4 - len(held)
    exp = monotonic(cur)
    exp[key("connected_binaries")] = left
    exp[key("connected_phones")] = left
    cur = wait_metrics(rl, exp)
    monotonic(before)
    # the rest end normally; the old generation exits; totals stay
    for _, b, p in conns:
        if (_, b, p) not in held:
            p.close_handshake(1000)
            b.close_handshake(1000)
    wait_for(lambda: not any(pid_alive(x) for x in old), timeout=20,
             what="old workers gone")
    final = monotonic(cur)
    assert final[key("connected_binaries")] == 0
    assert final[key("connected_phones")] == 0
    assert final[up] == 4
    assert final[key("frames_forwarded_total",
                     direction="phone_to_binary")] == 4
    assert final[key("frames_forwarded_total",
                     direction="binary_to_phone")] == 4
    # a killed worker is not respawned once it was retired by a reload
    assert len(rl.worker_pids()) == 2


def test_reload_applies_new_log_file_and_level(relay, tmp_path):
    cfg = str(tmp_path / "relay.conf")
    a, b = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    write_cfg(cfg, CFG_BASE + "log-file = %s\n" % a)
    rl = relay(workers=2, extra=["--config", cfg])
    rl.stderr_path, rl.log_path = rl.log_path, a
    old = rl.wait_workers()
    s1 = new_id()
    b1 = rl.claim(s1)                      # logged in a.log
    write_cfg(cfg, CFG_BASE + "log-file = %s\nlog-level = notice\n" % b)
    rl.signal(signal.SIGHUP)
    wait_for(lambda: os.path.exists(b) and "event=reloaded" in open(b).read(),
             timeout=15, what="event=reloaded in the new log file")
    wait_for(lambda: len(rl.worker_pids() - old) == 2, timeout=15,
             what="new generation")
    rl.log_path = b
    # new-generation workers log at notice: a claim leaves no info line
    s2 = new_id()
    b2 = rl.binary(s2)
    b2.ping_roundtrip()
    q = rl.phone(new_id())
    q.expect_closed(4404, "no server with that id")
    time.sleep(0.3)
    for line in open(b).read().splitlines():
        level, event, _ = strict_parse(line)
        assert level in ("warn", "err", "alert", "notice"), line
        assert event not in ("server_claimed", "phone_register_no_server"), \
            line
    b1.close()
    b2.close()


def test_sigint_is_a_graceful_stop_like_sigterm(relay):
    rl = relay(workers=2)
    sid = new_id()
    b = rl.claim(sid)
    p = rl.attach(sid)
    rl.signal(signal.SIGINT)
    for w in (b, p):
        assert w.recv_close(timeout=15) == SHUTTING_DOWN
    rl.proc.wait(15)
    assert rl.terminate() == 0


def test_repeated_reloads_keep_connections_and_serve(relay, tmp_path):
    rl = start_relay(relay, tmp_path, workers=2)
    sid = new_id()
    b = rl.claim(sid)
    p = rl.attach(sid)
    cid = hello(b, p, sid)
    for i in range(5):
        rl.signal(signal.SIGHUP)
        wait_for(lambda: len(rl.log_lines("reloaded")) +
                 len(rl.log_lines("reload_failed")) >= i + 1, timeout=15,
                 what="reload %d handled" % (i + 1))
        b.send_text(envelope(cid, b"[%d]" % i))
        assert p.recv_text() == b"[%d]" % i
        p.send_text(b"{\"r\":%d}" % i)
        assert env_re(sid).match(b.recv_text()).group(2) == b"{\"r\":%d}" % i
    assert len(rl.log_lines("reloaded")) >= 1
    # the newest generation serves new ids and new phones of the old id
    nb = rl.claim(new_id())
    np_ = rl.attach(sid)
    np_.send_text(b"[9]")
    assert env_re(sid).match(b.recv_text()).group(2) == b"[9]"
    assert rl.healthz()["connected_phones"] == 2
    # exactly one accepting generation plus the one holder
    holder = int(rl.log_lines("server_claimed", server_id=sid)[-1]["pid"])
    wait_for(lambda: rl.worker_pids() <= set(rl.worker_pids()) and
             len(rl.worker_pids() - {holder}) == 2, timeout=20,
             what="intermediate generations gone; have %r" %
             (rl.worker_pids(),))
    for w in (b, p, nb, np_):
        w.close()


def _signal_pairs(rl, first, second, rounds=20):
    """Send `first` then, after 0..0.5 ms, `second`: the second arrives
    while the master is busy with the first (for SIGHUP: right after it
    forked the new generation)."""
    for i in range(rounds):
        rl.signal(first)
        t = time.perf_counter() + 0.0001 * (i % 6)
        while time.perf_counter() < t:
            pass
        rl.signal(second)
        time.sleep(0.05)


def test_rapid_reloads_leave_exactly_one_accepting_generation(relay,
                                                             tmp_path):
    """SIGHUPs in quick succession: every generation but the last retires
    and, holding no connection, exits; none is left accepting with an old
    configuration."""
    cfg = str(tmp_path / "relay.conf")
    write_cfg(cfg, CFG_BASE)
    rl = start_relay(relay, tmp_path, workers=2, extra=["--config", cfg])
    rl.wait_workers()
    _signal_pairs(rl, signal.SIGHUP, signal.SIGHUP)
    wait_for(lambda: rl.log_lines("reloaded"), timeout=15,
             what="reloads handled")
    deadline = time.monotonic() + 10
    while len(rl.worker_pids()) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    live = rl.worker_pids()
    started = {int(d["pid"]): int(d["worker"])
               for d in rl.log_lines("worker_started")}
    retiring = {int(d["pid"]) for d in rl.log_lines("worker_retiring")}
    spawned = [int(d["worker"]) for d in rl.log_lines("worker_spawned")]
    last_slots = set(spawned[-2:])
    stale = sorted((p, started.get(p)) for p in live
                   if started.get(p) not in last_slots)
    served_by_stale = []
    if stale:
        # do the stale workers still accept new connections?
        for _ in range(12):
            sid = new_id()
            rl.claim(sid).close()
            pid = int(rl.log_lines("server_claimed", server_id=sid)[-1]["pid"])
            if pid in dict(stale):
                served_by_stale.append(pid)
    assert not stale, (
        "after %d reloads, %d workers of earlier generations still run "
        "(pid, slot): %r; of these, never logged worker_retiring: %r; "
        "%d of 12 new claims were accepted by them"
        % (len(rl.log_lines("reloaded")), len(stale), stale,
           [p for p, _ in stale if p not in retiring], len(served_by_stale)))
    assert {started.get(p) for p in live} == last_slots
    rl.claim(new_id()).close()


def test_sigusr1_right_after_reload_kills_no_worker(relay, tmp_path):
    """logrotate's SIGUSR1 landing just after a SIGHUP must not kill the
    freshly forked workers (SIGUSR1's default action is to terminate)."""
    rl = start_relay(relay, tmp_path, workers=2)
    rl.wait_workers()
    _signal_pairs(rl, signal.SIGHUP, signal.SIGUSR1)
    wait_for(lambda: rl.log_lines("reloaded"), timeout=15,
             what="reloads handled")
    time.sleep(0.5)
    killed = [d for d in rl.log_lines("worker_exited")
              if "signal" in d.get("err", "")]
    assert not killed, "workers killed by a signal: %r" % (
        [(d.get("pid"), d.get("worker"), d.get("err")) for d in killed],)
    rl.claim(new_id()).close()


# =============================================================== configuration

@pytest.mark.parametrize("args,flag", [
    (["--workers", "0"], "--workers"),
    (["--grace-period", "5x"], "--grace-period"),
    (["--insecure-listen", "nonsense"], "--insecure-listen"),
    (["--insecure-listen", "127.0.0.1:0"], "--insecure-listen"),
    (["--insecure-listen", "127.0.0.1:70000"], "--insecure-listen"),
    (["--log-level", "loud"], "--log-level"),
    (["--tls-listen", "x"], "--tls-listen"),
    (["--proxy-protocol"], "--proxy-protocol"),
    (["--metrics-listen", "0.0.0.0:9999"], "--metrics-listen"),
    (["--no-such-flag"], "--no-such-flag"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_invalid_flag_exits_2_with_one_line_naming_it(args, flag):
    rc, out, err = run_daemon(base_args() + args)
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, "want one line on stderr, got %r" % err
    assert flag in lines[0], lines[0]
    if "--tls-listen" in args or "--proxy-protocol" in args:
        assert "not supported in this build" in lines[0], lines[0]


@pytest.mark.parametrize("body,line,word", [
    ("workers = 1\n# comment\nno-such-key = 1\n", 3, "no-such-key"),
    ("workers = 1\nping-interval = 5x\n", 2, "ping-interval"),
    ("\ninsecure-listen = 127.0.0.1:0\n", 2, "insecure-listen"),
    ("this line has no equals sign\n", 1, None),
    ("workers = 1\ntls-listen = 127.0.0.1:8443\n", 2, "tls-listen"),
], ids=["unknown-key", "bad-duration", "bad-port", "syntax", "unsupported"])
def test_config_file_errors_name_file_and_line(tmp_path, body, line, word):
    cfg = str(tmp_path / "bad.conf")
    write_cfg(cfg, body)
    rc, out, err = run_daemon(base_args() + ["--config", cfg])
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "%s:%d" % (cfg, line) in lines[0], lines[0]
    if word:
        assert word in lines[0], lines[0]


def test_config_file_values_apply_and_command_line_overrides(relay,
                                                             tmp_path):
    cfg = str(tmp_path / "relay.conf")
    write_cfg(cfg, 'grace-period = 1s  # short\nlog-level = "warn"\n')
    rl = start_relay(relay, tmp_path, workers=1,
                     extra=["--config", cfg, "--log-level", "info"])
    sid = new_id()
    b = rl.claim(sid)                  # waits for an info line: CLI won
    p = rl.attach(sid)
    b.close_handshake(1000)
    assert p.recv_close(timeout=10) == (1000, "")   # 1 s grace from file


def test_check_config_exits_0_without_binding(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    cfg = str(tmp_path / "ok.conf")
    write_cfg(cfg, "workers = 2\nping-interval = 20s\n")
    try:
        for flag in ("-t", "--check-config"):
            rc, out, err = run_daemon(
                ["--insecure-listen", "127.0.0.1:%d" % port,
                 "--metrics-listen", "127.0.0.1:%d" % port,
                 "--config", cfg, flag], timeout=10)
            assert rc == 0, (flag, rc, out, err)
        # and an invalid one is still refused by -t
        rc, out, err = run_daemon(["-t", "--workers", "0"])
        assert rc == 2 and "--workers" in err, (rc, err)
    finally:
        s.close()


def test_version_prints_version_and_exits_0(relay):
    for flag in ("--version", "-V"):
        rc, out, err = run_daemon([flag])
        assert rc == 0, (rc, out, err)
        m = re.search(r"\b(\d+\.\d+\.\d+)\b", out)
        assert m and "pyrycode-relay" in out, out
    rl = relay(workers=1)
    assert rl.healthz()["version"] == m.group(1)


def man_page_flags():
    src = open(MAN_PAGE).read().replace("\\-", "-")
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*[a-z])", src)))


def test_help_exits_0_and_mentions_every_flag_of_the_man_page():
    flags = man_page_flags()
    assert "--insecure-listen" in flags and len(flags) >= 20, flags
    for h in ("--help", "-h"):
        rc, out, err = run_daemon([h])
        assert rc == 0, (rc, err)
        missing = [f for f in flags if f not in out]
        assert not missing, "--help does not mention %s" % missing


def test_production_env_must_be_1():
    for v in ("2", "yes", "0"):
        rc, out, err = run_daemon(base_args(),
                                  env={"PYRYCODE_RELAY_PRODUCTION": v})
        assert rc == 2, (v, rc, err)
        assert "PYRYCODE_RELAY_PRODUCTION" in err, err


def test_production_refuses_public_plain_listener_before_binding():
    args = ["--insecure-listen", "8.8.8.8:8080", "--metrics-listen", ""]
    if IS_ROOT:
        args += ["--user", "nobody"]
    rc, out, err = run_daemon(args, env={"PYRYCODE_RELAY_PRODUCTION": "1"})
    assert rc == 2, (rc, err)
    assert len(err.strip().splitlines()) == 1 and \
        "--insecure-listen" in err, err
    # private and loopback addresses pass the check
    for addr in ("10.1.2.3:8080", "192.168.1.1:8080", "172.16.0.1:8080",
                 "127.0.0.1:8080", "[fd00::1]:8080", "[::1]:8080"):
        rc, out, err = run_daemon(["--insecure-listen", addr,
                                   "--metrics-listen", "", "-t"] +
                                  (["--user", "nobody"] if IS_ROOT else []),
                                  env={"PYRYCODE_RELAY_PRODUCTION": "1"})
        assert rc == 0, (addr, rc, err)


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_production_refuses_root_without_user():
    rc, out, err = run_daemon(base_args(),
                              env={"PYRYCODE_RELAY_PRODUCTION": "1"})
    assert rc == 2, (rc, err)
    assert len(err.strip().splitlines()) == 1, err


def test_listener_in_use_exits_1():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        rc, out, err = run_daemon(["--insecure-listen", "127.0.0.1:%d" %
                                   s.getsockname()[1],
                                   "--metrics-listen", ""], timeout=20)
    finally:
        s.close()
    assert rc == 1, (rc, err)
    assert "listen" in err, err


def test_metrics_listener_in_use_exits_1():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        rc, out, err = run_daemon(["--insecure-listen", "127.0.0.1:%d" %
                                   free_port(), "--metrics-listen",
                                   "127.0.0.1:%d" % s.getsockname()[1]],
                                  timeout=20)
    finally:
        s.close()
    assert rc == 1, (rc, err)


# ================================================================== privileges

@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_user_drops_privileges_in_master_and_workers(relay):
    nobody = pwd.getpwnam("nobody")
    rl = relay(workers=2, extra=["--user", "nobody"])
    workers = rl.wait_workers()
    for pid in [rl.pid] + sorted(workers):
        uids, gids = proc_ids(pid)
        assert uids == [nobody.pw_uid] * 4, (pid, uids)
        assert gids == [nobody.pw_gid] * 4, (pid, gids)
    sid = new_id()
    b = rl.claim(sid)
    p = rl.attach(sid)
    cid = hello(b, p, sid)
    b.send_text(envelope(cid, b'{"ok":1}'))
    assert p.recv_text() == b'{"ok":1}'
    assert rl.healthz()["connected_phones"] == 1
    st, _, _ = rl.http_get("/metrics", port=rl.metrics_port)
    assert st == 200
    b.close()
    p.close()


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_unknown_user_is_refused():
    rc, out, err = run_daemon(base_args() + ["--user",
                                             "no-such-user-%d" % os.getpid()])
    assert rc in (1, 2), (rc, err)
    assert rc is not None


# ====================================================== install + init script

def _make_install(prefix):
    last = None
    for attempt in range(2):
        p = subprocess.run(["make", "-C", BUILDDIR, "install",
                            "prefix=" + prefix],
                           capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            return
        last = p
        time.sleep(2)                 # others may be editing src/: retry
    pytest.fail("make install failed:\n%s\n%s" % (last.stdout[-2000:],
                                                   last.stderr[-2000:]))


def test_make_install_then_init_script_lifecycle():
    if not os.path.exists(os.path.join(BUILDDIR, "Makefile")):
        pytest.skip("no build directory with a Makefile")
    if not shutil.which("start-stop-daemon"):
        pytest.skip("start-stop-daemon not available")
    tmp = tempfile.mkdtemp(prefix="relay-install-")
    os.chmod(tmp, 0o755)              # the dropped user reads the config
    try:
        _install_and_drive(tmp)
    finally:
        pidf = os.path.join(tmp, "run", "relay.pid")
        try:
            pid = int(open(pidf).read())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(tmp, ignore_errors=True)


def _install_and_drive(tmp):
    prefix = os.path.join(tmp, "usr")
    _make_install(prefix)
    daemon = os.path.join(prefix, "sbin", "pyrycode-relay")
    init = os.path.join(prefix, "etc", "init.d", "pyrycode-relay")
    conf_dir = os.path.join(prefix, "etc", "pyrycode-relay")
    man = os.path.join(prefix, "share", "man", "man8", "pyrycode-relay.8")
    for f in (daemon, init, man,
              os.path.join(conf_dir, "pyrycode-relay.conf"),
              os.path.join(prefix, "share", "doc", "pyrycode-relay",
                           "examples", "pyrycode-relay.conf")):
        assert os.path.exists(f), "not installed: %s" % f
    assert os.access(daemon, os.X_OK) and os.access(init, os.X_OK)
    script = open(init).read()
    assert daemon in script, "init script does not name the installed daemon"
    assert conf_dir in script, "init script does not name the installed conf"

    # the shipped sample changes nothing and passes -t
    rc, out, err = run_daemon(["--config",
                               os.path.join(conf_dir, "pyrycode-relay.conf"),
                               "-t"])
    assert rc == 0, (rc, err)

    # our configuration under the temp dir
    port, mport = free_port(), free_port()
    conf = os.path.join(conf_dir, "pyrycode-relay.conf")
    with open(conf, "w") as f:
        f.write("insecure-listen = 127.0.0.1:%d\nmetrics-listen = "
                "127.0.0.1:%d\nworkers = 1\nping-interval = 30s\n" %
                (port, mport))
    os.chmod(conf, 0o644)
    for d in (prefix, os.path.join(prefix, "etc"), conf_dir):
        os.chmod(d, 0o755)
    # the script reads its paths from /etc/default/pyrycode-relay (only
    # DAEMON may come from the environment): point a copy at our own
    # defaults file instead of the system one
    run_dir = os.path.join(tmp, "run")
    os.mkdir(run_dir)
    log_dir = os.path.join(tmp, "log")
    defaults = os.path.join(tmp, "default")
    user = "nobody" if IS_ROOT else ""
    with open(defaults, "w") as f:
        f.write('PIDFILE=%s/relay.pid\nLOGDIR=%s\nLOGFILE=%s/relay.log\n'
                'RELAY_USER="%s"\nSTOP_TIMEOUT=15\n' %
                (run_dir, log_dir, log_dir, user))
    assert "/etc/default/$NAME" in script
    test_init = os.path.join(tmp, "init-pyrycode-relay")
    with open(test_init, "w") as f:
        f.write(script.replace("/etc/default/$NAME", defaults))
    os.chmod(test_init, 0o755)
    pidfile = os.path.join(run_dir, "relay.pid")
    logfile = os.path.join(log_dir, "relay.log")
    env = dict(os.environ)
    env.pop("PYRYCODE_RELAY_PRODUCTION", None)
    env.pop("DAEMON", None)

    def init_cmd(action, timeout=40):
        p = subprocess.run(["/bin/sh", test_init, action], env=env,
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout + p.stderr

    def healthz():
        r = Relay.__new__(Relay)
        r.host, r.port = "127.0.0.1", port
        st, _, body = r.http_get("/healthz", timeout=2)
        return json.loads(body) if st == 200 else None

    def log():
        try:
            return open(logfile).read()
        except OSError:
            return ""

    rc, out = init_cmd("status")
    assert rc == 3, ("status before start", rc, out)
    rc, out = init_cmd("start")
    assert rc == 0, ("start", rc, out, log())
    h = wait_for(healthz, timeout=15, what="installed relay healthy")
    assert h["status"] == "ok"
    pid = int(open(pidfile).read())
    assert os.readlink("/proc/%d/exe" % pid) == daemon
    if user:
        assert proc_ids(pid)[0][0] == pwd.getpwnam(user).pw_uid
    rc, out = init_cmd("status")
    assert rc == 0, ("status running", rc, out)
    rc, out = init_cmd("start")           # already running: still 0
    assert rc == 0, ("second start", rc, out)
    assert int(open(pidfile).read()) == pid
    rc, out = init_cmd("configtest")
    assert rc == 0, ("configtest", rc, out)

    # reload: the master survives, a new generation serves
    rc, out = init_cmd("reload")
    assert rc == 0, ("reload", rc, out)
    wait_for(lambda: "event=reloaded" in log(), timeout=15,
             what="event=reloaded in %s; log:\n%s" % (logfile, log()[-2000:]))
    assert "reload_failed" not in log(), log()[-2000:]
    assert pid_alive(pid) and int(open(pidfile).read()) == pid
    assert wait_for(healthz, timeout=10)["status"] == "ok"
    ws = W.connect("127.0.0.1", port, "/v1/server",
                   {"x-pyrycode-server": new_id(), "x-pyrycode-version": "1",
                    "user-agent": "init-test"})
    assert isinstance(ws, W.WebSocket), ws
    ws.ping_roundtrip()

    # restart: a new master, healthy again
    rc, out = init_cmd("restart")
    assert rc == 0, ("restart", rc, out, log()[-2000:])
    assert ws.recv_close(timeout=10) == SHUTTING_DOWN
    wait_for(lambda: not pid_alive(pid), timeout=10, what="old master gone")
    pid = wait_for(lambda: os.path.exists(pidfile) and
                   int(open(pidfile).read() or 0), timeout=10,
                   what="pid file after restart")
    assert pid_alive(pid)
    assert wait_for(healthz, timeout=15)["status"] == "ok"
    ws = W.connect("127.0.0.1", port, "/v1/server",
                   {"x-pyrycode-server": new_id(), "x-pyrycode-version": "1",
                    "user-agent": "init-test"})
    assert isinstance(ws, W.WebSocket), ws
    ws.ping_roundtrip()

    rc, out = init_cmd("stop")
    assert rc == 0, ("stop", rc, out)
    assert ws.recv_close(timeout=10) == SHUTTING_DOWN
    wait_for(lambda: not pid_alive(pid), timeout=10, what="master gone")
    assert not os.path.exists(pidfile)
    rc, out = init_cmd("status")
    assert rc == 3, ("status stopped", rc, out)
    rc, out = init_cmd("stop")            # not running: still 0
    assert rc == 0, ("second stop", rc, out)
    assert "event=master_exiting" in log(), log()[-2000:]

    # the man page is installed and renders
    if shutil.which("man"):
        p = subprocess.run(["man", "-l", man], capture_output=True,
                           text=True, timeout=30,
                           env=dict(os.environ, MANPAGER="cat", PAGER="cat",
                                    MANWIDTH="80"))
        assert p.returncode == 0, p.stderr
        for word in ("NAME", "SYNOPSIS", "SIGNALS", "--insecure-listen",
                     "PYRYCODE_RELAY_PRODUCTION"):
            assert word in p.stdout.replace("\u2010", "-"), word
