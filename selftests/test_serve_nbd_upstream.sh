#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# NBD upstream targets: legs that live on another NBD server (nbdkit here).
#  - a mirror with one leg on nbdkit's memory plugin: nbdcopy from nbdkit
#    afterwards equals the source; so do the local leg and a read back;
#  - passthrough to nbdkit over TCP (nbd://) with two worker threads, each
#    on its own connection;
#  - a stripe whose legs are qemu-nbd and another bsteer serve;
#  - nbdkit killed mid-copy: the mirror marks the leg failed and the copy
#    completes on the healthy leg; killed while idle: a client read fails
#    with EIO and the server keeps serving its other exports;
#  - nbdkit stopped (SIGSTOP): the request fails after --upstream-timeout;
#  - bad URIs, a refused connection, an unknown export and a read-only
#    upstream stop the server at start with a message that says which.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdkit nbdcopy

# start_kit NAME ARGS...: nbdkit on $T/NAME.sock in the foreground of a
# background job; KIT holds its PID.
start_kit() {
	local name=$1
	shift
	nbdkit -f --exit-with-parent -U "$T/$name.sock" "$@" >"$T/$name.log" 2>&1 &
	KIT=$!
	PIDS+=("$KIT")
	wait_for 10 [ -S "$T/$name.sock" ] || { cat "$T/$name.log" >&2; fail "nbdkit $name did not start"; }
}

kit_uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }
uri() { echo "nbd+unix:///$1?socket=$T/s.sock"; }

head -c 48M /dev/urandom >"$T/src"

# --- a mirror leg on nbdkit ---
start_kit mem memory 48M
MEM=$KIT
truncate -s 48M "$T/leg0"
start_serve "$T/s.sock" --instance "$(instance up)" \
	--export "m=$T/leg0,$(kit_uri mem)" || finish
nbdcopy "$T/src" "$(uri m)" || fail "nbdcopy into the mirror exited $?"
nbdcopy "$(kit_uri mem)" "$T/fromkit" || fail "nbdcopy from nbdkit exited $?"
check "nbdkit's leg equals the source" cmp -s "$T/src" "$T/fromkit"
check "the local leg equals the source" cmp -s "$T/src" "$T/leg0"
nbdcopy "$(uri m)" "$T/back" || fail "nbdcopy from bsteer exited $?"
check "a read through bsteer equals the source" cmp -s "$T/src" "$T/back"
"$BSTEER" stat "$(instance up)" --json >"$T/stat.json"
check "the upstream leg took ops" [ "$(json "$T/stat.json" targets.1.ops)" -gt 0 ]
check "no upstream errors" [ "$(json "$T/stat.json" targets.1.errors)" = 0 ]
check "no rejected decisions" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
# A FLUSH, a WRITE_ZEROES and a TRIM go upstream too.
nbdsh -u "$(uri m)" -c '
h.zero(4096, 65536)        # count, offset
h.trim(1 << 20, 65536)
h.flush()
assert h.pread(4096, 65536) == bytes(4096)
' || fail "zero/trim/flush through the mirror"
check "zeroes reached nbdkit" [ "$(nbdsh -u "$(kit_uri mem)" -c 'print(h.pread(1 << 20, 65536) == bytes(1 << 20))')" = True ]
stop_serve

# --- passthrough over TCP, two workers ---
PORT=
for p in $(shuf -i 20000-60000 -n 5); do
	nbdkit -f --exit-with-parent -p "$p" -i 127.0.0.1 file "$T/leg0" >"$T/tcp.log" 2>&1 &
	KIT=$!
	PIDS+=("$KIT")
	if wait_for 5 nbdinfo --size "nbd://127.0.0.1:$p" >/dev/null 2>&1; then
		PORT=$p
		break
	fi
	kill "$KIT" 2>/dev/null
done
if [ -n "$PORT" ]; then
	TCPKIT=$KIT
	start_serve "$T/s.sock" --instance "$(instance tcp)" --threads 2 \
		--export "t=nbd://127.0.0.1:$PORT" || finish
	head -c 48M /dev/urandom >"$T/src2"
	nbdcopy --connections=4 "$T/src2" "$(uri t)" || fail "nbdcopy over TCP exited $?"
	check "TCP upstream file equals the source" cmp -s "$T/src2" "$T/leg0"
	nbdcopy --connections=4 "$(uri t)" "$T/back2" || fail "read over TCP exited $?"
	check "a read over TCP equals the source" cmp -s "$T/src2" "$T/back2"
	check "each worker made its own connection" \
		[ "$(ss -tn state established "( dport = :$PORT )" | tail -n +2 | wc -l)" -ge 2 ]
	stop_serve
	kill "$TCPKIT"
else
	fail "could not start nbdkit on a TCP port"
fi

# --- a stripe over qemu-nbd and another bsteer ---
if command -v qemu-nbd >/dev/null; then
	truncate -s 16M "$T/q.img" "$T/inner.img"
	# --shared: each of bsteer's workers connects on its own, and qemu-nbd
	# takes one client at a time unless told.
	qemu-nbd -k "$T/q.sock" -f raw -t --shared=8 "$T/q.img" >"$T/q.log" 2>&1 &
	PIDS+=($!)
	"$BSTEER" serve --listen "unix:$T/inner.sock" --instance "$(instance inner)" \
		--export "d=$T/inner.img" >"$T/inner.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 [ -S "$T/q.sock" ] && wait_for 10 [ -S "$T/inner.sock" ] ||
		fail "qemu-nbd or the inner bsteer did not start"
	start_serve "$T/s.sock" --instance "$(instance stripe)" \
		--export "s=nbd+unix:///?socket=$T/q.sock,nbd+unix:///d?socket=$T/inner.sock,policy=stripe,chunk=64K" || finish
	head -c 32M /dev/urandom >"$T/src4"
	nbdcopy "$T/src4" "$(uri s)" || fail "nbdcopy into the stripe exited $?"
	nbdcopy "$(uri s)" "$T/back4" || fail "nbdcopy from the stripe exited $?"
	check "a stripe over qemu-nbd and bsteer reads back the source" cmp -s "$T/src4" "$T/back4"
	# Chunk k of the export is chunk k/2 of leg k%2.
	check "the legs hold alternate 64K chunks" /usr/bin/python3 -c '
import sys
src = open(sys.argv[1], "rb").read()
legs = [open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()]
C = 65536
sys.exit(any(src[k*C:(k+1)*C] != legs[k % 2][(k//2)*C:(k//2+1)*C]
             for k in range(len(src) // C)))' "$T/src4" "$T/q.img" "$T/inner.img"
	stop_serve
fi

# --- the upstream leg dies mid-copy ---
cp "$T/src" "$T/kitfile"
truncate -s 48M "$T/leg0b"
start_kit slow file "$T/kitfile" --filter=rate rate=16M
SLOW=$KIT
start_serve "$T/s.sock" --instance "$(instance die)" \
	--export "m=$T/leg0b,$(kit_uri slow)" --export "solo=$(kit_uri mem)" || finish
head -c 48M /dev/urandom >"$T/src3"
nbdcopy "$T/src3" "$(uri m)" &
COPY=$!
PIDS+=("$COPY")
# Kill the leg once the copy is under way (4 MiB written by the client, of
# 48 MiB the rate filter holds to 3 s at least), not after a sleep: a loaded
# machine may not have started nbdcopy within a second. 60 s bounds a hang.
copy_under_way() {
	"$BSTEER" stat "$(instance die)" --json >"$T/stat-die.json" &&
		[ "$(json "$T/stat-die.json" counters.client_bytes_written)" -ge $((4 << 20)) ]
}
wait_for 60 copy_under_way || fail "the copy did not get under way"
check "the leg dies while the copy runs" kill -0 "$COPY"
kill -KILL "$SLOW"
wait "$SLOW" 2>/dev/null
wait "$COPY" || fail "nbdcopy through a degraded mirror exited $?"
check "the healthy leg holds every byte" cmp -s "$T/src3" "$T/leg0b"
"$BSTEER" stat "$(instance die)" --json >"$T/stat2.json"
check "the dead leg is marked failed" [ "$(json "$T/stat2.json" targets.1.failed)" = true ]
check "the server logged the failure" grep -q "upstream target 1" "$T/serve.log"
# The other export's upstream dies while idle.
kill -KILL "$MEM"
wait "$MEM" 2>/dev/null
if nbdsh -u "$(uri solo)" -c 'h.pread(4096, 0)' 2>"$T/err"; then
	fail "a read from a dead upstream succeeded"
fi
check "the client got EIO" grep -qi "input/output error\|EIO" "$T/err"
nbdcopy "$(uri m)" "$T/back3" || fail "read from the degraded mirror exited $?"
check "the degraded mirror still reads" cmp -s "$T/src3" "$T/back3"
# A target that cannot be flushed at exit is an error, and is named.
kill -TERM "$SERVE"
wait "$SERVE" && fail "the server exited 0 with an upstream it could not flush"
check "the final flush failure names the export" grep -q "export 'solo': the final flush failed" "$T/serve.log"

# --- a server that stops answering ---
start_kit hang memory 16M
HANG=$KIT
start_serve "$T/s.sock" --instance "$(instance hang)" --upstream-timeout 1 \
	--export "h=$(kit_uri hang)" || finish
kill -STOP "$HANG"
start=$(date +%s)
if nbdsh -u "$(uri h)" -c 'h.pread(4096, 0)' 2>"$T/err"; then
	fail "a read from a stopped upstream succeeded"
fi
took=$(($(date +%s) - start))
check "the stopped upstream failed the request in time ($took s)" [ "$took" -le 10 ]
check "the timeout was logged" grep -q "no progress" "$T/serve.log"
kill -CONT "$HANG"
kill -TERM "$SERVE"
wait "$SERVE" && fail "the server exited 0 with an upstream it could not flush"

# --- start-up errors ---
bad() {	# bad WHAT PATTERN TARGET
	local what=$1 pat=$2
	shift 2
	if "$BSTEER" serve --listen "unix:$T/bad.sock" --instance "$(instance bad)" \
		--export "x=$1" >"$T/bad.log" 2>&1; then
		fail "$what: serve started"
	fi
	check "$what: says '$pat'" grep -q "$pat" "$T/bad.log"
}
start_kit ro --readonly --filter=exportname memory 1M exportname-strict=true exportname=disk
bad "bad URI" "bad NBD URI" "nbd+unix:///x"
bad "bad port" "bad NBD URI" "nbd://127.0.0.1:port/x"
bad "refused" "cannot connect" "nbd+unix:///?socket=$T/nobody.sock"
bad "unknown export" "no such export" "nbd+unix:///nope?socket=$T/ro.sock"
bad "read-only upstream" "read-only" "nbd+unix:///disk?socket=$T/ro.sock"
"$BSTEER" serve --listen "unix:$T/ro2.sock" --instance "$(instance ro)" \
	--export "x=nbd+unix:///disk?socket=$T/ro.sock,ro" >"$T/ro2.log" 2>&1 &
RO=$!
PIDS+=("$RO")
wait_for 10 [ -S "$T/ro2.sock" ] || fail "a read-only export of a read-only upstream did not start"
kill "$RO"
wait "$RO"
finish
