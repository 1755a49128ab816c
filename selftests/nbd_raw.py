# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""A bare NBD client for abusing a server: negotiation by hand, then raw
request bytes; and the server's own books through bsteer stat. Used by
test_serve_badclient.sh, test_serve_abuse.sh and test_serve_nbdspec.sh."""
import json
import os
import socket
import struct
import subprocess
import sys
import time

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
REPLY_MAGIC = 0x67446698
OPT_EXPORT_NAME = 1
OPT_GO = 7
INFO_BLOCK_SIZE = 3
REP_ACK = 1


def recvall(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("server closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


def connect(path, export, infos=(), export_name=False):
    """Negotiated up to transmission: by GO asking for the NBD_INFO_*
    in @infos, or with @export_name by NBD_OPT_EXPORT_NAME."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    hello = recvall(s, 18)
    assert hello[:8] == b"NBDMAGIC", hello
    s.sendall(struct.pack(">I", 3))
    name = export.encode()
    if export_name:
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, len(name)) + name)
        recvall(s, 10)      # size, flags; NO_ZEROES was asked for
        return s
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos))
    data += b"".join(struct.pack(">H", i) for i in infos)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    while True:
        _, opt, rtype, ln = struct.unpack(">QIII", recvall(s, 20))
        recvall(s, ln)
        if rtype == REP_ACK:
            return s
        assert rtype < 0x80000000, "option error %#x" % rtype


def request(s, typ, off, ln, cookie=1, payload=b"", flags=0):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, typ, cookie, off, ln) + payload)


def reply(s):
    magic, err, cookie = struct.unpack(">IIQ", recvall(s, 16))
    assert magic == REPLY_MAGIC, hex(magic)
    return err, cookie


def closed(s):
    """True once the server has closed the connection."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def stat(inst):
    """bsteer stat INSTANCE --json, as a dict."""
    out = subprocess.run([os.environ.get("BSTEER", "build/bsteer"), "stat", inst,
                          "--json"], capture_output=True, check=True).stdout
    return json.loads(out)


def settled(inst, timeout=10):
    """After the abuse: every slot free, only the one good client connected
    and no decision rejected (waiting up to @timeout s for the first two).
    Returns the last stat."""
    deadline = time.time() + timeout
    while True:
        st = stat(inst)
        if (st["slots"]["free"] == st["slots"]["total"] and
                st["counters"]["connections_open"] == 1) or time.time() > deadline:
            break
        time.sleep(0.1)
    assert st["slots"]["free"] == st["slots"]["total"], st["slots"]
    assert st["counters"]["connections_open"] == 1, st["counters"]["connections_open"]
    assert st["counters"]["decisions_rejected"] == 0
    return st
