#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Stops the test cluster selftests/ceph/start.sh made in DIR, by the PIDs in
# DIR/*.pid: the OSD first (stopped after the mon, it would wait for it),
# then the mgr, then the mon; each gets SIGTERM, and SIGKILL if it has not
# exited within CEPH_STOP_TIMEOUT seconds (default 20). Then removes the
# cluster's files from DIR, and DIR itself if that leaves it empty.
# Idempotent: nothing there, nothing to do.
#
# Usage: selftests/ceph/stop.sh DIR
set -u
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || exit 0
D=$(cd "$1" && pwd)
BOUND=${CEPH_STOP_TIMEOUT:-20}
rc=0

# gone PID: exited (or a zombie nobody reaps yet).
gone() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ "$st" = Z ] || [ "$st" = X ]
}

# ours PID NAME: the process is that daemon of this cluster (not a reused PID).
ours() {
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "-c $D/ceph.conf"
}

stop() {	# stop NAME: the daemon whose PID is in DIR/NAME.pid
	local f=$D/$1.pid p end
	[ -e "$f" ] || return 0
	p=$(cat "$f")
	if [ -n "$p" ] && ! gone "$p" && ours "$p"; then
		kill -TERM "$p" 2>/dev/null
		end=$(($(date +%s) + BOUND))
		while ! gone "$p" && [ "$(date +%s)" -lt "$end" ]; do
			sleep 0.1
		done
		if ! gone "$p"; then
			echo "$0: $1 (PID $p) still there ${BOUND}s after SIGTERM: SIGKILL" >&2
			kill -KILL "$p" 2>/dev/null
			end=$(($(date +%s) + 10))
			while ! gone "$p" && [ "$(date +%s)" -lt "$end" ]; do
				sleep 0.1
			done
			gone "$p" || { echo "$0: $1 (PID $p) survives SIGKILL" >&2; rc=1; return; }
		fi
	fi
	rm -f "$f"
}

stop osd.0
stop mgr.x
stop mon.a
[ $rc -eq 0 ] || exit 1
rm -rf "$D/ceph.conf" "$D/monmap" "$D/mon" "$D/mgr" "$D/mgr-modules" "$D/osd" "$D/log" "$D/run" "$D/crash"
rmdir "$D" 2>/dev/null
exit 0
