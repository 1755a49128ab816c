#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The live move of an export from a local file into Ceph, while clients
# write, on a one-node cluster of the test's own (selftests/ceph/start.sh):
# a one-leg mirror export on a file, two workers; an RBD leg added with
# --resync while a client writes all over the export; the file leg removed
# while another client writes; the image, read with rbd export (not through
# bsteer), holds what the client wrote, byte for byte, and so does what the
# export reads back; the file is let go. Then the move back: a file leg
# added and the RBD leg removed (its connections and eventfds closed on
# every worker).
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdcopy nbdsh rbd ceph-mon ceph-osd ceph-mgr python3

C=$T/ceph
# After the servers stop (AFTER_KILL): the cluster, OSD first.
AFTER_KILL+=("'$(dirname "$0")/ceph/stop.sh' '$C'")
CONF=$("$(dirname "$0")/ceph/start.sh" "$C" 2>"$T/ceph.err" | tail -1)
[ -n "$CONF" ] && [ -f "$CONF" ] || { cat "$T/ceph.err" >&2; fail "the test cluster did not start"; finish; }
rbdc() { timeout 60 rbd -c "$CONF" "$@"; }
rbdc create --size 64M rbd/moved || fail "rbd create"

INST=$(instance rbdmv)
S=$T/s.sock
U="nbd+unix:///d?socket=$S"
RBD="rbd:rbd/moved:conf=$CONF"


head -c 64M /dev/urandom >"$T/src"
cp "$T/src" "$T/disk.img"
start_serve "$S" --instance "$INST" --threads 2 --upstream-timeout 30 \
	--export "d=$T/disk.img,policy=mirror" || finish

# --- into Ceph: the RBD leg added and rebuilt while a client writes ---
writer 1 4
"$BSTEER" leg add "$INST" d "$RBD" --resync --json >"$T/add.json" 2>"$T/add.err" ||
	{ cat "$T/add.err" >&2; fail "leg add of the RBD leg exited $?"; }
wait "$WPID" || { cat "$T/writer1.log" >&2; fail "writer 1: a write failed"; }
check "add: done, leg 1" [ "$(json "$T/add.json" leg)" = 1 ]
check "add: rebuilt" [ "$(json "$T/add.json" resync.state)" = "done" ]
echo "ranges copied again after client writes: $(json "$T/add.json" resync.recopied)"
check "stat: the RBD leg ok" [ "$(legstate 1)" = ok ]
check "stat: its target" [ "$(json "$T/st.json" exports.0.legs.1.spec)" = "$RBD" ]

# --- the file leg removed while another client writes ---
writer 2 3
"$BSTEER" leg remove "$INST" d 0 >"$T/rm.out" 2>&1 || { cat "$T/rm.out" >&2; fail "leg remove of the file leg"; }
wait "$WPID" || { cat "$T/writer2.log" >&2; fail "writer 2: a write failed during the remove"; }
check "stat: the file leg absent" [ "$(legstate 0)" = absent ]
check "the file is let go" sh -c "! ls -l /proc/$SERVE/fd | grep -q '$T/disk.img'"
check "writers got writes in" [ "$(cat "$T/acked1" "$T/acked2" | wc -l)" -gt 100 ]
nbdcopy "$U" "$T/back" || fail "nbdcopy out of the export"
check "the export reads back what the client wrote" \
	/usr/bin/python3 "$WRITER" check "$T/back" "$T/src" "$T/acked1" "$T/acked2"
rbdc export rbd/moved "$T/moved.out" >/dev/null 2>&1 || fail "rbd export"
check "rbd export: the image holds what the client wrote, byte for byte" \
	/usr/bin/python3 "$WRITER" check "$T/moved.out" "$T/src" "$T/acked1" "$T/acked2"

# --- and back out: a file leg in, the RBD leg out ---
truncate -s 64M "$T/back.img"
"$BSTEER" leg add "$INST" d "$T/back.img" --resync >"$T/out" 2>&1 || { cat "$T/out" >&2; fail "leg add of a file leg"; }
check "the file leg took the first free place" [ "$(legstate 0)" = ok ]
rados_conns() {	# the server's eventfds (an RBD leg has one per worker)
	local f
	for f in /proc/"$SERVE"/fd/*; do readlink "$f"; done | grep -c eventfd
}
before=$(rados_conns)
"$BSTEER" leg remove "$INST" d 1 >"$T/out" 2>&1 || { cat "$T/out" >&2; fail "leg remove of the RBD leg"; }
check "the RBD leg absent" [ "$(legstate 1)" = absent ]
check "its eventfds closed, one per worker" [ "$(rados_conns)" -eq $((before - 2)) ]
nbdsh -u "$U" -c 'h.pwrite(b"y" * 65536, 0); h.flush()' || fail "a write after the RBD leg went"
stop_serve
check "the file leg holds the last write" cmp -s -n 65536 "$T/back.img" <(head -c 65536 /dev/zero | tr '\0' y)
check "... and the rest as moved" cmp -s -i 65536 "$T/back.img" "$T/back"
finish
