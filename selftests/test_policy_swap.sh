#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Live policy swaps on a running copy fed through a FIFO, four phases of
# 1 MiB each with two targets:
#   1. passthrough (start)             -> only leg a gets the data
#   2. mirror, swapped by plain bpftool -> both legs
#   3. passthrough, by bsteer policy swap
#   4. mirror, by running the --dry-run output
# Leg b must hold phases 2 and 4 and zeros elsewhere. While it runs, the
# pinned maps are inspected with bpftool and bsteer stat.
. "$(dirname "$0")/lib.sh"
need_root
need_tools bpftool

MiB=$((1 << 20))
INST=$(instance swap)
D=/sys/fs/bpf/bsteer/$INST
for i in 1 2 3 4; do head -c $MiB /dev/urandom >"$T/p$i"; done
mkfifo "$T/fifo"
"$BSTEER" copy "$T/fifo" --to "$T/a" --to "$T/b" --policy passthrough \
	--instance "$INST" --json >"$T/out.json" 2>"$T/err" &
PIDS+=($!)
COPY=$!
exec 3>"$T/fifo"

size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# A function, so that wait_for looks at the file each time.
a_holds() { [ "$(size "$T/a")" -ge "$1" ]; }
phase() {	# phase N: feed 1 MiB and wait until leg a has it
	cat "$T/p$1" >&3
	wait_for 20 a_holds $(($1 * MiB)) ||
		fail "phase $1 data never reached leg a (it holds $(size "$T/a") bytes)"
}

phase 1
check "pinned slot pool visible to bpftool" bpftool map show pinned "$D/slots"
check "pinned slot metadata visible to bpftool" bpftool map show pinned "$D/slot_meta"
check "pinned policy prog array visible to bpftool" bpftool map show pinned "$D/policy"
"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat exited $?"
check "stat: live hook decisions" [ "$(json "$T/stat.json" counters.decisions_hook)" -gt 0 ]
check "stat: names the policy" [ "$(json "$T/stat.json" policy)" = passthrough ]
check "stat: slots accounted" [ "$(json "$T/stat.json" slots.total)" = 16 ]

# Swap to mirror with plain bpftool, as the README shows.
OBJ=$PWD/$BUILD/bpf/mirror.bpf.o
MAPS=""
for m in slot_meta slot_free reqs decisions targets rings stats policy_stats \
	 batch cfg events scratch; do
	MAPS="$MAPS map name $m pinned $D/$m"
done
bpftool prog loadall "$OBJ" "$D/progs/mirror-bpftool" $MAPS ||
	fail "bpftool prog loadall"
bpftool map update pinned "$D/policy_sys" key 0 0 0 0 \
	value pinned "$D/progs/mirror-bpftool/mirror_sys" || fail "update policy_sys"
bpftool map update pinned "$D/policy" key 0 0 0 0 \
	value pinned "$D/progs/mirror-bpftool/mirror_tp" || fail "update policy"
"$BSTEER" policy show "$INST" --json >"$T/show.json"
check "active hook program is mirror's" [ "$(json "$T/show.json" hook_prog)" = mirror_tp ]
"$BSTEER" stat "$INST" --json >"$T/stat2.json"
check "stat names the swapped-in policy" [ "$(json "$T/stat2.json" policy)" = mirror ]
phase 2

"$BSTEER" policy swap "$INST" passthrough >/dev/null || fail "bsteer policy swap"
phase 3

"$BSTEER" policy swap "$INST" mirror --dry-run >"$T/swap.sh" || fail "dry run"
check "dry run uses bpftool" grep -q "bpftool prog loadall" "$T/swap.sh"
sh -e "$T/swap.sh" || fail "running the dry-run commands"
phase 4

exec 3>&-
wait "$COPY" || fail "copy exited non-zero: $(cat "$T/err")"
cat "$T/p1" "$T/p2" "$T/p3" "$T/p4" >"$T/all"
head -c $MiB /dev/zero >"$T/zero"
cat "$T/zero" "$T/p2" "$T/zero" "$T/p4" >"$T/b_expect"
check "leg a has every phase" cmp -s "$T/all" "$T/a"
check "leg b has only the mirror phases" cmp -s "$T/b_expect" "$T/b"
check "no slot leaked" [ "$(json "$T/out.json" slots_leaked)" = 0 ]
check "no rejected decision" [ "$(json "$T/out.json" decisions_rejected)" = 0 ]
check "pins removed at exit" [ ! -e "$D" ]
finish
