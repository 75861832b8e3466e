"""Sockets handed between workers are never lost.

A request for a server-id owned by another worker is passed to the owner
over its handoff socket.  The master keeps both ends of every handoff
socket and every listener open, so a socket queued for a worker that dies
waits for its replacement in the same slot, which answers it.
"""
import os
import signal
import threading

import wsclient as W
from conftest import new_id, wait_for


def test_handoff_queued_for_a_dying_worker_is_answered_by_its_replacement(
        relay):
    r = relay(workers=2)
    r.wait_workers()
    sid = new_id()
    b = r.claim(sid)
    owner = int(r.log_lines("server_claimed", server_id=sid)[-1]["pid"])
    handoffs_before = r.metric("pyrycode_relay_handoffs_total")

    # the owner stops reading its listener and its handoff socket
    os.kill(owner, signal.SIGSTOP)
    results = [None] * 10

    def phone(i):
        results[i] = r.connect("/v1/client", r.client_headers(sid),
                               timeout=30)

    threads = [threading.Thread(target=phone, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    # the live worker has handed its share to the stopped owner
    wait_for(lambda: r.metric("pyrycode_relay_handoffs_total")
             > handoffs_before, timeout=15, what="a handoff to the owner")
    os.kill(owner, signal.SIGKILL)
    wait_for(lambda: owner not in r.worker_pids()
             and len(r.worker_pids()) == 2, timeout=20,
             what="the owner's slot respawned")
    for t in threads:
        t.join(40)

    # the id died with its owner: every phone is answered, none hangs
    for ws in results:
        assert isinstance(ws, W.WebSocket), ws
        assert ws.recv_close(timeout=20) == (4404, "no server with that id")
    assert b.recv_close(timeout=20) == W.TCP_CLOSED
    r.claim(sid).close()
