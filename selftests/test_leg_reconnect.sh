#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Mirror legs that come back, with two workers (each has its own
# connection to an NBD leg, and only its own thread may replace it):
#  - manual: nbdkit killed and started again; bsteer resync rebuilds the
#    leg on every worker's ring, and writes from every worker reach it;
#  - resync=auto: the same with no request; bsteer stat shows the tries
#    (and when the next one is) while nbdkit is down, then the rebuild;
#  - resync=auto is refused on an export that is not a mirror.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdkit nbdcopy
INST=$(instance legback)
S=$T/s.sock K=$T/k.sock

start_kit() { start_nbdkit "$K" "$T/k.img"; }

stop_kit() {
	kill -KILL "$KIT" 2>/dev/null
	wait "$KIT" 2>/dev/null
}

# leg1 FIELD: the second target's "failed" or "resyncing" in bsteer stat.
leg1() {
	"$BSTEER" stat "$INST" --json >"$T/stat.json" && json "$T/stat.json" "targets.1.$1"
}

# Random data written through the mirror with several connections, so
# both workers write (nbdcopy spreads its connections; the server hands
# them to its workers in turn).
write_data() {	# write_data SEED
	head -c 8M /dev/urandom >"$T/src.$1"
	nbdcopy --connections=4 "$T/src.$1" "nbd+unix:///m?socket=$S"
}

healthy() { [ "$(leg1 failed)" = false ] && [ "$(leg1 resyncing)" = false ]; }

truncate -s 64M "$T/l.img" "$T/k.img"

# --- manual, two workers
start_kit
start_serve "$S" --threads 2 --instance "$INST" \
	--export "m=$T/l.img,nbd+unix:///?socket=$K" || finish
stop_kit
check "manual: writes go on with one leg" write_data 1
check "manual: the leg is marked failed" [ "$(leg1 failed)" = true ]
start_kit
check "manual: resync rebuilds the leg with two workers" "$BSTEER" resync "$INST" m 1
check "manual: the legs are equal" cmp "$T/l.img" "$T/k.img"
# Every worker has a working connection again: writes from both reach
# the leg, and none marks it failed.
check "manual: writes after the rebuild" write_data 2
check "manual: the leg stays healthy under both workers' writes" healthy
check "manual: the legs are still equal" cmp "$T/l.img" "$T/k.img"
check "manual: one rebuild, logged" [ "$(grep -c 'rebuilding leg' "$T/serve.log")" -eq 1 ]
stop_serve
stop_kit

# --- resync=auto, two workers
start_kit
start_serve "$S" --threads 2 --instance "$INST" \
	--export "m=$T/l.img,nbd+unix:///?socket=$K,resync=auto" || finish
stop_kit
check "auto: writes go on with one leg" write_data 3
# With nbdkit down, each try fails and the next is scheduled: stat says so.
wait_for 30 sh -c "'$BSTEER' stat '$INST' | grep -q 'resync=auto, try [0-9]*, next in'"
"$BSTEER" stat "$INST" >"$T/stat.txt"
check "auto: bsteer stat shows the failed try and the next" \
	grep -q "resync: export m leg 1: failed: .*(resync=auto, try [0-9]*, next in [0-9]* s)" "$T/stat.txt"
"$BSTEER" stat "$INST" --json >"$T/stat.json"
check "auto: --json has the resync object" [ "$(json "$T/stat.json" resync.automatic)" = true ]
check "auto: and it was still failed" [ "$(leg1 failed)" = true ]
start_kit
# The next try is at most 30 s away (the back-off's ceiling); 120 s only
# bounds a hang.
wait_for 120 healthy
check "auto: the leg came back by itself" healthy
check "auto: the rebuild was logged" grep -q "leg 1 rebuilt" "$T/serve.log"
check "auto: the legs are equal" cmp "$T/l.img" "$T/k.img"
check "auto: writes after the rebuild" write_data 4
check "auto: the leg stays healthy" healthy
check "auto: the legs are still equal" cmp "$T/l.img" "$T/k.img"
"$BSTEER" stat "$INST" --json >"$T/stat.json"
check "auto: stat shows the rebuild done" [ "$(json "$T/stat.json" resync.state)" = "done" ]
stop_serve
stop_kit

# --- refused where it means nothing
"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" \
	--export "s=$T/l.img,$T/k.img,policy=stripe,resync=auto" >"$T/bad.log" 2>&1
rc=$?
check "auto on a stripe: refused" [ $rc -ne 0 ]
check "auto on a stripe: says why" grep -q "resync=auto needs a mirror policy" "$T/bad.log"
"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-y" \
	--export "m=$T/l.img,$T/k.img,resync=sometimes" >"$T/bad.log" 2>&1
check "resync=sometimes: refused by name" grep -q "resync=sometimes: want auto or manual" "$T/bad.log"
finish
