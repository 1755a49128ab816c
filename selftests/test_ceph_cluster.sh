#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The one-node Ceph test cluster of selftests/ceph/ (for the RBD target,
# issue 22): start.sh brings up a mon, a mgr and a memstore OSD in $T/ceph
# and prints ceph.conf as its last line; HEALTH_OK and a pool rbd; an
# image made with rbd create takes 1 MiB written through librbd (python3-rbd)
# and rbd export gives it back, zeros around it; rbd import and export round
# trip 1 MiB; stop.sh stops every daemon start.sh started and removes the
# cluster's files, and a second stop.sh does nothing. Prints how long
# start.sh took and the daemons' memory.
. "$(dirname "$0")/lib.sh"
need_root
need_tools ceph-mon ceph-mgr ceph-osd ceph rbd monmaptool
/usr/bin/python3 -c 'import rados, rbd' 2>/dev/null || skip "python3-rbd not installed (make deps)"
export PATH=/usr/bin:$PATH	# the ceph CLI wants Debian's python3
C=$T/ceph
# stop.sh runs on any exit, the test's failure included.
BEFORE_KILL+=("'$PWD/selftests/ceph/stop.sh' '$C'")
trap 'exit 143' TERM INT	# run.sh's timeout: through the EXIT trap too

# ceph_procs: the PIDs of processes run with -c the cluster's ceph.conf
# (pgrep -f would match a shell that runs it with that pattern).
ceph_procs() {
	local p
	for p in /proc/[0-9]*; do
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "-c $C/ceph.conf " && echo "${p#/proc/}"
	done
}

# logs: the tail of the daemons' logs, before stop.sh removes them.
logs() {
	local f
	for f in "$C"/log/*.log; do
		[ -s "$f" ] || continue
		echo "--- $f (last 15 lines)" >&2
		tail -15 "$f" >&2
	done
}

start=$(date +%s.%N)
selftests/ceph/start.sh "$C" >"$T/start.out"
rc=$?
secs=$(echo "$(date +%s.%N) - $start" | bc)
[ $rc -eq 0 ] || { fail "start.sh: exit $rc"; finish; }
CONF=$(tail -1 "$T/start.out")
check "start.sh: ceph.conf is its only line of stdout" [ "$(cat "$T/start.out")" = "$C/ceph.conf" ]
[ -s "$CONF" ] || { fail "start.sh: no $CONF"; finish; }
echo "start.sh took ${secs}s" >&2

# The daemons it started, by the PIDs it wrote.
DAEMONS=()
for n in mon.a mgr.x osd.0; do
	[ -s "$C/$n.pid" ] || { fail "$n: no PID file"; finish; }
	DAEMONS+=("$(cat "$C/$n.pid")")
done
check "three daemons running, and only those" [ "$(ceph_procs | sort | paste -sd,)" = \
	"$(printf '%s\n' "${DAEMONS[@]}" | sort | paste -sd,)" ]
check "three daemons running" [ "$(for p in "${DAEMONS[@]}"; do kill -0 "$p" && echo "$p"; done | wc -l)" = 3 ]
for p in "${DAEMONS[@]}"; do
	printf '%s: %s MiB RSS\n' "$(cat "/proc/$p/comm")" \
		"$(($(awk '/^VmRSS:/ {print $2}' "/proc/$p/status") / 1024))" >&2
done
check "the mon on 127.0.0.1" grep -Eq '^mon host = v2:127\.0\.0\.1:[0-9]+$' "$CONF"
for d in mon mgr osd log run; do
	check "$d under the cluster's directory" [ -d "$C/$d" ]
done
check "admin sockets under the cluster's directory" \
	[ "$(find "$C/run" -name '*.asok' | wc -l)" -ge 3 ]
check "HEALTH_OK" sh -c "ceph -c '$CONF' health | grep -qx HEALTH_OK"
check "pool rbd, application rbd" sh -c "ceph -c '$CONF' osd pool application get rbd | grep -q '\"rbd\"'"

# --- an image made with rbd create, 1 MiB written through librbd
check "rbd create" rbd -c "$CONF" create --size 4M rbd/t
check "rbd info: 4 MiB" sh -c "rbd -c '$CONF' info rbd/t | grep -q 'size 4 MiB'"
head -c 1M /dev/urandom >"$T/data"
/usr/bin/python3 - "$CONF" "$T/data" <<'PY'
import rados, rbd, sys
with rados.Rados(conffile=sys.argv[1]) as cluster:
    with cluster.open_ioctx("rbd") as io:
        with rbd.Image(io, "t") as img:
            data = open(sys.argv[2], "rb").read()
            assert img.write(data, 1 << 20) == len(data)
            img.flush()
PY
check "librbd: 1 MiB written at 1 MiB" [ $? -eq 0 ]
truncate -s 4M "$T/want"
dd if="$T/data" of="$T/want" bs=1M seek=1 conv=notrunc status=none
rbd -c "$CONF" export --no-progress rbd/t "$T/got" 2>"$T/rbd.err"
check "rbd export: the 1 MiB, zeros around it" cmp "$T/want" "$T/got" || cat "$T/rbd.err" >&2

# --- rbd import and export round trip
rbd -c "$CONF" import --no-progress "$T/data" rbd/imp 2>"$T/rbd.err"
check "rbd import" [ $? -eq 0 ] || cat "$T/rbd.err" >&2
rm -f "$T/got"
rbd -c "$CONF" export --no-progress rbd/imp "$T/got" 2>"$T/rbd.err"
check "rbd export of the import: the same bytes" cmp "$T/data" "$T/got" || cat "$T/rbd.err" >&2
check "rbd ls: both images" sh -c "[ \"\$(rbd -c '$CONF' ls rbd | sort | paste -sd,)\" = imp,t ]"
[ $FAILS -eq 0 ] || logs

# --- stop.sh: every daemon gone, the files too
start=$(date +%s.%N)
selftests/ceph/stop.sh "$C"
check "stop.sh: exit 0" [ $? -eq 0 ]
echo "stop.sh took $(echo "$(date +%s.%N) - $start" | bc)s" >&2
# gone PID: exited (a zombie until PID 1 reaps it counts as gone).
gone() { [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
for p in "${DAEMONS[@]}"; do
	check "PID $p gone" gone "$p"
done
check "no process with the cluster's ceph.conf" [ -z "$(ceph_procs)" ]
check "the cluster's directory removed" [ ! -e "$C" ]
selftests/ceph/stop.sh "$C"
check "stop.sh again: exit 0" [ $? -eq 0 ]
finish
