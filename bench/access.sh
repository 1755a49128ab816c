#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/access.sh: admission under a flood. A good client (fio, 4K randread
# QD32, nbd engine) reads over TCP through a veth pair from a namespace's
# allowed address while a denied address of the same namespace opens new
# connections to the listening port (bench/flood.c, RATE a second),
# against the same run without the flood right before it: the ratio of
# the two, per round, is the number to read (the median of the rounds').
# The client is on IPv4, the flood on IPv6 (nbdkit's ip filter here takes
# keywords only). Servers: bsteer with its XDP program (--deny SRC --xdp
# require), bsteer with --xdp off (refused at accept()), nbdkit's file
# plugin with its ip filter (allow=anyipv4 deny=all). Servers take turns
# within each round.
#
# Usage: bench/access.sh [--quick] [--rounds N] [--runtime SECS] [--rate N]
#                        [--out DIR]
#   defaults: 3 rounds of 10 s, a flood of 5000 connections/s, a 256 MiB
#   image on tmpfs; --quick: 1 round of 5 s. Results: DIR/results.md
#   (default bench/results/access-DATE).
set -u
cd "$(dirname "$0")/.." || exit 1
usage() { sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'; }
ROUNDS=3 RUNTIME=10 RATE=5000 OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) ROUNDS=1 RUNTIME=5; shift ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "bench/access.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
case "$ROUNDS$RUNTIME$RATE" in
*[!0-9]*) echo "bench/access.sh: --rounds, --runtime and --rate take whole numbers" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "bench/access.sh: needs root (veth, namespaces, XDP)" >&2; exit 1; }
for t in fio nbdkit ip cc python3; do
	type -P "$t" >/dev/null || { echo "bench/access.sh: $t not installed (make deps)" >&2; exit 1; }
done
BSTEER=${BSTEER:-$PWD/build/bsteer}
[ -x "$BSTEER" ] || { echo "bench/access.sh: no $BSTEER (make)" >&2; exit 1; }
OUT=${OUT:-bench/results/access-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

D=$(mktemp -d /dev/shm/bsteer-access.XXXXXX) || exit 1
NS=bsa-$$ VH=bah$$ VN=ban$$
H=198.19.250.1 GOOD=198.19.250.2 H6=2001:db8:fa::1 BAD=2001:db8:fa::3 PORT=10809
SERVER=
cleanup() {
	[ -n "$SERVER" ] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
	ip netns del "$NS" 2>/dev/null
	ip link del "$VH" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cc -O2 -o "$D/flood" bench/flood.c || exit 1
head -c 256M /dev/urandom >"$D/img" || exit 1
ip netns add "$NS" && ip link add "$VH" type veth peer name "$VN" &&
	ip link set "$VN" netns "$NS" && ip addr add "$H/24" dev "$VH" && ip link set "$VH" up &&
	ip addr add "$H6/64" dev "$VH" nodad &&
	ip -n "$NS" addr add "$GOOD/24" dev "$VN" && ip -n "$NS" addr add "$BAD/64" dev "$VN" nodad &&
	ip -n "$NS" link set "$VN" up && ip -n "$NS" link set lo up || exit 1
echo "bench/access.sh: 4k randread QD32 over TCP on a veth pair, $ROUNDS round(s) of ${RUNTIME}s, flood $RATE/s from a denied address" >&2

start() {	# start SERVER: listening on H:PORT
	rm -f "$D/serve.log"
	case $1 in
	bsteer-xdp)
		"$BSTEER" serve --listen "tcp:$H:$PORT" --listen "tcp:[$H6]:$PORT" --allow-remote \
			--instance "bench-access-$$" --deny "$BAD" --xdp require \
			--export "d=$D/img" >"$D/serve.log" 2>&1 & ;;
	bsteer-noxdp)
		"$BSTEER" serve --listen "tcp:$H:$PORT" --listen "tcp:[$H6]:$PORT" --allow-remote \
			--instance "bench-access-$$" --deny "$BAD" --xdp off \
			--export "d=$D/img" >"$D/serve.log" 2>&1 & ;;
	nbdkit-ip)
		# nbdkit 1.32.5's ip filter refuses every literal address here
		# ("don't know how to parse rule"): its keywords admit the
		# client's IPv4 and refuse the flood's IPv6.
		nbdkit -f -p "$PORT" --filter=ip file "$D/img" \
			allow=anyipv4 deny=all >"$D/serve.log" 2>&1 & ;;
	esac
	SERVER=$!
	for _ in $(seq 200); do
		ip netns exec "$NS" python3 -c 'import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)
sys.exit(s.recv(8) != b"NBDMAGIC")' "$H" "$PORT" 2>/dev/null && return 0
		kill -0 "$SERVER" 2>/dev/null || break
		sleep 0.05
	done
	cat "$D/serve.log" >&2
	echo "bench/access.sh: $1 did not start" >&2
	exit 1
}

stop() {
	kill "$SERVER" 2>/dev/null
	wait "$SERVER" 2>/dev/null
	SERVER=
}

fio_iops() {	# the good client's IOPS over RUNTIME seconds (from GOOD: IPv4)
	ip netns exec "$NS" fio --name=good --ioengine=nbd --uri="nbd://$H:$PORT/d" \
		--rw=randread --bs=4k --iodepth=32 --size=256M --time_based \
		--runtime="$RUNTIME" --output-format=json >"$D/fio.json" 2>"$D/fio.err"
	# fio's nbd engine says "fio: connected to NBD server" before the JSON
	python3 -c 'import json, sys; t = open(sys.argv[1]).read()
print(int(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"]))' "$D/fio.json" ||
		{ cat "$D/fio.err" >&2; echo 0; }
}

# run SERVER ROUND: one unflooded run and one flooded, into the CSV.
run() {
	local quiet flooded fl
	start "$1"
	quiet=$(fio_iops)
	ip netns exec "$NS" "$D/flood" "$BAD" "$H6" "$PORT" "$((RUNTIME + 1))" "$RATE" \
		"$((RATE / 4 + 64))" >"$D/flood.txt" &
	fl=$!
	flooded=$(fio_iops)
	wait "$fl"
	stop
	echo "$1,$2,$quiet,$flooded,$(tr ' ' ',' <"$D/flood.txt")" >>"$OUT/runs.csv"
	echo "  $1 round $2: $quiet IOPS alone, $flooded flooded ($(cat "$D/flood.txt"))" >&2
}

SERVERS="bsteer-xdp bsteer-noxdp nbdkit-ip"
echo "server,round,iops_alone,iops_flooded,a,attempts,h,handshakes,f,failed,rl,rate" >"$OUT/runs.csv"
for r in $(seq "$ROUNDS"); do
	for s in $SERVERS; do
		run "$s" "$r"
	done
done

python3 - "$OUT/runs.csv" "$RATE" "$ROUNDS" "$RUNTIME" >"$OUT/results.md" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("Flood: %s new connections/s from a denied address; %s round(s) of %s s; medians."
      % (sys.argv[2], sys.argv[3], sys.argv[4]))
print()
print("| server | IOPS alone | IOPS flooded | flooded/alone (median of rounds) | rounds' flooded/alone | flood handshakes completed |")
print("| --- | ---: | ---: | ---: | --- | ---: |")
for s in ("bsteer-xdp", "bsteer-noxdp", "nbdkit-ip"):
    r = [x for x in rows if x["server"] == s]
    if not r:
        continue
    a = statistics.median(int(x["iops_alone"]) for x in r)
    f = statistics.median(int(x["iops_flooded"]) for x in r)
    h = statistics.median(int(x["handshakes"]) for x in r)
    ratios = [int(x["iops_flooded"]) / int(x["iops_alone"]) if int(x["iops_alone"]) else 0 for x in r]
    print("| %s | %d | %d | %.2f | %s | %d |" % (s, a, f, statistics.median(ratios),
          " ".join("%.2f" % v for v in ratios), h))
EOF
cat "$OUT/results.md"
