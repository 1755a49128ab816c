#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A mirror leg on nbdkit, stopped the usual way (SIGTERM), then SIGKILL:
# the leg is marked failed and bsteer lets go of its connection at once,
# so nbdkit exits (it waits for its clients to leave); the other leg keeps
# serving; nbdkit started again on the same socket takes the connection,
# and bsteer resync rebuilds the leg, byte for byte.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdkit nbdcopy
INST=$(instance legterm)
S=$T/s.sock K=$T/k.sock

start_kit() { start_nbdkit "$K" "$T/k.img"; }

round() {	# round SIGNAL
	local sig=$1 n
	start_kit
	start_serve "$S" --instance "$INST" --export "m=$T/l.img,nbd+unix:///?socket=$K" ||
		return
	kill -"$sig" "$KIT"
	# The next writes fail on the leg (an error reply, or a closed socket):
	# the mirror marks it failed and carries on with the other.
	head -c 4M /dev/urandom >"$T/src"
	check "$sig: writes go on with one leg" nbdcopy "$T/src" "nbd+unix:///m?socket=$S"
	check "$sig: the leg is marked failed" sh -c \
		"'$BSTEER' stat '$INST' --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[\"targets\"][1][\"failed\"] else 1)'"
	# nbdkit exits once its client is gone: bsteer let go of it.
	wait_for 30 sh -c "! kill -0 $KIT"
	check "$sig: nbdkit exited (its connection was let go of)" sh -c "! kill -0 $KIT 2>/dev/null"
	wait "$KIT" 2>/dev/null
	n=$(grep -c "marked failed" "$T/serve.log")
	check "$sig: the failure was logged" [ "$n" -ge 1 ]
	start_kit
	check "$sig: resync rebuilds the leg on the restarted nbdkit" \
		"$BSTEER" resync "$INST" m 1
	check "$sig: the legs are equal" cmp "$T/l.img" "$T/k.img"
	check "$sig: the mirror reads the new data" sh -c \
		"nbdcopy 'nbd+unix:///m?socket=$S' - | cmp -n $((4 << 20)) - '$T/src'"
	stop_serve
	kill "$KIT" 2>/dev/null
	wait "$KIT" 2>/dev/null
}

truncate -s 64M "$T/l.img" "$T/k.img"
round TERM
round KILL
finish
