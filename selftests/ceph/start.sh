#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# A one-node Ceph test cluster (Ceph 16, Debian's packages): one mon, one
# mgr and one memstore OSD, as root, everything under DIR (created if
# missing): config, data, logs, admin sockets, PID files. The mon listens on
# 127.0.0.1 at a free port (msgr2 only), the mgr and the OSD on 127.0.0.1
# too, so two clusters can run side by side. No auth (auth none), pool size
# 1, a pool named rbd ready for librbd and the rbd CLI.
#
# Usage: selftests/ceph/start.sh DIR
# Prints the path of DIR/ceph.conf as its last line of stdout; everything
# else goes to stderr. On failure: the reason and the tail of the daemons'
# logs, what it started stopped (selftests/ceph/stop.sh), and exit 1.
# CEPH_START_TIMEOUT (seconds, default 120) bounds the wait for the cluster;
# it is up in about 10 s here.
set -u
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH	# the ceph CLI wants Debian's python3
HERE=$(cd "$(dirname "$0")" && pwd)
BOUND=${CEPH_START_TIMEOUT:-120}
# memstore: in the OSD's memory, CEPH_MEMSTORE_BYTES at most (default 1 GiB),
# gone with it; bluestore: on a sparse 10 GiB file, DIR/osd/ceph-0/block.
STORE=${CEPH_OBJECTSTORE:-memstore}
MEMSTORE_BYTES=${CEPH_MEMSTORE_BYTES:-1073741824}
case $MEMSTORE_BYTES in ''|*[!0-9]*) echo "$0: CEPH_MEMSTORE_BYTES: a number of bytes" >&2; exit 2 ;; esac
case $STORE in memstore|bluestore) ;; *) echo "$0: CEPH_OBJECTSTORE: memstore or bluestore" >&2; exit 2 ;; esac

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root" >&2; exit 1; }
for t in ceph-mon ceph-mgr ceph-osd ceph monmaptool rbd; do
	command -v "$t" >/dev/null || { echo "$0: $t not installed (make deps)" >&2; exit 1; }
done
mkdir -p "$1" || exit 1
D=$(cd "$1" && pwd)
[ -e "$D/ceph.conf" ] && { echo "$0: $D/ceph.conf exists: a cluster is there already" >&2; exit 1; }
CONF=$D/ceph.conf
START=$(date +%s.%N)

die() {
	local f
	echo "$0: $*" >&2
	[ -e "$D/mon.a.pid" ] && kill -0 "$(cat "$D/mon.a.pid")" 2>/dev/null &&
		timeout 10 ceph -c "$CONF" health detail >&2 2>&1
	for f in "$D"/log/*.log "$D"/log/*.out; do
		[ -s "$f" ] && [ "${f##*/}" != ceph.audit.log ] || continue
		echo "--- $f (last 20 lines)" >&2
		tail -20 "$f" >&2
	done
	"$HERE/stop.sh" "$D" >&2
	exit 1
}
trap 'die "interrupted"' INT TERM

# ceph CLI and rbd against this cluster, bounded so a lost mon cannot hang us.
c() { timeout 30 ceph -c "$CONF" "$@"; }
r() { timeout 30 rbd -c "$CONF" "$@"; }

# A free port on 127.0.0.1 for the mon. Another process could take it before
# the mon binds; then the mon fails to start and says so.
PORT=$(/usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])') || die "no free port"
FSID=$(cat /proc/sys/kernel/random/uuid)
mkdir -p "$D/mon/ceph-a" "$D/mgr/ceph-x" "$D/osd/ceph-0" "$D/log" "$D/run" "$D/crash" || die "mkdir"

cat >"$CONF" <<EOF
# A one-node test cluster made by selftests/ceph/start.sh; stop.sh removes it.
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$PORT
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $D/run
admin socket = $D/run/\$cluster-\$name.\$pid.asok
crash dir = $D/crash
log file = $D/log/\$name.log
log to syslog = false
mon cluster log file = $D/log/\$cluster.\$channel.log
err to syslog = false
mon data = $D/mon/\$cluster-\$id
mgr data = $D/mgr/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
osd objectstore = $STORE
memstore device bytes = $MEMSTORE_BYTES
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon data avail warn = 5
mon data avail crit = 1
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon warn on insecure global id reclaim = false
paxos propose interval = 0.2
mgr stats period = 1
# A PG's read lease is osd heartbeat grace x osd pool default read lease
# ratio (20 s x 0.8). A lone OSD stopped (SIGSTOP) past it finds its PGs'
# leases expired, with no peer to renew them: every op then waits "for
# readable", for minutes (seen with dump_ops_in_flight). With no peer OSDs
# the grace detects nothing, so it is long: a stop of up to 8 min is
# survived.
osd heartbeat grace = 600
mgr tick period = 1
mon mgr digest period = 1
[mon]
admin socket = $D/run/\$cluster-\$name.asok
[mgr]
admin socket = $D/run/\$cluster-\$name.asok
mgr initial modules = rbd_support
mgr module path = $D/mgr-modules
[osd]
admin socket = $D/run/\$cluster-\$name.asok
osd memory target = 536870912
[client]
log file = $D/log/client.log
EOF

# start_daemon NAME CMD...: in the background, its PID in DIR/NAME.pid.
start_daemon() {
	local name=$1
	shift
	"$@" -f -c "$CONF" </dev/null >"$D/log/$name.out" 2>&1 &
	echo $! >"$D/$name.pid"
}

# poll SECS WHAT COMMAND...: until the command succeeds, within the bound.
poll() {
	local end=$(($(date +%s) + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge "$end" ] && die "$what: not within ${BOUND}s"
		alive || die "$what: a daemon died"
		sleep 0.2
	done
}

alive() {	# every daemon started so far still runs
	local f p
	for f in "$D"/*.pid; do
		[ -e "$f" ] || continue
		p=$(cat "$f")
		kill -0 "$p" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] ||
			{ echo "$(basename "$f" .pid) (PID $p) is gone" >&2; return 1; }
	done
}

# stage WHAT: "ceph: +SECONDS WHAT" on stderr, the time since the start.
stage() { printf 'ceph: +%.1fs %s\n' "$(echo "$(date +%s.%N) - $START" | bc)" "$*" >&2; }

T0=$(date +%s)
left() { echo $((BOUND - ($(date +%s) - T0))); }

# --- mon
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" "$D/monmap" >/dev/null 2>"$D/log/monmaptool.out" ||
	die "monmaptool failed"
ceph-mon --mkfs -i a -c "$CONF" --monmap "$D/monmap" >"$D/log/mon-mkfs.out" 2>&1 || die "ceph-mon --mkfs failed"
start_daemon mon.a ceph-mon -i a

# --- mgr (no key needed without auth), with only the modules Ceph 16
# keeps always on: loading the other 20 takes seconds and 150 MiB. Started
# at once: it loads its modules (5 s) before it needs the mon.
mkdir -p "$D/mgr-modules" || die "mkdir"
for m in mgr_module.py mgr_util.py balancer crash devicehealth orchestrator pg_autoscaler progress \
	rbd_support status telemetry volumes; do
	ln -s "/usr/share/ceph/mgr/$m" "$D/mgr-modules/$m" || die "no mgr module $m"
done
start_daemon mgr.x ceph-mgr -i x
poll "$(left)" "the mon answering" c mon stat
stage "mon up"

# --- OSD: an id from the mon, a memstore made by --mkfs, then the daemon;
# it puts itself in the CRUSH map at start (osd crush update on start).
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
id=$(c osd new "$OSD_UUID" 2>"$D/log/osd-new.out") || die "ceph osd new failed"
[ "$id" = 0 ] || die "ceph osd new gave id '$id', not 0"
ceph-osd -i 0 --mkfs --osd-uuid "$OSD_UUID" -c "$CONF" >"$D/log/osd-mkfs.out" 2>&1 || die "ceph-osd --mkfs failed"
start_daemon osd.0 ceph-osd -i 0

osd_up() {
	local s
	s=$(c osd stat -f json) && [[ $s == *'"num_up_osds":1,'* && $s == *'"num_in_osds":1,'* ]]
}
poll "$(left)" "the OSD up and in" osd_up
stage "OSD up and in"
mgr_up() { c mgr stat -f json | grep -q '"available": *true'; }
poll "$(left)" "the mgr available" mgr_up
stage "mgr available"

# --- the rbd pool, usable
c osd pool create rbd 8 >/dev/null 2>"$D/log/pool.out" || die "ceph osd pool create rbd failed: $(cat "$D/log/pool.out")"
r pool init rbd 2>"$D/log/pool.out" || die "rbd pool init failed: $(cat "$D/log/pool.out")"
pgs_clean() { c pg stat | grep -Eq '^[0-9]+ pgs: [0-9]+ active\+clean;'; }
poll "$(left)" "all PGs active+clean" pgs_clean
stage "pool rbd: PGs active+clean"
r create --size 64M rbd/probe 2>"$D/log/probe.out" && r rm --no-progress rbd/probe 2>>"$D/log/probe.out" ||
	die "rbd create/rm of a probe image failed: $(cat "$D/log/probe.out")"
health_ok() { c health | grep -q '^HEALTH_OK'; }
poll "$(left)" "HEALTH_OK" health_ok

trap - INT TERM
printf 'ceph: one-node cluster up in %.1fs: mon 127.0.0.1:%s, fsid %s\n' \
	"$(echo "$(date +%s.%N) - $START" | bc)" "$PORT" "$FSID" >&2
echo "$CONF"
