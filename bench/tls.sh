#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/tls.sh: what TLS costs. bsteer serve and nbdkit (file plugin), each
# plain and with --tls require (X.509, certificates made here by certtool),
# over loopback TCP, read by the same client: nbdcopy (libnbd) copying the
# whole export to null:, one connection, extents off (every byte is read),
# 4 KiB requests 32 in flight, then 256 KiB requests 8 in flight; then the
# same two written: nbdcopy of a file of random data (in memory) into the
# whole export. Reads time the server's sends (with TLS: the encryption),
# writes its receives (the decryption). fio's nbd
# engine cannot be the client: libnbd refuses it the certificate files.
# The four servers take turns within each round; figures are medians over
# the rounds, with the ratios TLS/plain for each server and bsteer/nbdkit
# for each mode.
#
# Usage: bench/tls.sh [--quick] [--rounds N] [--size SIZE] [--out DIR]
#   --quick   1 round over a 64 MiB image (well under a minute)
#   default   3 rounds over 512 MiB
# Writes DIR/results.md (default DIR: bench/results/tls-YYYYmmdd-HHMMSS).
set -u
cd "$(dirname "$0")/.." || exit 1
ROUNDS=3 SIZE=512 OUT=""
while [ $# -gt 0 ]; do
	case $1 in
	--quick) ROUNDS=1; SIZE=64; shift ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--size) SIZE=${2%M}; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '3,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/tls.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case $ROUNDS$SIZE in *[!0-9]*) echo "bench/tls.sh: --rounds N, --size MiB" >&2; exit 2 ;; esac
for t in nbdkit nbdcopy nbdinfo certtool python3; do
	command -v $t >/dev/null || { echo "bench/tls.sh: $t not installed (make deps)" >&2; exit 1; }
done
[ -x build/bsteer ] || make -s || exit 1
OUT=${OUT:-bench/results/tls-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
T=$(mktemp -d /tmp/bsteer-bench-tls.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Certificates: a CA and a server certificate for 127.0.0.1.
mkdir -p "$T/srv" "$T/cli"
printf '%s\n' "cn = bench CA" ca cert_signing_key "expiration_days = 2" >"$T/ca.info"
printf '%s\n' "cn = localhost" "ip_address = 127.0.0.1" tls_www_server encryption_key \
	signing_key "expiration_days = 2" >"$T/srv.info"
certtool --generate-privkey --outfile "$T/ca-key.pem" 2>/dev/null
certtool --generate-self-signed --load-privkey "$T/ca-key.pem" --template "$T/ca.info" \
	--outfile "$T/srv/ca-cert.pem" 2>/dev/null
certtool --generate-privkey --outfile "$T/srv/server-key.pem" 2>/dev/null
certtool --generate-certificate --load-ca-certificate "$T/srv/ca-cert.pem" \
	--load-ca-privkey "$T/ca-key.pem" --load-privkey "$T/srv/server-key.pem" \
	--template "$T/srv.info" --outfile "$T/srv/server-cert.pem" 2>/dev/null
cp "$T/srv/ca-cert.pem" "$T/cli/"

# The image: real data, so every read moves bytes; and what the writes write.
head -c "${SIZE}M" /dev/urandom >"$T/disk.img"
head -c "${SIZE}M" /dev/urandom >"$T/src.img"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

SERVER=""
start() {	# start NAME PORT: one of the four servers
	local tls=()
	case $1 in
	bsteer*)
		[ "$1" = bsteer-tls ] && tls=(--tls require --tls-certificates "$T/srv")
		build/bsteer serve --listen "tcp:127.0.0.1:$2" --instance "bench-tls-$$" \
			--export "d=$T/disk.img" "${tls[@]}" >"$T/serve.log" 2>&1 &
		SERVER=$! ;;
	nbdkit*)
		[ "$1" = nbdkit-tls ] && tls=(--tls=require "--tls-certificates=$T/srv")
		nbdkit -f -p "$2" -i 127.0.0.1 -e d "${tls[@]}" file "$T/disk.img" >"$T/serve.log" 2>&1 &
		SERVER=$! ;;
	esac
	PIDS+=("$SERVER")
	for _ in $(seq 200); do	# until it answers (60 s bounds a hang)
		nbdinfo --size "$(uri "$1" "$2")" >/dev/null 2>&1 && return 0
		kill -0 "$SERVER" 2>/dev/null || break
		sleep 0.3
	done
	cat "$T/serve.log" >&2
	echo "bench/tls.sh: $1 did not start" >&2
	exit 1
}
stop() { kill -INT "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; SERVER=""; }
uri() {	# uri NAME PORT
	case $1 in
	*-tls) echo "nbds://127.0.0.1:$2/d?tls-certificates=$T/cli" ;;
	*) echo "nbd://127.0.0.1:$2/d" ;;
	esac
}
run() {	# run NAME PORT [w]REQSIZE REQUESTS: seconds for the whole export
	local t0 t1 from to
	from=$(uri "$1" "$2") to=null:
	case $3 in w*) from=$T/src.img to=$(uri "$1" "$2") ;; esac
	t0=$(date +%s.%N)
	nbdcopy --no-extents --connections=1 --request-size="${3#w}" --requests="$4" \
		"$from" "$to" || { echo "bench/tls.sh: nbdcopy with $1 failed" >&2; exit 1; }
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

SERVERS="bsteer bsteer-tls nbdkit nbdkit-tls"
WORK="4096:32 262144:8 w4096:32 w262144:8"
: >"$T/raw"
for r in $(seq "$ROUNDS"); do
	for s in $SERVERS; do
		port=$(free_port)
		start "$s" "$port"
		for w in $WORK; do
			secs=$(run "$s" "$port" "${w%:*}" "${w#*:}")
			echo "$r $s $w $secs" >>"$T/raw"
			printf 'round %s  %-11s %8s x%-2s  %6.2f s\n' "$r" "$s" "${w%:*}" "${w#*:}" "$secs" >&2
		done
		stop
	done
done

python3 - "$T/raw" "$SIZE" "$ROUNDS" >"$OUT/results.md" <<'PY'
import sys, statistics, collections
raw, size, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
secs = collections.defaultdict(list)
for line in open(raw):
    _, s, w, t = line.split()
    secs[(s, w)].append(float(t))
byte = size << 20
print(f"nbdcopy of a {size} MiB export to null: (read) and of a file into it (write), "
      f"1 connection, loopback TCP, median of {rounds} round(s)\n")
print("| server | request, in flight | MiB/s | IOPS | TLS/plain | bsteer/nbdkit |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
med = {k: statistics.median(v) for k, v in secs.items()}
for w in ("4096:32", "262144:8", "w4096:32", "w262144:8"):
    req, qd = w.lstrip("w").split(":")
    how = "write" if w.startswith("w") else "read"
    for s in ("bsteer", "bsteer-tls", "nbdkit", "nbdkit-tls"):
        t = med[(s, w)]
        base = s.split("-")[0]
        tls = f"{med[(base, w)] / t:.2f}x" if s.endswith("tls") else ""
        other = s.replace("bsteer", "nbdkit") if s.startswith("bsteer") else None
        vs = f"{med[(other, w)] / t:.2f}x" if other else ""
        print(f"| {s} | {how} {int(req) // 1024} KiB x{qd} | {byte / t / 2**20:.0f} | "
              f"{byte / int(req) / t:.0f} | {tls} | {vs} |")
PY
cat "$OUT/results.md"
echo "(bench/tls.sh: $OUT/results.md)" >&2
