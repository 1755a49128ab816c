#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bench/inline-stall.sh: what one thread's slow writes cost its other
# clients, per --inline-io setting. One server thread, two exports: w, an
# image on a loop ext4 mounted -o sync (each write waits for the journal:
# the slow writes), and r, an image on tmpfs. fio writes 4K at QD32 to w
# and, beside it, reads 4K at QD1 from r; the reads' latency is the
# neighbour's cost. Settings take turns; bsteer stat's inline counters
# follow each.
#
# Usage: bench/inline-stall.sh [BIN] [--runtime SECS] [--rounds N]
#   defaults: build/bsteer, 6 s, 2 rounds of: all, auto (default), off
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=build/bsteer RUNTIME=6 ROUNDS=2
while [ $# -gt 0 ]; do
	case $1 in
	--runtime) RUNTIME=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	-h|--help) sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) BIN=$1; shift ;;
	esac
done
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
D=$(mktemp -d /var/tmp/bsteer-stall.XXXXXX) || exit 1
R=$(mktemp /dev/shm/bsteer-stall.XXXXXX) || exit 1
SERVER=
cleanup() {
	[ -n "$SERVER" ] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
	mountpoint -q "$D/mnt" && { sleep 1; umount "$D/mnt"; }
	rm -rf "$D" "$R"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir "$D/mnt"
truncate -s 1G "$D/fs.img"
mkfs.ext4 -q -F "$D/fs.img" || exit 1
mount -o loop "$D/fs.img" "$D/mnt" || exit 1
head -c 512M /dev/urandom >"$D/mnt/w.img"
head -c 256M /dev/urandom >"$R"
sync
mount -o remount,sync "$D/mnt" || exit 1
S=$D/s.sock
for _ in $(seq "$ROUNDS"); do
	for mode in all auto off; do
		rm -f "$S"
		"$BIN" serve --listen "unix:$S" --instance "stall-$$" --threads 1 --inline-io "$mode" \
			--export "w=$D/mnt/w.img" --export "r=$R" >"$D/serve.log" 2>&1 &
		SERVER=$!
		for _ in $(seq 100); do
			grep -q "listening on" "$D/serve.log" 2>/dev/null && break
			sleep 0.05
		done
		fio --output-format=json --output="$D/fio.json" --ioengine=nbd --bs=4k \
			--runtime="$RUNTIME" --time_based \
			--name=w --uri="nbd+unix:///w?socket=$S" --rw=randwrite --iodepth=32 --size=512M \
			--name=r --uri="nbd+unix:///r?socket=$S" --rw=randread --iodepth=1 --size=256M \
			>/dev/null 2>&1 || { echo "bench/inline-stall.sh: fio failed ($mode)" >&2; exit 1; }
		"$BIN" stat "stall-$$" --json >"$D/stat.json"
		kill "$SERVER"; wait "$SERVER" 2>/dev/null; SERVER=
		python3 - "$D/fio.json" "$D/stat.json" "$mode" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"]
c = json.load(open(sys.argv[2]))["counters"]
w, r = j[0]["write"], j[1]["read"]
p = r["clat_ns"]["percentile"]
print(f"{sys.argv[3]:4}  w {w['iops']:6.0f} IOPS | r {r['iops']:6.0f} IOPS, p50 {p['50.000000'] / 1e3:6.0f} us, "
      f"p99 {p['99.000000'] / 1e3:6.0f} us, max {r['clat_ns']['max'] / 1e3:6.0f} us | "
      f"inline_writes {c['inline_writes']}, slow {c['inline_slow_writes']}, "
      f"backoff {c['inline_backoff_writes']}")
PY
	done
done
