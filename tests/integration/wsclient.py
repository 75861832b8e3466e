"""A small RFC 6455 WebSocket client on raw sockets, for the integration tests.

Standard library only.  It gives a test exact control over what goes on the
wire (masking, reserved bits, fragmentation, raw bytes) and exact visibility
of what comes back (status line, headers, body, every frame, close code and
reason, or a TCP close without a close frame).

    r = connect("127.0.0.1", port, "/v1/server", {"x-pyrycode-server": sid,
                "x-pyrycode-version": "1.0", "user-agent": "t"})
    if isinstance(r, HTTPResponse): ...   # refused before the upgrade
    ws = r                                # an open WebSocket
    ws.send_text('{"a":1}')
    opcode, payload = ws.recv()
    ws.expect_closed(4409, "server-id already claimed")

Every connection binds a random source address 127.A.B.C before connecting,
because the relay rate-limits upgrades per client IP; pass source_ip to pick
one.  Each open WebSocket runs a reader thread that parses frames as they
arrive and, unless auto_pong is off, answers pings at once, so a test that is
busy elsewhere still looks alive to the relay's heartbeat; unless
auto_close is off it also echoes the relay's close frame at once, as a
well-behaved client does (the code it echoes is the relay's own).
"""

import base64
import hashlib
import os
import queue
import random
import socket
import struct
import threading
import time

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_TIMEOUT = 10.0

# every WebSocket opened, so a test harness can close what a test left open
OPEN_SOCKETS = []


class _TCPClosedMarker:
    """recv_close() result when the TCP connection ended with no close frame."""

    def __repr__(self):
        return "TCP_CLOSED"

    def __eq__(self, other):
        return isinstance(other, _TCPClosedMarker)

    def __hash__(self):
        return 0


TCP_CLOSED = _TCPClosedMarker()


class TCPClosed(Exception):
    """The TCP connection ended (EOF or reset) while a frame was expected."""


class Timeout(Exception):
    """Nothing arrived within the timeout."""


class ProtocolError(Exception):
    """The peer sent something that is not valid RFC 6455 from a server."""


def random_loopback_ip():
    return "127.%d.%d.%d" % (random.randint(1, 254), random.randint(1, 254),
                             random.randint(1, 254))


def accept_for(key):
    return base64.b64encode(
        hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def mask_bytes(key, data):
    """XOR data with the 4-byte key, fast for large payloads."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")
            ).to_bytes(n, "little")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True,
                mask_key=None, length_override=None):
    """Encode one frame.  rsv is a 3-bit value (RSV1=4, RSV2=2, RSV3=1)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length_override is None else length_override
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        return head + key + mask_bytes(key, payload)
    return head + payload


def close_payload(code=None, reason=""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.payload = masked, payload

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else (
            self.payload[:80] + b"...(%d)" % len(self.payload))
        return "Frame(fin=%d rsv=%d op=%#x masked=%d %r)" % (
            self.fin, self.rsv, self.opcode, self.masked, p)


class HTTPResponse:
    """A response that was not a 101: status, headers, body, and whether the
    relay closed the socket afterwards (eof)."""

    def __init__(self, status, reason, headers, raw_head, body, eof):
        self.status = status
        self.reason = reason
        self.header_list = headers           # [(name, value)] as received
        self.raw_head = raw_head
        self.body = body
        self.eof = eof

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.header_list:
            if k.lower() == name:
                return v
        return default

    def headers_named(self, name):
        name = name.lower()
        return [v for k, v in self.header_list if k.lower() == name]

    @property
    def headers(self):
        d = {}
        for k, v in self.header_list:
            d.setdefault(k.lower(), v)
        return d

    def __repr__(self):
        return "HTTPResponse(%d %s, %r, body=%r, eof=%s)" % (
            self.status, self.reason, self.header_list, self.body[:200],
            self.eof)


def _open_socket(host, port, source_ip, timeout):
    if source_ip is None:
        source_ip = random_loopback_ip()
    last = None
    for _ in range(5):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if source_ip:
                s.bind((source_ip, 0))
            s.settimeout(timeout)
            s.connect((host, port))
            return s, source_ip
        except OSError as e:        # EADDRINUSE on a rare port clash
            last = e
            s.close()
            time.sleep(0.05)
    raise last


def open_raw(host, port, source_ip=None, timeout=DEFAULT_TIMEOUT):
    """A plain connected TCP socket from a random loopback source address."""
    return _open_socket(host, port, source_ip, timeout)[0]


def read_until_eof(sock, timeout=DEFAULT_TIMEOUT, limit=1 << 20):
    """Read until EOF or reset; returns (bytes, how) with how in
    'eof', 'reset', 'timeout'."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while len(out) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return bytes(out), "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return bytes(out), "reset"
        if not chunk:
            return bytes(out), "eof"
        out += chunk
    return bytes(out), "limit"


def _parse_head(raw):
    text = raw.decode("iso-8859-1")
    lines = text.split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ProtocolError("bad status line %r" % status_line)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        if ":" not in line:
            raise ProtocolError("bad header line %r" % line)
        k, v = line.split(":", 1)
        headers.append((k, v.strip()))
    return status, reason, headers


def read_response(sock, timeout=DEFAULT_TIMEOUT, body_wait=5.0):
    """Read one HTTP response head (and, if it is not a 101, the body and the
    close that must follow).  Returns (HTTPResponse, leftover bytes)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("no complete response head; got %r" % buf[:300])
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise Timeout("no complete response head; got %r" % buf[:300])
        except ConnectionResetError:
            raise TCPClosed("reset before response head; got %r" % buf[:300])
        if not chunk:
            raise TCPClosed("EOF before response head; got %r" % buf[:300])
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    raw_head, rest = buf[:end], buf[end:]
    status, reason, headers = _parse_head(raw_head[:-4])
    resp = HTTPResponse(status, reason, headers, raw_head, b"", False)
    if status == 101:
        return resp, rest
    more, how = read_until_eof(sock, timeout=body_wait)
    resp.body = rest + more
    resp.eof = how in ("eof", "reset")
    return resp, b""


def build_request(host, port, path, headers=None, method="GET",
                  http_version="HTTP/1.1", ws=True, key=None):
    """Build a request head.  headers is a dict or a list of (name, value);
    a value of None removes a default header.  With ws=True the usual
    upgrade headers are added unless headers overrides them."""
    given = list(headers.items()) if isinstance(headers, dict) else list(
        headers or [])
    lower = {k.lower() for k, _ in given}
    defaults = [("Host", "%s:%d" % (host, port))]
    if ws:
        defaults += [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                     ("Sec-WebSocket-Key", key or new_key()),
                     ("Sec-WebSocket-Version", "13")]
    lines = ["%s %s %s" % (method, path, http_version)]
    for k, v in defaults:
        if k.lower() not in lower:
            lines.append("%s: %s" % (k, v))
    for k, v in given:
        if v is not None:
            lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def connect(host, port, path, headers=None, source_ip=None, method="GET",
            http_version="HTTP/1.1", auto_pong=True, timeout=DEFAULT_TIMEOUT,
            key=None, auto_close=True):
    """Do the HTTP upgrade.  Returns an open WebSocket (whose .response is
    the 101) or, for any other status, an HTTPResponse."""
    sock, ip = _open_socket(host, port, source_ip, timeout)
    key = key or new_key()
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(
        headers or [])
    if not any(k.lower() == "sec-websocket-key" for k, _ in hdrs):
        hdrs.append(("Sec-WebSocket-Key", key))
    else:
        key = [v for k, v in hdrs if k.lower() == "sec-websocket-key"][0]
    try:
        sock.sendall(build_request(host, port, path, hdrs, method,
                                   http_version))
        resp, rest = read_response(sock, timeout)
    except BaseException:
        sock.close()
        raise
    if resp.status != 101:
        sock.close()
        return resp
    ws = WebSocket(sock, resp, rest, key=key, auto_pong=auto_pong,
                   source_ip=ip, auto_close=auto_close)
    return ws


class WebSocket:
    def __init__(self, sock, response, leftover=b"", key=None,
                 auto_pong=True, source_ip=None, auto_close=True):
        self.sock = sock
        self.auto_close = auto_close
        OPEN_SOCKETS.append(self)
        self.response = response
        self.key = key
        self.source_ip = source_ip
        self.auto_pong = auto_pong
        self.frames = queue.Queue()
        self.pings = []            # payloads of pings received
        self.pongs = []            # payloads of pongs received
        self.close_frame_payload = None
        self.peer_close_payload = None     # set by the reader thread
        self.close_sent = False
        self.eof = False
        self.eof_how = None
        self._buf = bytearray(leftover)
        self._wlock = threading.Lock()
        self._pending = None       # (opcode, [payloads]) of a fragmented msg
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # ------------------------------------------------------------ reading
    def _fill(self, n):
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise EOFError
            self._buf += chunk

    def _take(self, n):
        self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _read_frame(self):
        b0, b1 = self._take(2)
        fin, rsv, opcode = b0 >> 7, (b0 >> 4) & 7, b0 & 0xF
        masked, n = b1 >> 7, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        key = self._take(4) if masked else None
        payload = self._take(n)
        if masked:
            payload = mask_bytes(key, payload)
        return Frame(fin, rsv, opcode, masked, payload)

    def _read_loop(self):
        try:
            self.sock.settimeout(None)
            while True:
                f = self._read_frame()
                if f.opcode == OP_PING:
                    self.pings.append(f.payload)
                    if self.auto_pong and not self.close_sent:
                        try:
                            self.send_frame(OP_PONG, f.payload)
                        except OSError:
                            pass
                elif f.opcode == OP_PONG:
                    self.pongs.append(f.payload)
                elif f.opcode == OP_CLOSE:
                    self.peer_close_payload = f.payload
                    if self.auto_close and not self.close_sent:
                        try:        # echo like a well-behaved client
                            self.send_frame(OP_CLOSE, f.payload[:2])
                            self.close_sent = True
                        except OSError:
                            pass
                self.frames.put(f)
        except EOFError:
            self.eof_how = "eof"
        except (ConnectionResetError, BrokenPipeError):
            self.eof_how = "reset"
        except OSError as e:            # closed locally
            self.eof_how = "local:%s" % e
        self.eof = True
        self.frames.put(None)

    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        """Next frame from the relay (pings and pongs included).
        Raises Timeout, or TCPClosed at end of stream."""
        try:
            f = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise Timeout("no frame within %.1fs" % timeout)
        if f is None:
            self.frames.put(None)       # stay at end of stream
            raise TCPClosed(self.eof_how)
        return f

    def recv(self, timeout=DEFAULT_TIMEOUT, control=False):
        """Next complete message as (opcode, payload).  Fragments are
        reassembled.  Pings/pongs are skipped unless control=True.  A close
        frame is returned as (OP_CLOSE, payload).  Raises Timeout/TCPClosed.
        """
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.rsv:
                raise ProtocolError("relay set reserved bits: %r" % f)
            if f.masked:
                raise ProtocolError("relay masked a frame: %r" % f)
            if f.opcode in (OP_PING, OP_PONG):
                if control:
                    return f.opcode, f.payload
                continue
            if f.opcode == OP_CLOSE:
                self.close_frame_payload = f.payload
                return OP_CLOSE, f.payload
            if f.opcode in (OP_TEXT, OP_BINARY):
                if self._pending is not None:
                    raise ProtocolError("new message inside fragmented one")
                if f.fin:
                    return f.opcode, f.payload
                self._pending = (f.opcode, [f.payload])
                continue
            if f.opcode == OP_CONT:
                if self._pending is None:
                    raise ProtocolError("continuation without start")
                self._pending[1].append(f.payload)
                if f.fin:
                    op, parts = self._pending
                    self._pending = None
                    return op, b"".join(parts)
                continue
            raise ProtocolError("unknown opcode in %r" % f)

    def recv_text(self, timeout=DEFAULT_TIMEOUT):
        """Next message, which must be a text frame; returns its bytes."""
        op, payload = self.recv(timeout)
        if op != OP_TEXT:
            raise AssertionError("expected a text message, got op=%#x %r" %
                                 (op, payload[:200]))
        return payload

    def recv_close(self, timeout=DEFAULT_TIMEOUT, echo=True, keep_data=True):
        """Wait for the end of the connection.  Returns (code, reason) for a
        close frame (code 1005 and reason '' for an empty payload; the raw
        payload is in close_frame_payload), or TCP_CLOSED if the TCP stream
        ended without one.  Data messages read meanwhile are kept in
        self.unread.  With echo, answers the close like a well-behaved
        client, echoing the code."""
        self.unread = getattr(self, "unread", [])
        deadline = time.monotonic() + timeout
        while True:
            try:
                op, payload = self.recv(max(0.0, deadline - time.monotonic()))
            except TCPClosed:
                return TCP_CLOSED
            if op != OP_CLOSE:
                if keep_data:
                    self.unread.append((op, payload))
                continue
            if len(payload) == 0:
                code, reason = 1005, ""
            elif len(payload) == 1:
                raise ProtocolError("1-byte close payload")
            else:
                code = struct.unpack("!H", payload[:2])[0]
                reason = payload[2:].decode("utf-8")
            if echo and not self.close_sent:
                try:
                    self.send_close(code if payload else None)
                except OSError:
                    pass
            return code, reason

    def expect_closed(self, code, reason=None, timeout=DEFAULT_TIMEOUT,
                      echo=True):
        """Assert the relay closes with (code, reason) (reason None: any), or,
        with code TCP_CLOSED, that TCP ends without a close frame.  Then waits
        for the TCP close."""
        got = self.recv_close(timeout, echo=echo)
        if code == TCP_CLOSED:
            assert got == TCP_CLOSED, "expected TCP close without close " \
                "frame, got close frame %r" % (got,)
        else:
            assert got != TCP_CLOSED, "expected close %r %r, TCP closed " \
                "without a close frame (%s)" % (code, reason, self.eof_how)
            if reason is None:
                assert got[0] == code, "expected close code %r, got %r" % (
                    code, got)
            else:
                assert got == (code, reason), \
                    "expected close %r, got %r" % ((code, reason), got)
            self.wait_tcp_closed(timeout)
        return got

    def wait_tcp_closed(self, timeout=DEFAULT_TIMEOUT):
        """Wait until the relay has closed the TCP connection."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if time.monotonic() > deadline:
                raise Timeout("TCP still open after %.1fs" % timeout)
            time.sleep(0.02)
        self.close()

    def expect_silence(self, seconds):
        """Assert no data message and no close arrives for `seconds`."""
        try:
            op, payload = self.recv(seconds)
        except Timeout:
            return
        except TCPClosed:
            raise AssertionError("TCP closed unexpectedly (%s)" % self.eof_how)
        raise AssertionError("unexpected message op=%#x %r" %
                             (op, payload[:200]))

    def ping_roundtrip(self, payload=b"rt", timeout=DEFAULT_TIMEOUT):
        """Send a ping and wait for its pong (proves the connection is live
        and everything queued before it was processed)."""
        self.send_ping(payload)
        deadline = time.monotonic() + timeout
        while True:
            op, p = self.recv(max(0.0, deadline - time.monotonic()),
                              control=True)
            if op == OP_PONG and p == payload:
                return
            if op == OP_CLOSE:
                raise AssertionError("closed instead of pong: %r" % p)
            if op not in (OP_PING, OP_PONG):
                self.unread = getattr(self, "unread", [])
                self.unread.append((op, p))

    # ------------------------------------------------------------ writing
    def send_raw(self, data):
        with self._wlock:
            self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True,
                   mask_key=None):
        self.send_raw(build_frame(opcode, payload, fin, rsv, mask, mask_key))

    def _send_message(self, opcode, payload, mask, rsv, fragments):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if not fragments or fragments <= 1:
            self.send_frame(opcode, payload, True, rsv, mask)
            return
        size = max(1, -(-len(payload) // fragments))
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)]
        while len(chunks) < fragments:
            chunks.append(b"")
        data = b""
        for i, c in enumerate(chunks):
            data += build_frame(opcode if i == 0 else OP_CONT, c,
                                fin=(i == len(chunks) - 1),
                                rsv=rsv if i == 0 else 0, mask=mask)
        self.send_raw(data)

    def send_text(self, payload, mask=True, rsv=0, fragments=None):
        self._send_message(OP_TEXT, payload, mask, rsv, fragments)

    def send_binary(self, payload, mask=True, rsv=0, fragments=None):
        self._send_message(OP_BINARY, payload, mask, rsv, fragments)

    def send_many_text(self, payloads):
        """Pipeline many text messages in few writes."""
        batch = []
        size = 0
        for p in payloads:
            f = build_frame(OP_TEXT, p)
            batch.append(f)
            size += len(f)
            if size > 65536:
                self.send_raw(b"".join(batch))
                batch, size = [], 0
        if batch:
            self.send_raw(b"".join(batch))

    def send_ping(self, payload=b"", mask=True):
        self.send_frame(OP_PING, payload, mask=mask)

    def send_pong(self, payload=b"", mask=True):
        self.send_frame(OP_PONG, payload, mask=mask)

    def send_close(self, code=1000, reason=""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))
        self.close_sent = True

    def close_handshake(self, code=1000, reason="", timeout=DEFAULT_TIMEOUT):
        """Send a close and return the relay's answer like recv_close()."""
        self.send_close(code, reason)
        return self.recv_close(timeout, echo=False)

    def abort(self):
        """Drop the TCP connection without a close frame (RST-free FIN)."""
        self.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
