"""The phone side and routing: attach refusals, the envelope both ways, the
decision table, close directives and notices, grace, reclaim, takeover,
heartbeat, many workers, and a worker crash (SPEC.md sections 3-9)."""

import json
import os
import re
import signal
import struct
import threading

import pytest

import wsclient as W
from conftest import new_id, wait_for

NO_SERVER = (4404, "no server with that id")
RECLAIMED = (4404, "binary reclaimed server-id")
PHONE_CAP = (4429, "too many phones for server-id")
HEARTBEAT = (1011, "heartbeat timeout")


@pytest.fixture(scope="module")
def r(module_relay):
    return module_relay(workers=2, extra=["--conflict-probe-timeout", "1s"])


def env_re(sid):
    return re.compile(rb'\{"conn_id":"(client-' + re.escape(sid.encode()) +
                      rb'-[0-9a-f]{8})","frame":(.*)\}\Z', re.S)


def unwrap(sid, msg):
    m = env_re(sid).match(msg)
    assert m, "not a relay envelope for %s: %r" % (sid, msg[:300])
    return m.group(1).decode(), m.group(2)


def hello(b, p, sid, payload=b'{"hello":true}'):
    """Let the binary learn the phone's conn_id from its first frame."""
    p.send_text(payload)
    cid, frame = unwrap(sid, b.recv_text())
    assert frame == payload
    return cid


def notice(cid, code):
    return b'{"conn_id":"%s","close_code":%d}' % (cid.encode(), code)


def envelope(cid, frame=None, close=None, extra=b""):
    parts = [b'"conn_id":' + json.dumps(cid).encode()]
    if frame is not None:
        parts.append(b'"frame":' + frame)
    if close is not None:
        parts.append(b'"close_code":' + str(close).encode())
    if extra:
        parts.append(extra)
    return b"{" + b",".join(parts) + b"}"


def make_pair(r, phones=1):
    sid = new_id()
    b = r.claim(sid)
    ps = [r.attach(sid) for _ in range(phones)]
    cids = [hello(b, p, sid) for p in ps]
    return sid, b, ps, cids


# -------------------------------------------------------------- attaching

def test_phone_for_unknown_id_gets_4404(r):
    sid = new_id()
    p = r.phone(sid)
    p.expect_closed(*NO_SERVER)
    r.wait_log("phone_register_no_server", server_id=sid)


def test_seventeenth_phone_gets_4429_and_a_freed_place_is_reusable(r):
    sid = new_id()
    b = r.claim(sid)
    phones = [r.attach(sid) for _ in range(16)]
    extra = r.phone(sid)
    extra.expect_closed(*PHONE_CAP)
    r.wait_log("phone_register_at_cap", server_id=sid)
    for p in phones:
        p.ping_roundtrip()
    phones[3].close_handshake(1000)
    b.recv_text()                     # its close notice
    again = wait_for(lambda: (lambda w: w if w.peer_close_payload is None
                              and not w.eof and _alive(w) else None)(
        r.phone(sid)), timeout=15, what="a 16th phone after one left")
    again.send_text(b"[16]")
    assert unwrap(sid, b.recv_text())[1] == b"[16]"
    for w in phones + [again, b]:
        w.close()


def _alive(w):
    try:
        w.expect_silence(0.5)
        return True
    except AssertionError:
        w.close()
        return False


@pytest.mark.parametrize("header", ["user-agent", "x-pyrycode-server"])
@pytest.mark.parametrize("value", [None, "", " "],
                         ids=["missing", "empty", "spaces"])
def test_phone_without_required_header_gets_400(r, header, value):
    sid = new_id()
    b = r.claim(sid)
    h = r.client_headers(sid)
    h[header] = value
    resp = r.connect("/v1/client", h)
    assert isinstance(resp, W.HTTPResponse) and resp.status == 400, resp
    assert resp.header("content-type") == "text/plain; charset=utf-8"
    b.close()


def test_phone_needs_no_version_header_and_token_is_never_forwarded(r):
    sid = new_id()
    b = r.claim(sid)
    secret = "tok-" + new_id()
    p = r.attach(sid, headers={"x-pyrycode-token": secret,
                               "x-pyrycode-device-name": "Pixel\x01 9 " +
                               "x" * 100})
    cid = hello(b, p, sid)
    assert secret not in r.log_text(), "token was logged"
    line = r.log_lines("phone_registered", server_id=sid)[-1]
    dn = line.get("device_name")
    assert dn is not None and dn.startswith("Pixel"), line
    assert len(dn.encode()) <= 64, dn
    assert "\x01" not in dn, dn
    assert line.get("conn_id") in (None, cid)
    b.close()
    p.close()


def test_binary_hears_nothing_when_a_phone_attaches(r):
    sid = new_id()
    b = r.claim(sid)
    p = r.attach(sid)
    b.expect_silence(1.0)
    p.close()
    b.close()


# ----------------------------------------------------------- phone to binary

@pytest.mark.parametrize("frame", [
    b'{"a":1}',
    b'{ "b" :\t[1,  2 ,\n3] ,"c":{ } }',
    b'"just a string"',
    b'12.5e-3',
    b'null',
    b'true',
    b'[]',
    '{"\u00e9":"\u2603 \\u00e9 \\ud83d\\ude00 \\"q\\" \\\\"}'.encode(),
    b'{"a":1,"a":2}',
    b'{"conn_id":"client-forged-00000000","frame":1}',
], ids=["object", "whitespace", "string", "number", "null", "true",
        "empty-array", "unicode-escapes", "dup-keys", "forged-conn-id"])
def test_phone_frame_reaches_binary_wrapped_byte_for_byte(r, frame):
    sid = new_id()
    b = r.claim(sid)
    p = r.attach(sid)
    p.send_text(frame)
    msg = b.recv(timeout=10)
    assert msg[0] == W.OP_TEXT, "envelopes are text frames"
    cid, got = unwrap(sid, msg[1])
    assert got == frame
    assert msg[1] == b'{"conn_id":"' + cid.encode() + b'","frame":' + \
        frame + b'}'
    p.close()
    b.close()


def test_phone_binary_opcode_and_fragmented_frames_are_wrapped_as_text(r):
    sid = new_id()
    b = r.claim(sid)
    p = r.attach(sid)
    p.send_binary(b'{"bin": [1, 2]}')
    op, msg = b.recv()
    assert op == W.OP_TEXT
    cid, got = unwrap(sid, msg)
    assert got == b'{"bin": [1, 2]}'
    p.send_text(b'{"frag":"' + b"f" * 1000 + b'"}', fragments=4)
    assert b.recv_text() == envelope(cid, b'{"frag":"' + b"f" * 1000 + b'"}')
    p.close()
    b.close()


def test_each_phone_has_its_own_conn_id(r):
    sid, b, ps, cids = make_pair(r, phones=3)
    assert len(set(cids)) == 3
    for i, p in enumerate(ps):
        p.send_text(b"[%d]" % i)
        assert b.recv_text() == envelope(cids[i], b"[%d]" % i)
    for w in ps + [b]:
        w.close()


def test_phone_message_of_256_kib_is_forwarded(r):
    sid, b, (p,), (cid,) = make_pair(r)
    frame = b'"' + b"m" * (262144 - 2) + b'"'
    assert len(frame) == 262144
    p.send_text(frame)
    assert b.recv_text(timeout=20) == envelope(cid, frame)
    p.close()
    b.close()


def test_non_json_from_phone_closes_it_1000_after_earlier_frames(r):
    sid, b, (p,), (cid,) = make_pair(r)
    p.send_text(b'{"one":1}')
    p.send_text(b'[2]')
    p.send_text(b'{"broken":')
    p.send_text(b'[4]')
    got = p.recv_close()
    assert got != W.TCP_CLOSED and got[0] == 1000, got
    assert b.recv_text() == envelope(cid, b'{"one":1}')
    assert b.recv_text() == envelope(cid, b'[2]')
    last = b.recv_text()
    assert last in (notice(cid, 1000), notice(cid, 1001)), last
    b.ping_roundtrip()
    assert not [m for m in getattr(b, "unread", [])], b.unread
    b.close()


@pytest.mark.parametrize("bad", [b"", b"{} {}", b"{'a':1}", b"[1,]",
                                 b"01", b'"\x01"', b"NaN", b"  "],
                         ids=["empty", "two-values", "single-quotes",
                              "trailing-comma", "leading-zero",
                              "control-char", "nan", "blank"])
def test_invalid_json_variants_close_the_phone_1000(r, bad):
    sid, b, (p,), (cid,) = make_pair(r)
    p.send_text(bad)
    got = p.recv_close()
    assert got != W.TCP_CLOSED and got[0] == 1000, got
    assert b.recv_text() in (notice(cid, 1000), notice(cid, 1001))
    b.close()


# ----------------------------------------------------------- binary to phone

@pytest.mark.parametrize("frame", [
    b'{"x" : [1,  2],\n"y":"\\u00e9"}', b'"str"', b'42', b'[]', b'false',
    '{"\u2603":1}'.encode()],
    ids=["object", "string", "number", "array", "false", "utf8"])
def test_binary_frame_reaches_phone_verbatim(r, frame):
    sid, b, (p,), (cid,) = make_pair(r)
    b.send_text(envelope(cid, frame))
    op, got = p.recv()
    assert (op, got) == (W.OP_TEXT, frame)
    p.close()
    b.close()


def test_binary_opcode_envelope_and_unknown_fields_and_key_order(r):
    sid, b, (p,), (cid,) = make_pair(r)
    b.send_binary(b'{"frame":{"k":1},"x-extra":[1,{"a":null}],"conn_id":"' +
                  cid.encode() + b'","close_code":0}')
    assert p.recv() == (W.OP_TEXT, b'{"k":1}')
    b.send_text(b' {\n "conn_id" : "' + cid.encode() +
                b'" , "frame" : [ 1 ] } ', fragments=3)
    assert p.recv() == (W.OP_TEXT, b'[ 1 ]')
    p.close()
    b.close()


def test_binary_message_of_exactly_256_kib_is_delivered(r):
    sid, b, (p,), (cid,) = make_pair(r)
    head = envelope(cid, b'"')[:-2]          # {"conn_id":"..","frame":"
    frame = b'"' + b"z" * (262144 - len(head) - 2 - 1) + b'"'
    msg = envelope(cid, frame)
    assert len(msg) == 262144
    b.send_text(msg)
    assert p.recv(timeout=20) == (W.OP_TEXT, frame)
    b.send_text(envelope(cid, b"[1]")[:-1] + b" " * (262145 - len(
        envelope(cid, b"[1]"))) + b"}")
    b.expect_closed(1009, timeout=20)
    p.close()


BAD_ENVELOPES = [
    (b"not json", "binary_forwarder_unmarshal_err"),
    (b"[1,2]", "binary_forwarder_unmarshal_err"),
    (b'"string"', "binary_forwarder_unmarshal_err"),
    (b"", "binary_forwarder_unmarshal_err"),
    (b'{"conn_id":5,"frame":1}', "binary_forwarder_unmarshal_err"),
    (b'{"conn_id":"CID","frame":1,"close_code":"x"}',
     "binary_forwarder_unmarshal_err"),
    (b'{"conn_id":"CID","frame":1,"close_code":1.5}',
     "binary_forwarder_unmarshal_err"),
    (b'{"conn_id":"CID","frame":1', "binary_forwarder_unmarshal_err"),
    (b'{"frame":{"a":1}}', None),
    (b'{"conn_id":"","frame":{"a":1}}', None),
    (b'{"conn_id":null,"frame":{"a":1}}', None),
    (b'{"conn_id":"CID"}', None),
    (b'{"conn_id":"CID","frame":null}', None),
    (b'{"conn_id":"CID","frame":null,"close_code":0}', None),
    (b'{"conn_id":"CID","close_code":0}', None),
    (b'{"conn_id":"client-SID-00000000","frame":1}',
     "binary_forwarder_unknown_conn_id"),
    (b'{"conn_id":"nonsense","frame":1}', None),
]


@pytest.mark.parametrize("bad,event", BAD_ENVELOPES,
                         ids=[str(i) for i in range(len(BAD_ENVELOPES))])
def test_bad_envelope_is_dropped_and_never_closes_the_binary(r, bad, event):
    sid, b, (p,), (cid,) = make_pair(r)
    msg = bad.replace(b"CID", cid.encode()).replace(b"SID", sid.encode())
    b.send_text(msg)
    b.send_text(envelope(cid, b'{"good":1}'))
    assert p.recv() == (W.OP_TEXT, b'{"good":1}'), \
        "the bad envelope was not dropped"
    b.ping_roundtrip()
    if event:
        r.wait_log(event)
    # the phone still works both ways
    p.send_text(b"[1]")
    assert b.recv_text() == envelope(cid, b"[1]")
    p.close()
    b.close()


def test_envelope_for_another_ids_phone_is_not_delivered(r):
    sid1, b1, (p1,), (c1,) = make_pair(r)
    sid2, b2, (p2,), (c2,) = make_pair(r)
    b1.send_text(envelope(c2, b'{"stolen":1}'))
    b1.send_text(envelope(c2, None, close=4401))
    b2.send_text(envelope(c2, b'{"own":1}'))
    assert p2.recv() == (W.OP_TEXT, b'{"own":1}')
    b1.ping_roundtrip()
    p2.ping_roundtrip()
    for w in (b1, b2, p1, p2):
        w.close()


def test_frame_to_a_phone_that_left_is_dropped_and_binary_continues(r):
    sid, b, (p1, p2), (c1, c2) = make_pair(r, phones=2)
    p1.close_handshake(1000)
    assert b.recv_text() == notice(c1, 1000)
    b.send_text(envelope(c1, b"[1]"))
    b.send_text(envelope(c2, b"[2]"))
    assert p2.recv() == (W.OP_TEXT, b"[2]")
    r.wait_log("binary_forwarder_unknown_conn_id")
    p2.close()
    b.close()


def test_push_wake_without_credentials_is_dropped_without_logging_token(r):
    sid, b, (p,), (cid,) = make_pair(r)
    token = "fcmtok-" + new_id()
    b.send_text(b'{"push_wake":{"platform":"fcm","token":"' +
                token.encode() + b'"}}')
    b.send_text(b'{"conn_id":null,"push_wake":{"platform":"apns",'
                b'"token":"' + token.encode() + b'"}}')
    b.send_text(envelope(cid, b"[1]"))
    assert p.recv() == (W.OP_TEXT, b"[1]")
    r.wait_log("binary_forwarder_push_wake_dropped")
    assert token not in r.log_text()
    b.ping_roundtrip()
    b.close()
    p.close()


# ------------------------------------------------------- close directives

def test_close_directive_delivers_frame_then_closes_4401(r):
    sid, b, (p, other), (cid, c_other) = make_pair(r, phones=2)
    b.send_text(envelope(cid, b'{"before":1}'))
    b.send_text(envelope(cid, b'{"bye":true}', close=4401))
    assert p.recv() == (W.OP_TEXT, b'{"before":1}')
    assert p.recv() == (W.OP_TEXT, b'{"bye":true}')
    p.expect_closed(4401, "")
    assert p.close_frame_payload == struct.pack("!H", 4401)
    # no notice for a directive close: the next thing the binary hears is
    # about the other phone
    other.close_handshake(1000)
    assert b.recv_text() == notice(c_other, 1000)
    b.close()


@pytest.mark.parametrize("code", [4421, 4426, 1000, 3000, 4999])
def test_close_directive_without_frame_closes_with_code(r, code):
    sid, b, (p,), (cid,) = make_pair(r)
    b.send_text(envelope(cid, None, close=code))
    p.expect_closed(code, "")
    b.ping_roundtrip()
    b.close()


def test_close_directive_with_null_frame_sends_no_frame(r):
    sid, b, (p,), (cid,) = make_pair(r)
    b.send_text(envelope(cid, b"null", close=4401))
    p.expect_closed(4401, "")
    assert not p.unread, p.unread
    b.close()


def test_close_directive_1005_sends_empty_close_payload(r):
    sid, b, (p,), (cid,) = make_pair(r)
    b.send_text(envelope(cid, b'"last"', close=1005))
    assert p.recv() == (W.OP_TEXT, b'"last"')
    got = p.recv_close()
    assert got == (1005, ""), got
    assert p.close_frame_payload == b""
    b.close()


@pytest.mark.parametrize("code", [1006, 999, 1004, 1015, 1016, 2999, 5000,
                                  65535])
def test_close_directive_with_unsendable_code_drops_tcp(r, code):
    sid, b, (p, other), (cid, c_other) = make_pair(r, phones=2)
    b.send_text(envelope(cid, b'{"f":1}', close=code))
    assert p.recv() == (W.OP_TEXT, b'{"f":1}')
    assert p.recv_close() == W.TCP_CLOSED
    other.close_handshake(1000)
    assert b.recv_text() == notice(c_other, 1000)
    b.close()


# ----------------------------------------------------------- close notices

@pytest.mark.parametrize("code", [1000, 1001, 4000, 3999])
def test_phone_close_sends_notice_with_its_code_after_its_frames(r, code):
    sid, b, (p,), (cid,) = make_pair(r)
    for i in range(3):
        p.send_text(b"[%d]" % i)
    p.close_handshake(code, "reason is not forwarded")
    for i in range(3):
        assert b.recv_text() == envelope(cid, b"[%d]" % i)
    assert b.recv_text() == notice(cid, code)
    b.close()


def test_phone_dropping_tcp_sends_notice_1001(r):
    sid, b, (p, other), (cid, c_other) = make_pair(r, phones=2)
    p.send_text(b'{"last":1}')
    p.ping_roundtrip()
    p.abort()
    assert b.recv_text() == envelope(cid, b'{"last":1}')
    assert b.recv_text() == notice(cid, 1001)
    other.send_text(b"[1]")
    assert b.recv_text() == envelope(c_other, b"[1]")
    b.close()
    other.close()


def test_phone_detach_leaves_other_phones_alone(r):
    sid, b, ps, cids = make_pair(r, phones=3)
    ps[1].close_handshake(1000)
    assert b.recv_text() == notice(cids[1], 1000)
    for i in (0, 2):
        b.send_text(envelope(cids[i], b"[%d]" % i))
        assert ps[i].recv() == (W.OP_TEXT, b"[%d]" % i)
    for w in ps + [b]:
        w.close()


# ---------------------------------------------------------- grace, reclaim

def test_grace_keeps_phones_open_and_closes_a_sender_1000(r):
    sid, b, (p1, p2), (c1, c2) = make_pair(r, phones=2)
    b.abort()
    r.wait_log("server_released", server_id=sid)
    p1.expect_silence(1.0)
    late = r.attach(sid)                    # new phones may still attach
    p1.send_text(b'{"nobody":"home"}')
    got = p1.recv_close()
    assert got != W.TCP_CLOSED and got[0] == 1000, got
    r.wait_log("phone_forwarder_no_binary", server_id=sid)
    p2.ping_roundtrip()
    late.ping_roundtrip()
    assert r.healthz()["status"] == "ok"
    p2.close()
    late.close()


def test_reclaim_closes_old_phones_4404_and_new_binary_hears_nothing(r):
    sid, b1, (p1, p2), cids = make_pair(r, phones=2)
    b1.close_handshake(1000)
    r.wait_log("server_released", server_id=sid)
    b2 = r.claim(sid)
    p1.expect_closed(*RECLAIMED)
    p2.expect_closed(*RECLAIMED)
    p3 = r.attach(sid)
    c3 = hello(b2, p3, sid, b'{"new":1}')   # b2's first message: no notices
    assert c3 not in cids
    b2.send_text(envelope(c3, b"[3]"))
    assert p3.recv() == (W.OP_TEXT, b"[3]")
    p3.close()
    b2.close()


def test_grace_expiry_closes_phones_1000_and_frees_the_id(relay):
    rl = relay(workers=2, extra=["--grace-period", "1s"])
    before = rl.metric("pyrycode_relay_grace_expiries_total")
    assert before == 0
    sid = new_id()
    b = rl.claim(sid)
    p1, p2 = rl.attach(sid), rl.attach(sid)
    b.abort()
    for p in (p1, p2):
        got = p.recv_close(timeout=20)
        assert got == (1000, ""), got
    wait_for(lambda: rl.metric("pyrycode_relay_grace_expiries_total") == 1,
             timeout=10)
    assert rl.healthz()["connected_phones"] == 0
    p3 = rl.phone(sid)
    p3.expect_closed(*NO_SERVER)
    b2 = rl.claim(sid)
    b2.close()


def test_silent_incumbent_is_taken_over(r):
    sid = new_id()
    old = r.claim(sid, auto_pong=False)
    p_old = r.attach(sid)
    c_old = hello(old, p_old, sid)
    new = r.binary(sid)
    old.expect_closed(*HEARTBEAT, timeout=20)
    p_old.expect_closed(*RECLAIMED, timeout=20)
    r.wait_log("server_id_takeover", server_id=sid)
    new.expect_silence(1.5)                    # kept, and told nothing
    p = r.attach(sid)
    c = hello(new, p, sid, b'{"after":"takeover"}')
    assert c != c_old
    new.send_text(envelope(c, b"[1]"))
    assert p.recv() == (W.OP_TEXT, b"[1]")
    p.close()
    new.close()


# ---------------------------------------------------------------- heartbeat

@pytest.fixture(scope="module")
def hb(module_relay):
    return module_relay(workers=2, extra=["--ping-interval", "1s",
                                          "--ping-timeout", "1s"])


def test_phone_that_never_pongs_is_closed_1011(hb):
    sid = new_id()
    b = hb.claim(sid)
    p = hb.attach(sid, auto_pong=False)
    cid = hello(b, p, sid)
    p.expect_closed(*HEARTBEAT, timeout=20)     # and we echo 1011
    assert p.pings, "relay never pinged"
    assert b.recv_text(timeout=10) == notice(cid, 1011)
    b.close()


def test_binary_that_never_pongs_is_closed_1011(hb):
    sid = new_id()
    b = hb.claim(sid, auto_pong=False)
    b.expect_closed(*HEARTBEAT, timeout=20)
    hb.wait_log("server_released", server_id=sid)


def test_peers_that_pong_survive_many_ping_intervals(hb):
    sid = new_id()
    b = hb.claim(sid)
    p = hb.attach(sid)
    cid = hello(b, p, sid)
    wait_for(lambda: len(b.pings) >= 3 and len(p.pings) >= 3, timeout=30,
             what="three pings each")
    p.send_text(b"[1]")
    assert b.recv_text() == envelope(cid, b"[1]")
    b.send_text(envelope(cid, b"[2]"))
    assert p.recv() == (W.OP_TEXT, b"[2]")
    b.close()
    p.close()


# ------------------------------------------------------------ volume, workers

def _pump_both_ways(sid, b, phones, cids, per_phone):
    """Each phone sends per_phone frames and the binary sends per_phone
    frames to each phone, all pipelined; check order and no loss."""
    errors = []

    def phone_send(i):
        try:
            phones[i].send_many_text(
                [b'{"p":%d,"n":%d}' % (i, n) for n in range(per_phone)])
        except Exception as e:            # noqa: BLE001
            errors.append(e)

    def binary_send():
        try:
            msgs = []
            for n in range(per_phone):
                for i, c in enumerate(cids):
                    msgs.append(envelope(c, b'{"to":%d,"n":%d}' % (i, n)))
            b.send_many_text(msgs)
        except Exception as e:            # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=phone_send, args=(i,))
               for i in range(len(phones))]
    threads.append(threading.Thread(target=binary_send))
    for t in threads:
        t.start()
    # binary side: per conn_id, frames in order
    nxt = {c: 0 for c in cids}
    idx = {c: i for i, c in enumerate(cids)}
    total = per_phone * len(phones)
    for _ in range(total):
        cid, frame = unwrap(sid, b.recv_text(timeout=60))
        i = idx[cid]
        assert frame == b'{"p":%d,"n":%d}' % (i, nxt[cid]), (cid, frame)
        nxt[cid] += 1
    for i, p in enumerate(phones):
        for n in range(per_phone):
            op, got = p.recv(timeout=60)
            assert (op, got) == (W.OP_TEXT, b'{"to":%d,"n":%d}' % (i, n))
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_ten_thousand_messages_each_way_across_workers(relay):
    rl = relay(workers=4)
    sid = new_id()
    b = rl.claim(sid)
    phones = [rl.attach(sid) for _ in range(16)]
    cids = [hello(b, p, sid, b'{"hello":%d}' % i)
            for i, p in enumerate(phones)]
    pid_of = {int(l["pid"]) for l in rl.log_lines("phone_registered",
                                                  server_id=sid)
              if "pid" in l}
    assert len(pid_of) == 1, "phones of one id live in one worker: %r" % (
        pid_of,)
    before = rl.metric("pyrycode_relay_frames_forwarded_total",
                       direction="phone_to_binary")
    _pump_both_ways(sid, b, phones, cids, per_phone=625)   # 10,000 each way
    after = rl.metric("pyrycode_relay_frames_forwarded_total",
                      direction="phone_to_binary")
    assert after - before == 10000, (before, after)
    # many ids, their sockets accepted by every worker
    others = []
    for _ in range(12):
        s = new_id()
        ob = rl.claim(s)
        ops = [rl.attach(s) for _ in range(2)]
        others.append((s, ob, ops, [hello(ob, p, s) for p in ops]))
    for s, ob, ops, oc in others:
        _pump_both_ways(s, ob, ops, oc, per_phone=50)
    owners = {rl.log_lines("server_claimed", server_id=s)[-1].get("pid")
              for s, *_ in others}
    assert len(owners) >= 2, "all ids landed on one worker: %r" % owners
    for s, ob, ops, oc in others:
        for w in [ob] + ops:
            w.close()
    for w in [b] + phones:
        w.close()


def test_killed_owner_worker_drops_its_peers_who_reconnect_and_route(relay):
    rl = relay(workers=2, extra=["--conflict-probe-timeout", "1s"])
    rl.wait_workers()
    sid = new_id()
    b = rl.claim(sid)
    ps = [rl.attach(sid) for _ in range(2)]
    [hello(b, p, sid) for p in ps]
    owner = int(rl.log_lines("server_claimed", server_id=sid)[-1]["pid"])
    os.kill(owner, signal.SIGKILL)
    assert b.recv_close(timeout=15) == W.TCP_CLOSED
    for p in ps:
        assert p.recv_close(timeout=15) == W.TCP_CLOSED
    wait_for(lambda: (lambda s: len(s) == 2 and owner not in s)(
        rl.worker_pids()), timeout=30, what="respawn")

    def reclaim():
        w = rl.binary(sid)
        try:
            w.expect_silence(2.5)    # > probe timeout: no 4409
        except AssertionError:
            w.close()
            return None
        return w

    b2 = wait_for(reclaim, timeout=45, what="reclaim after crash")
    ps2 = [rl.attach(sid) for _ in range(2)]
    cids2 = [hello(b2, p, sid) for p in ps2]
    _pump_both_ways(sid, b2, ps2, cids2, per_phone=100)
    for w in [b2] + ps2:
        w.close()
