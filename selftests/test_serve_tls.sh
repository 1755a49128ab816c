#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# TLS for NBD clients (--tls, GnuTLS), with certificates made here by
# certtool and keys by psktool, tried with real clients: nbdinfo, nbdcopy
# (libnbd's nbds:// and nbds+unix:// URIs) and qemu-img (tls-creds-x509).
# libnbd checks the server's certificate over TCP only, so the wrong-CA
# case goes over a loopback TCP port.
#  - --tls require: TLS clients read and write (data checked byte for
#    byte, written 4 KiB at a time with 64 requests in flight on 4
#    connections, read back 256 KiB at a time); a plain client
#    gets ERR_TLS_REQD for every option but STARTTLS and ABORT (one error
#    reply each, so nothing about the exports); EXPORT_NAME is closed on;
#    a client whose
#    CA does not match is refused and the server goes on;
#  - --tls on: plain and TLS clients both served;
#  - --tls-psk: the right key works, a wrong one is refused;
#  - --tls-verify-peer: a client without a certificate is refused;
#  - a client silent after STARTTLS is closed by --handshake-timeout and
#    its session goes (tls_sessions_open back to 0);
#  - an established connection's data goes through no socketpair: the
#    bytes written and read were decrypted into the slots and encrypted
#    from them (tls_bytes_{de,en}crypted_in_place), and a connection held
#    open has no AF_UNIX socket pair in the server's descriptors;
#  - a TLS client that closes mid-payload (a WRITE cut short): its
#    connection and session go, and the server goes on;
#  - legs: a mirror with an nbds:// leg on nbdkit --tls=require gets every
#    byte to it; nbds+unix:// with a PSK reads back; a plain nbd:// leg
#    on that server, a leg whose CA did not sign it, and one with no
#    credentials are refused with the reason;
#  - bad option combinations are usage errors (exit 2).
. "$(dirname "$0")/lib.sh"
need_root
need_tools certtool psktool nbdinfo nbdcopy nbdkit qemu-img python3 jq

INST=$(instance tls)
S=$T/s.sock
truncate -s 64M "$T/disk"
# A free loopback port, picked by the kernel.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# ---- credentials: a CA, a server and a client it signs, and another CA ----
mkdir -p "$T/srv" "$T/cli" "$T/cli-nocert" "$T/other"
tmpl() { printf '%s\n' "$@" >"$T/tmpl"; }
certtool --generate-privkey --outfile "$T/ca-key.pem" 2>/dev/null
tmpl "cn = bsteer test CA" ca cert_signing_key "expiration_days = 2"
certtool --generate-self-signed --load-privkey "$T/ca-key.pem" --template "$T/tmpl" \
	--outfile "$T/srv/ca-cert.pem" 2>/dev/null
tmpl "cn = localhost" "dns_name = localhost" "ip_address = 127.0.0.1" tls_www_server \
	encryption_key signing_key "expiration_days = 2"
certtool --generate-privkey --outfile "$T/srv/server-key.pem" 2>/dev/null
certtool --generate-certificate --load-ca-certificate "$T/srv/ca-cert.pem" \
	--load-ca-privkey "$T/ca-key.pem" --load-privkey "$T/srv/server-key.pem" \
	--template "$T/tmpl" --outfile "$T/srv/server-cert.pem" 2>/dev/null
tmpl "cn = bsteer test client" tls_www_client encryption_key signing_key "expiration_days = 2"
certtool --generate-privkey --outfile "$T/cli/client-key.pem" 2>/dev/null
certtool --generate-certificate --load-ca-certificate "$T/srv/ca-cert.pem" \
	--load-ca-privkey "$T/ca-key.pem" --load-privkey "$T/cli/client-key.pem" \
	--template "$T/tmpl" --outfile "$T/cli/client-cert.pem" 2>/dev/null
cp "$T/srv/ca-cert.pem" "$T/cli/"
cp "$T/srv/ca-cert.pem" "$T/cli-nocert/"
tmpl "cn = another CA" ca cert_signing_key "expiration_days = 2"
certtool --generate-privkey --outfile "$T/other/ca-key.pem" 2>/dev/null
certtool --generate-self-signed --load-privkey "$T/other/ca-key.pem" --template "$T/tmpl" \
	--outfile "$T/other/ca-cert.pem" 2>/dev/null
psktool -u alice -p "$T/keys.psk" >/dev/null 2>&1
psktool -u alice -p "$T/wrong.psk" >/dev/null 2>&1
[ -s "$T/srv/server-cert.pem" ] && [ -s "$T/cli/client-cert.pem" ] && [ -s "$T/keys.psk" ] ||
	fail "could not make the test's certificates and keys"

TLS="nbds+unix:///d?socket=$S&tls-certificates=$T/cli"
counter() { "$BSTEER" stat "$INST" --json | jq -r ".counters.$1"; }

# ---- --tls require, X.509 ----
start_serve "$S" --instance "$INST" --export "d=$T/disk" --tls require \
	--tls-certificates "$T/srv" --handshake-timeout 2 --listen "tcp:127.0.0.1:$PORT" || finish
nbdinfo "$TLS" >"$T/info" 2>&1
check "nbdinfo over TLS: the size" grep -q "export-size: 67108864" "$T/info"
check "nbdinfo over TLS: it says TLS" grep -q "with TLS" "$T/info"
head -c 16M /dev/urandom >"$T/src"
# Small writes, many in flight on several connections: replies interleave
# in each tunnel; then big reads.
nbdcopy --connections=4 --requests=16 --request-size=4096 "$T/src" "$TLS" ||
	fail "nbdcopy into the export over TLS"
nbdcopy --request-size=262144 "$TLS" "$T/back" || fail "nbdcopy out of it over TLS"
check "nbdcopy over TLS: what went in comes back" cmp -n 16777216 "$T/src" "$T/back"
check "... and is on the disk" cmp -n 16777216 "$T/src" "$T/disk"
# No copy through a socketpair: the 16 MiB written were decrypted straight
# into the slots (and the headers into map memory), and the 16 MiB read
# encrypted straight from them. A tunnel would count none of it, and a
# socketpair would show in the server's descriptors.
check "TLS payloads decrypted in place (no tunnel)" \
	[ "$(counter tls_bytes_decrypted_in_place)" -ge $((16777216 + 4096 * 28)) ]
check "TLS replies encrypted in place" \
	[ "$(counter tls_bytes_encrypted_in_place)" -ge 16777216 ]
# A connection held open, past its handshake: the server has its socket
# (bound to $S) and no socket pair (two ends with no address).
nbdsh -c "
import os, time
h.set_uri_allow_local_file(True)
h.connect_uri('$TLS')
h.pread(512, 0)
end = time.time() + 60
while not os.path.exists('$T/release') and time.time() < end:
    time.sleep(0.1)
" &
HOLD=$!
PIDS+=("$HOLD")
wait_for 30 sh -c "[ \"\$('$BSTEER' stat '$INST' --json | jq -r .counters.connections_open)\" = 1 ]"
ss -xpn >"$T/ss"
check "a TLS connection held open: the server has its socket" \
	awk -v p="pid=$SERVE," -v s="$S" '$0 ~ p && $5 == s { n++ } END { exit n != 1 }' "$T/ss"
check "... and no socket pair" \
	awk -v p="pid=$SERVE," '$0 ~ p && $5 == "*" { n++ } END { exit n != 0 }' "$T/ss"
touch "$T/release"
wait "$HOLD" || fail "the held TLS connection's client failed"

# A TLS client that goes mid-payload: its WRITE's payload, decrypted into
# the slot, ends short; the connection closes and its session goes.
check "TLS: a READ, then a WRITE cut short after 1000 of 65536 bytes" \
	python3 - "$S" "$T/cli/ca-cert.pem" <<'PY'
import socket, ssl, struct, sys
sys.path.insert(0, "selftests")
from nbd_raw import recvall, IHAVEOPT
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
recvall(s, 18)
s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 5, 0))   # STARTTLS
recvall(s, 20)
ctx = ssl.create_default_context(cafile=sys.argv[2])
t = ctx.wrap_socket(s, server_hostname="localhost")
t.sendall(struct.pack(">QII", IHAVEOPT, 7, 7) + struct.pack(">I", 1) + b"d" + struct.pack(">H", 0))
while True:     # GO's replies, to its ACK
    _, opt, rtype, ln = struct.unpack(">QIII", recvall(t, 20))
    recvall(t, ln)
    if rtype == 1:
        break
t.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 1, 0, 4096))
hdr, data = recvall(t, 16), recvall(t, 4096)
t.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 2, 0, 65536) + b"x" * 1000)
t.close()
sys.exit(0 if hdr[:4] == bytes.fromhex("67446698") and hdr[4:8] == bytes(4) else 1)
PY
check "... the server saw the payload cut" wait_for 30 grep -q "client closed during a write payload" "$T/serve.log"
check "... and its connection and session are gone" wait_for 30 sh -c \
	"[ \"\$('$BSTEER' stat '$INST' --json | jq -r '.counters | \"\\(.connections_open) \\(.tls_sessions_open)\"')\" = '0 0' ]"
check "nbdinfo over TLS on TCP" nbdinfo --size "nbds://127.0.0.1:$PORT/d?tls-certificates=$T/cli"
qemu-img convert -O raw \
	--object "tls-creds-x509,id=tls0,dir=$T/cli,endpoint=client" \
	--image-opts "driver=nbd,host=127.0.0.1,port=$PORT,export=d,tls-creds=tls0" "$T/qemu.img" 2>"$T/qemu.err" ||
	{ cat "$T/qemu.err" >&2; fail "qemu-img over TLS"; }
check "qemu-img over TLS reads the whole export" cmp "$T/qemu.img" "$T/disk"

nbdinfo "nbds://127.0.0.1:$PORT/d?tls-certificates=$T/other" >/dev/null 2>&1
check "a server certificate another CA signed: refused" [ $? -ne 0 ]
check "... and counted" [ "$(counter tls_handshakes_unfinished)" -ge 1 ]
nbdinfo --size "nbd+unix:///d?socket=$S" >/dev/null 2>&1
check "a plain client under require gets no export" [ $? -ne 0 ]
check "the server goes on: TLS still served" nbdinfo --size "$TLS"

# A plain client, byte by byte: every option but STARTTLS and ABORT gets
# ERR_TLS_REQD, and no reply says anything about the exports.
check "plain: ERR_TLS_REQD for LIST, INFO, GO, STRUCTURED_REPLY, META; ABORT acked" \
	python3 - "$S" <<'PY'
import socket, struct, sys
sys.path.insert(0, "selftests")
from nbd_raw import recvall, IHAVEOPT
TLS_REQD, ACK, ABORT = 0x80000005, 1, 2
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
assert recvall(s, 18)[:8] == b"NBDMAGIC"
s.sendall(struct.pack(">I", 3))
name = b"d"
info = struct.pack(">I", 1) + name + struct.pack(">H", 0)
meta = struct.pack(">I", 1) + name + struct.pack(">I", 1) + struct.pack(">I", 16) + b"base:allocation"
ok = True
for opt, data in ((3, b""), (6, info), (7, info), (8, b""), (9, meta), (10, meta), (77, b"")):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)
    _, ropt, rtype, ln = struct.unpack(">QIII", recvall(s, 20))
    body = recvall(s, ln)
    # One reply each, an error: no SERVER or INFO reply, which would carry
    # an export's name or size.
    good = ropt == opt and rtype == TLS_REQD
    print(("ok" if good else "BAD"), "option", opt, hex(rtype), body)
    ok &= good
s.sendall(struct.pack(">QII", IHAVEOPT, ABORT, 0))
_, ropt, rtype, ln = struct.unpack(">QIII", recvall(s, 20))
print("abort", hex(rtype))
sys.exit(0 if ok and rtype == ACK else 1)
PY
check "plain: EXPORT_NAME under require is closed on, unanswered" python3 - "$S" <<'PY'
import socket, struct, sys
sys.path.insert(0, "selftests")
from nbd_raw import recvall, IHAVEOPT, closed
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
recvall(s, 18)
s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 1, 1) + b"d")
sys.exit(0 if closed(s) else 1)
PY

# A client that asks for STARTTLS, gets its ACK, then says nothing: the
# handshake timeout (2 s here) closes it, and its TLS session goes with it.
python3 - "$S" <<'PY' &
import socket, struct, sys, time
sys.path.insert(0, "selftests")
from nbd_raw import recvall, IHAVEOPT
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
recvall(s, 18)
s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 5, 0))
recvall(s, 20)
s.recv(1)   # until the server closes it
PY
SILENT=$!
PIDS+=("$SILENT")
check "a client silent after STARTTLS has a TLS session" wait_for 30 sh -c \
	"[ \"\$('$BSTEER' stat '$INST' --json | jq -r .counters.tls_sessions_open)\" = 1 ]"
check "... closed by --handshake-timeout" wait_for 60 sh -c "! kill -0 $SILENT 2>/dev/null"
check "... and its session is gone" wait_for 30 sh -c \
	"[ \"\$('$BSTEER' stat '$INST' --json | jq -r .counters.tls_sessions_open)\" = 0 ]"
check "every TLS session counted" [ "$(counter tls_sessions_total)" -ge 8 ]
stop_serve

# ---- --tls on: plain clients too ----
start_serve "$S" --instance "$INST" --export "d=$T/disk" --tls on --tls-certificates "$T/srv" || finish
check "--tls on: a plain client is served" nbdinfo --size "nbd+unix:///d?socket=$S"
check "--tls on: a TLS client too" nbdinfo --size "$TLS"
stop_serve

# ---- PSK ----
start_serve "$S" --instance "$INST" --export "d=$T/disk" --tls require --tls-psk "$T/keys.psk" || finish
check "PSK: the right key" nbdinfo --size "nbds+unix://alice@/d?socket=$S&tls-psk-file=$T/keys.psk"
nbdinfo --size "nbds+unix://alice@/d?socket=$S&tls-psk-file=$T/wrong.psk" >/dev/null 2>&1
check "PSK: a wrong key is refused" [ $? -ne 0 ]
stop_serve

# ---- client certificates ----
start_serve "$S" --instance "$INST" --export "d=$T/disk" --tls require \
	--tls-certificates "$T/srv" --tls-verify-peer || finish
check "--tls-verify-peer: a client with a certificate the CA signed" nbdinfo --size "$TLS"
nbdinfo --size "nbds+unix:///d?socket=$S&tls-certificates=$T/cli-nocert" >/dev/null 2>&1
check "--tls-verify-peer: a client without one is refused" [ $? -ne 0 ]
stop_serve

# ---- TLS legs: nbds:// and nbds+unix:// targets on nbdkit --tls=require ----
KPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
truncate -s 64M "$T/up.img" "$T/local.img"
nbdkit -f -p "$KPORT" -i 127.0.0.1 --tls=require "--tls-certificates=$T/srv" \
	file "$T/up.img" 2>"$T/kit.log" &
KIT=$!
PIDS+=("$KIT")
wait_for 30 nbdinfo --size "nbds://127.0.0.1:$KPORT/?tls-certificates=$T/cli" ||
	fail "nbdkit --tls=require did not start: $(cat "$T/kit.log")"
LEG="nbds://127.0.0.1:$KPORT/?tls-certificates=$T/cli"
start_serve "$S" --instance "$INST" --export "m=$T/local.img,$LEG" || finish
M="nbd+unix:///m?socket=$S"
nbdcopy --connections=2 --request-size=65536 "$T/src" "$M" || fail "nbdcopy into a mirror with a TLS leg"
check "a mirror with an nbds leg: the TLS leg has every byte" cmp -n 16777216 "$T/src" "$T/up.img"
check "... and the local leg" cmp -n 16777216 "$T/src" "$T/local.img"
nbdcopy "$M" "$T/back2" || fail "nbdcopy out of the mirror"
check "... and reads come back" cmp -n 16777216 "$T/src" "$T/back2"
stop_serve
"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" \
	--export "m=nbd://127.0.0.1:$KPORT/" >"$T/bad.log" 2>&1
check "a plain nbd:// leg on a server that requires TLS: refused, saying so" \
	grep -q "requires TLS: use nbds://" "$T/bad.log"
"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" \
	--export "m=nbds://127.0.0.1:$KPORT/?tls-certificates=$T/other" >"$T/bad.log" 2>&1
check "an nbds leg whose CA did not sign the server: refused at the handshake" \
	grep -q "TLS handshake" "$T/bad.log"
"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" \
	--export "m=nbds://127.0.0.1:$KPORT/" >"$T/bad.log" 2>&1
check "an nbds leg without credentials: refused, naming them" grep -q "tls-certificates=DIR" "$T/bad.log"
kill "$KIT"
wait "$KIT" 2>/dev/null
rm -f "$T/kit.sock"
nbdkit -f -v -U "$T/kit.sock" --tls=require "--tls-psk=$T/keys.psk" file "$T/up.img" 2>"$T/kit.log" &
KIT=$!
PIDS+=("$KIT")
wait_for 30 sh -c "[ -S '$T/kit.sock' ] || ! kill -0 $KIT" || fail "nbdkit --tls-psk did not start"
start_serve "$S" --instance "$INST" \
	--export "p=nbds+unix://alice@/?socket=$T/kit.sock&tls-psk-file=$T/keys.psk" || finish
nbdcopy "nbd+unix:///p?socket=$S" "$T/back3" || fail "nbdcopy through an nbds+unix PSK leg"
check "an nbds+unix leg with a PSK: reads what the mirror wrote" cmp -n 16777216 "$T/src" "$T/back3"
stop_serve
# The leg's goodbye goes through its tunnel, encrypted, before it is freed.
check "the nbds leg's server got NBD_CMD_DISC at the stop" \
	wait_for 10 grep -q "client sent NBD_CMD_DISC" "$T/kit.log"
kill "$KIT"
wait "$KIT" 2>/dev/null

# ---- usage ----
for bad in "--tls on" "--tls maybe --tls-certificates $T/srv" "--tls-certificates $T/srv" \
	"--tls on --tls-certificates $T/srv --tls-psk $T/keys.psk" "--tls on --tls-psk $T/keys.psk --tls-verify-peer"; do
	# shellcheck disable=SC2086
	"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" --export "d=$T/disk" $bad \
		>"$T/bad.log" 2>&1
	check "'$bad': a usage error (2)" [ $? -eq 2 ]
done
"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" --export "d=$T/disk" \
	--tls on --tls-certificates "$T/cli-nocert" >"$T/bad.log" 2>&1
check "a certificate directory without the server's files: refused, naming them" \
	grep -q "server-cert.pem and server-key.pem" "$T/bad.log"
finish
