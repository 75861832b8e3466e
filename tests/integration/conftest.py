"""Fixtures that run the real built relay on loopback.

`relay` is a factory: relay(workers=2, extra=["--grace-period", "1s"]) starts
one daemon with free ports, waits for /healthz, and stops it (SIGTERM, exit
code 0 within 15 s) when the test ends.  `module_relay` is the same factory
scoped to a module, for relays that many tests share.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclient  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.path.normpath(
    os.path.join(HERE, "..", "..", "_build", "src", "pyrycode-relay"))
RELAY_BIN = os.environ.get("RELAY_BIN") or DEFAULT_BIN

STOP_TIMEOUT = 15.0
START_TIMEOUT = 20.0


def wait_for(predicate, timeout=10.0, interval=0.05, what=None):
    """Poll predicate until it returns a truthy value; return that value.
    Fails the test after timeout (an upper bound, never a timing claim)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:          # noqa: BLE001 - keep polling
            last_exc = e
        if time.monotonic() > deadline:
            msg = "timed out after %.1fs waiting for %s" % (
                timeout, what or getattr(predicate, "__name__", "condition"))
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            pytest.fail(msg)
        time.sleep(interval)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def new_id():
    return str(uuid.uuid4())


_LOG_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')


def _unquote(v):
    if not v.startswith('"'):
        return v
    v = v[1:-1]
    out = []
    i = 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            n = v[i + 1]
            if n == "x" and i + 3 < len(v):
                out.append(chr(int(v[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append(n)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_log_line(line):
    """'TS level event=x k=v ...' -> dict with 'ts', 'level' and the keys."""
    parts = line.split(" ", 2)
    d = {}
    if len(parts) >= 3:
        d["ts"], d["level"] = parts[0], parts[1]
        rest = parts[2]
    else:
        rest = line
    for k, v in _LOG_RE.findall(rest):
        d.setdefault(k, _unquote(v))
    return d


_METRIC_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> list of (name, {labels}, float)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        if not m:
            raise AssertionError("bad metrics line %r" % line)
        labels = dict(_LABEL_RE.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


class Relay:
    def __init__(self, logdir, workers=2, extra=(), env=None):
        self.logdir = logdir
        self.workers = workers
        self.extra = list(extra)
        self.env = env
        self.proc = None
        self.host = "127.0.0.1"
        self.stopped = False
        self.returncode = None
        self.sockets = []

    # ------------------------------------------------------------ lifecycle
    def start(self):
        if not os.access(RELAY_BIN, os.X_OK):
            pytest.fail("relay binary %s not built (set RELAY_BIN)" %
                        RELAY_BIN)
        for attempt in range(3):
            self.port = free_port()
            self.metrics_port = free_port()
            self.log_path = os.path.join(
                str(self.logdir), "relay-%d-%d.log" % (self.port, attempt))
            self.argv = [RELAY_BIN,
                         "--insecure-listen", "127.0.0.1:%d" % self.port,
                         "--metrics-listen",
                         "127.0.0.1:%d" % self.metrics_port,
                         "--workers", str(self.workers)] + self.extra
            env = dict(os.environ)
            env.pop("PYRYCODE_RELAY_PRODUCTION", None)
            env.pop("PYRYCODE_RELAY_FCM_CREDENTIALS", None)
            if self.env:
                env.update(self.env)
            self._logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                stderr=self._logf, env=env, start_new_session=True)
            self.pid = self.proc.pid
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    break
                try:
                    st, _, _ = self.http_get("/healthz", timeout=1.0)
                    if st == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            rc = self.proc.poll()
            if rc == 1 and attempt < 2:       # port raced away: retry
                self._logf.close()
                continue
            self._kill_hard()
            pytest.fail("relay did not become healthy (rc=%r); log:\n%s" %
                        (rc, self.log_text()[-4000:]))
        return self

    def _kill_hard(self):
        if self.proc is None:
            return
        pids = self.worker_pids() if self.proc.poll() is None else []
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM the master; return its exit code (None if it hung, after
        which it is SIGKILLed)."""
        if self.stopped:
            return self.returncode
        self.stopped = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.returncode = None
            self._kill_hard()
        else:
            # no worker may outlive the master
            try:
                os.killpg(self.proc.pid, 0)
                time.sleep(0.5)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self._logf.close()
        return self.returncode

    def stop_and_check(self):
        rc = self.terminate()
        assert rc == 0, "relay exit code %r after SIGTERM (want 0); log " \
            "tail:\n%s" % (rc, self.log_text()[-3000:])

    # ------------------------------------------------------------ http
    def http_get(self, path, port=None, method="GET", timeout=5.0):
        c = http.client.HTTPConnection(
            self.host, port or self.port, timeout=timeout,
            source_address=(wsclient.random_loopback_ip(), 0))
        try:
            c.request(method, path)
            r = c.getresponse()
            body = r.read()
            return r.status, r.getheaders(), body
        finally:
            c.close()

    def healthz(self):
        st, hdrs, body = self.http_get("/healthz")
        assert st == 200, (st, body)
        return json.loads(body)

    def metrics(self):
        st, hdrs, body = self.http_get("/metrics", port=self.metrics_port)
        assert st == 200, (st, body)
        return body.decode()

    def metric(self, name, **labels):
        """Value of one series (sum over matching label sets), or None."""
        vals = [v for n, l, v in parse_metrics(self.metrics())
                if n == name and all(l.get(k) == v2
                                     for k, v2 in labels.items())]
        return sum(vals) if vals else None

    # ------------------------------------------------------------ logs
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self, event=None, **kv):
        out = []
        for line in self.log_text().splitlines():
            d = parse_log_line(line)
            if event is not None and d.get("event") != event:
                continue
            if all(d.get(k) == v for k, v in kv.items()):
                out.append(d)
        return out

    def wait_log(self, event, timeout=10.0, **kv):
        return wait_for(lambda: self.log_lines(event, **kv), timeout,
                        what="log event=%s %r" % (event, kv))

    # ------------------------------------------------------------ processes
    def worker_pids(self):
        pid = self.proc.pid
        kids = set()
        try:
            for t in os.listdir("/proc/%d/task" % pid):
                try:
                    with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                        kids.update(int(x) for x in f.read().split())
                except OSError:
                    pass
        except OSError:
            pass
        if not kids:
            try:
                out = subprocess.run(
                    ["ps", "-o", "pid=", "--ppid", str(pid)],
                    capture_output=True, text=True, timeout=5).stdout
                kids.update(int(x) for x in out.split())
            except (OSError, subprocess.SubprocessError):
                pass
        # zombies are not workers
        live = set()
        for k in kids:
            try:
                with open("/proc/%d/stat" % k) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    live.add(k)
            except OSError:
                pass
        return live

    def wait_workers(self, n=None, timeout=15.0):
        n = self.workers if n is None else n
        return wait_for(lambda: (lambda s: s if len(s) == n else None)(
            self.worker_pids()), timeout, what="%d workers" % n)

    # ------------------------------------------------------------ peers
    def connect(self, path, headers=None, **kw):
        r = wsclient.connect(self.host, self.port, path, headers, **kw)
        if isinstance(r, wsclient.WebSocket):
            self.sockets.append(r)
        return r

    def server_headers(self, sid, version="1.0.0", ua="pyry-test/1"):
        return {"x-pyrycode-server": sid, "x-pyrycode-version": version,
                "user-agent": ua}

    def client_headers(self, sid, ua="phone-test/1", device=None):
        h = {"x-pyrycode-server": sid, "user-agent": ua}
        if device is not None:
            h["x-pyrycode-device-name"] = device
        return h

    def binary(self, sid, expect_open=True, **kw):
        """Claim sid; returns the WebSocket (or the HTTPResponse if refused
        before the upgrade when expect_open is False)."""
        r = self.connect("/v1/server", self.server_headers(sid), **kw)
        if expect_open:
            assert isinstance(r, wsclient.WebSocket), \
                "claim refused before upgrade: %r" % (r,)
        return r

    def phone(self, sid, expect_open=True, headers=None, **kw):
        h = self.client_headers(sid)
        if headers:
            h.update(headers)
        r = self.connect("/v1/client", h, **kw)
        if expect_open:
            assert isinstance(r, wsclient.WebSocket), \
                "phone refused before upgrade: %r" % (r,)
        return r

    def _claims(self, sid):
        return (len(self.log_lines("server_claimed", server_id=sid)) +
                len(self.log_lines("server_id_takeover", server_id=sid)))

    def claim(self, sid, **kw):
        """Claim sid and prove the claim held: a new server_claimed (or
        server_id_takeover) line for sid is logged and the binary is still
        open afterwards (a ping round trip is answered)."""
        before = self._claims(sid)
        ws = self.binary(sid, **kw)
        wait_for(lambda: self._claims(sid) > before,
                 what="claim of %s logged (server_claimed)" % sid)
        ws.ping_roundtrip(b"claim")
        return ws

    def attach(self, sid, **kw):
        """Attach a phone and prove it stayed attached (phone_registered
        logged, then a ping round trip answered)."""
        before = len(self.log_lines("phone_registered", server_id=sid))
        ws = self.phone(sid, **kw)
        wait_for(lambda: len(self.log_lines("phone_registered",
                                            server_id=sid)) > before,
                 what="phone_registered for %s" % sid)
        ws.ping_roundtrip(b"attach")
        return ws


class _Factory:
    def __init__(self, tmp_factory, name):
        self.tmp_factory = tmp_factory
        self.name = name
        self.relays = []

    def __call__(self, workers=2, extra=(), env=None):
        d = self.tmp_factory.mktemp(self.name)
        r = Relay(d, workers, extra, env)
        self.relays.append(r)
        return r.start()

    def finish(self):
        errors = []
        for r in self.relays:
            for ws in r.sockets:        # leave nothing for the drain to wait on
                ws.close()
            rc = r.terminate()
            if rc != 0:
                errors.append("relay %s exited %r after SIGTERM; log tail:\n%s"
                              % (r.argv, rc, r.log_text()[-3000:]))
        return errors


@pytest.fixture
def relay(tmp_path_factory):
    f = _Factory(tmp_path_factory, "relay")
    yield f
    errors = f.finish()
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture(scope="module")
def module_relay(tmp_path_factory):
    f = _Factory(tmp_path_factory, "mrelay")
    yield f
    errors = f.finish()
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture(autouse=True)
def _close_leftover_sockets():
    """Close every WebSocket a test left open, so shared relays start the
    next test clean and drain quickly at the end."""
    n = len(wsclient.OPEN_SOCKETS)
    yield
    for ws in wsclient.OPEN_SOCKETS[n:]:
        ws.close()
    del wsclient.OPEN_SOCKETS[n:]


@pytest.fixture
def sid():
    return new_id()
