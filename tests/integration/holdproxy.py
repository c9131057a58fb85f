#!/usr/bin/env python3
"""holdproxy.py - a TCP relay between two members that a test can cut, and hold.

Usage: holdproxy.py LISTEN_HOST:PORT TARGET_HOST:PORT CTLDIR [HOLD_AFTER]

Each accepted connection is relayed to TARGET, both ways. Controlled by files in CTLDIR,
looked at every 20 ms:
  cut   while it exists, every relayed connection is closed and new ones are closed at once
        (a link that is down);
  hold  a connection accepted while it exists relays, from the target back to the client,
        only the first HOLD_AFTER bytes and keeps the rest until the file is gone. The
        default, 68, is the responder's handshake REPLY (docs/protocol.md SC.3: 4 length
        bytes + 64); a target that is the pair's keeper (net/peer.c) sends its selection
        frame next, an empty frame of 4 + 16 bytes, which the client waits for: 88 then.
        So the client's connection is up while everything the target sends on it (its
        Hello, updates, Done, Backlog) is late.
Prints "ready" once it listens; runs until killed (used by tests/integration/*.sh).
"""
import os
import socket
import sys
import threading
import time

POLL = 0.02


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def relay(src, dst, ctl, held, conns, hold_after):
    sent = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if held:
                keep = max(0, hold_after - sent)
                if len(data) > keep:
                    dst.sendall(data[:keep])
                    sent += keep
                    data = data[keep:]
                    while os.path.exists(os.path.join(ctl, "hold")) and src in conns:
                        time.sleep(POLL)
                    held = False
            dst.sendall(data)
            sent += len(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    listen, target, ctl = addr(sys.argv[1]), addr(sys.argv[2]), sys.argv[3]
    hold_after = int(sys.argv[4]) if len(sys.argv) > 4 else 68
    conns = set()
    lock = threading.Lock()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen)
    srv.listen(16)

    def cutter():
        while True:
            if os.path.exists(os.path.join(ctl, "cut")):
                with lock:
                    for s in list(conns):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    conns.clear()
            time.sleep(POLL)

    threading.Thread(target=cutter, daemon=True).start()
    print("ready", flush=True)
    while True:
        cli, _ = srv.accept()
        if os.path.exists(os.path.join(ctl, "cut")):
            cli.close()
            continue
        try:
            up = socket.create_connection(target, timeout=5)
            up.settimeout(None)
        except OSError:
            cli.close()
            continue
        held = os.path.exists(os.path.join(ctl, "hold"))
        with lock:
            conns.update((cli, up))
        threading.Thread(target=relay, args=(cli, up, ctl, False, conns, 0), daemon=True).start()
        threading.Thread(target=relay, args=(up, cli, ctl, held, conns, hold_after), daemon=True).start()


if __name__ == "__main__":
    main()
