#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The RBD target (rbd:POOL/IMAGE[@SNAP]:conf=PATH, librbd) on a one-node
# Ceph cluster of the test's own (selftests/ceph/start.sh):
#  - a mirror of a local file and an RBD image: nbdcopy writes through it,
#    both legs hold the bytes (the image read back with rbd export, not
#    through bsteer), and reads come back; FLUSH, TRIM and WRITE_ZEROES
#    reach the image;
#  - a cow overlay over an RBD base: writes land in the overlay, the base
#    (a snapshot-free image) is unchanged;
#  - a read-only export of a snapshot;
#  - the OSD stopped (SIGSTOP): the RBD leg of a mirror fails after
#    --upstream-timeout (librbd's op timeout) while the writes stand on
#    the local leg; the OSD back, bsteer resync rebuilds the image;
#  - a bad pool, image, snapshot without ro, and conf: refused at start,
#    each with its reason.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdcopy nbdinfo nbdsh rbd ceph-mon ceph-osd ceph-mgr python3 jq

C=$T/ceph
# After the servers stop (AFTER_KILL): the cluster, OSD first.
AFTER_KILL+=("'$(dirname "$0")/ceph/stop.sh' '$C'")
CONF=$("$(dirname "$0")/ceph/start.sh" "$C" 2>"$T/ceph.err" | tail -1)
[ -n "$CONF" ] && [ -f "$CONF" ] || { cat "$T/ceph.err" >&2; fail "the test cluster did not start"; }
rbdc() { timeout 60 rbd -c "$CONF" "$@"; }
rbdc create --size 64M rbd/m || fail "rbd create"
rbdc create --size 64M rbd/base || fail "rbd create base"

INST=$(instance rbd)
S=$T/s.sock
truncate -s 64M "$T/local.img"
head -c 16M /dev/urandom >"$T/src"

# ---- a mirror: a local file and an RBD image ----
start_serve "$S" --instance "$INST" --export "m=$T/local.img,rbd:rbd/m:conf=$CONF" || finish
M="nbd+unix:///m?socket=$S"
check "nbdinfo: the export's size" [ "$(nbdinfo --size "$M")" = 67108864 ]
nbdcopy --request-size=65536 "$T/src" "$M" || fail "nbdcopy into the mirror"
rbdc export rbd/m "$T/m.out" >/dev/null 2>&1 || fail "rbd export"
check "the RBD leg holds every byte (rbd export)" cmp -n 16777216 "$T/src" "$T/m.out"
check "... and the local leg" cmp -n 16777216 "$T/src" "$T/local.img"
nbdcopy "$M" "$T/back" || fail "nbdcopy out of the mirror"
check "reads come back" cmp -n 16777216 "$T/src" "$T/back"
# FLUSH, TRIM, WRITE_ZEROES: 1 MiB of zeroes at 1 MiB, trimmed at 3 MiB.
nbdsh -u "$M" -c '
h.flush()
h.zero(1 << 20, 1 << 20)
h.trim(1 << 20, 3 << 20)
h.flush()
' || fail "nbdsh flush/zero/trim"
rbdc export rbd/m "$T/m2.out" >/dev/null 2>&1 || fail "rbd export again"
check "WRITE_ZEROES reached the image" cmp -n 1048576 -i 1048576:0 "$T/m2.out" /dev/zero
check "TRIM reached the image (reads as zeroes)" cmp -n 1048576 -i 3145728:0 "$T/m2.out" /dev/zero
check "the rest is untouched" cmp -n 1048576 "$T/src" "$T/m2.out"
"$BSTEER" stat "$INST" --json >"$T/stat.json"
check "the RBD target counted its ops, no errors" \
	jq -e '.targets[1].ops > 256 and .targets[1].errors == 0' "$T/stat.json"
stop_serve

# ---- cow over an RBD base ----
rbdc import --dest-pool rbd "$T/src" base2 >/dev/null 2>&1 || fail "rbd import"
truncate -s 16M "$T/overlay.img"
start_serve "$S" --instance "$INST" --export "c=rbd:rbd/base2:conf=$CONF,$T/overlay.img,policy=cow" || finish
head -c 1M /dev/urandom >"$T/patch"
nbdsh -u "nbd+unix:///c?socket=$S" -c "
h.pwrite(open('$T/patch', 'rb').read(), 0)
h.flush()
" || fail "write into the cow export"
nbdcopy "nbd+unix:///c?socket=$S" "$T/cow.out" || fail "read the cow export"
check "cow: the write reads back" cmp -n 1048576 "$T/patch" "$T/cow.out"
check "cow: the rest is the base" cmp -i 1048576 "$T/src" "$T/cow.out"
stop_serve
rbdc export rbd/base2 "$T/base2.out" >/dev/null 2>&1 || fail "rbd export base2"
check "cow: the RBD base is unchanged" cmp "$T/src" "$T/base2.out"

# ---- a snapshot, read-only ----
rbdc snap create rbd/base2@s1 >/dev/null 2>&1 || fail "rbd snap create"
start_serve "$S" --instance "$INST" --export "s=rbd:rbd/base2@s1:conf=$CONF,ro" || finish
nbdcopy "nbd+unix:///s?socket=$S" "$T/snap.out" || fail "read the snapshot"
check "a snapshot export reads the image as it was" cmp "$T/src" "$T/snap.out"
stop_serve

# ---- refusals at start ----
bad() {	# bad WHAT EXPECT SPEC
	"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" --export "x=$3" \
		--upstream-timeout 10 >"$T/bad.log" 2>&1
	local rc=$?
	check "$1: refused ($rc), saying '$2'" sh -c "[ $rc -ne 0 ] && grep -q \"$2\" '$T/bad.log'"
}
bad "a pool that does not exist" "pool 'nopool'" "rbd:nopool/m:conf=$CONF"
bad "an image that does not exist" "image 'nosuch'" "rbd:rbd/nosuch:conf=$CONF"
bad "a snapshot without ro" "snapshot is read-only" "rbd:rbd/base2@s1:conf=$CONF"
bad "a conf file that is not there" "cannot read the Ceph configuration" "rbd:rbd/m:conf=$T/none.conf"
bad "a spec without an image" "bad RBD target" "rbd:rbd"
# ---- the OSD stopped: the RBD leg fails after --upstream-timeout, the
# mirror goes on; the OSD back, bsteer resync rebuilds the leg in place ----
rbdc create --size 16M rbd/m2 || fail "rbd create m2"
rbdc create --size 4M rbd/probe || fail "rbd create probe"
truncate -s 16M "$T/local2.img"
start_serve "$S" --instance "$INST" --upstream-timeout 10 \
	--export "m2=$T/local2.img,rbd:rbd/m2:conf=$CONF" || finish
M2="nbd+unix:///m2?socket=$S"
OSD=$(cat "$C/osd.0.pid")
kill -STOP "$OSD"
AFTER_KILL+=("kill -CONT $OSD")
# 4 MiB while the OSD is stopped: each write waits for the RBD leg until
# librbd's op timeout (10 s) ends it; then the leg is failed, the writes stand.
head -c 4M /dev/urandom >"$T/src2"
nbdcopy --request-size=1048576 "$T/src2" "$M2" || fail "writes with the OSD stopped"
"$BSTEER" stat "$INST" --json >"$T/stat2.json"
check "the RBD leg is marked failed" jq -e '.targets[1].failed' "$T/stat2.json"
check "... after its ops failed (errors counted)" jq -e '.targets[1].errors > 0' "$T/stat2.json"
check "the writes are on the local leg" cmp -n 4194304 "$T/src2" "$T/local2.img"
kill -CONT "$OSD"
# The resync starts once the cluster serves I/O again: a 4 KiB write
# through librbd succeeds. It does at once: start.sh's long heartbeat grace
# keeps the PGs' read leases from expiring during the stop. 120 s bounds a
# cluster that never recovers; then the OSD's stuck ops say why.
probe() { timeout 20 rbd -c "$CONF" bench --io-type write --io-size 4K --io-total 4K rbd/probe >/dev/null 2>&1; }
if ! check "the cluster serves I/O again" wait_for 120 probe; then
	timeout 10 ceph --admin-daemon "$C/run/ceph-osd.0.asok" dump_ops_in_flight 2>&1 |
		grep -m5 -E '"(description|flag_point)"' >&2
	finish
fi
"$BSTEER" resync "$INST" m2 1 --json >"$T/resync.json" 2>"$T/resync.err" ||
	{ cat "$T/resync.err" >&2; fail "bsteer resync exited $?"; }
check "resync: done" jq -e '.state == "done"' "$T/resync.json"
"$BSTEER" stat "$INST" --json >"$T/stat3.json"
check "the RBD leg serves again" jq -e '(.targets[1].failed | not) and (.targets[1].resyncing | not)' "$T/stat3.json"
stop_serve
rbdc export rbd/m2 "$T/m2img.out" >"$T/exp.log" 2>&1 || { tail -5 "$T/exp.log" >&2; fail "rbd export m2"; }
check "the rebuilt image equals the local leg" cmp "$T/local2.img" "$T/m2img.out"

finish
