#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer list shows live and stale instances; bsteer stat says when an
# instance's owner is gone; bsteer clean removes stale pins only, never a
# live instance's, and --dry-run removes nothing; cleans during a start
# leave the starting instance alone; an unfinished start's staging pins
# (+PID+NAME) are removed once PID is gone.
. "$(dirname "$0")/lib.sh"
need_root
LIVE=$(instance listlive) DEAD=$(instance listdead)
ROOT=/sys/fs/bpf/bsteer
truncate -s 16M "$T/a.img" "$T/b.img"

start_serve "$T/b.sock" --instance "$DEAD" --export "bee=$T/b.img" || finish
kill -KILL "$SERVE"
wait "$SERVE" 2>/dev/null
start_serve "$T/a.sock" --instance "$LIVE" --export "aye=$T/a.img" || finish

"$BSTEER" list >"$T/list.txt"
check "list: the live one is live, with its export" \
	grep -Eq "^$LIVE +[0-9]+ +serve +passthrough +live +aye$" "$T/list.txt"
check "list: the killed one is stale" grep -Eq "^$DEAD +[0-9]+ +serve +[a-z]+ +stale " "$T/list.txt"
"$BSTEER" list --json >"$T/list.json"
check "list --json parses and agrees" python3 -c "
import json, sys
d = {i['name']: i for i in json.load(open('$T/list.json'))['instances']}
sys.exit(0 if d['$LIVE']['live'] and not d['$DEAD']['live'] and d['$LIVE']['exports'] == 'aye' else 1)"

"$BSTEER" stat "$DEAD" >"$T/stat.txt"
check "stat: says the owner is gone" grep -q "is gone" "$T/stat.txt"
"$BSTEER" stat "$DEAD" --json >"$T/stat.json"
check "stat --json: live is false" [ "$(json "$T/stat.json" live)" = false ]
"$BSTEER" stat "$LIVE" --json >"$T/stat.json"
check "stat --json: a live one is live" [ "$(json "$T/stat.json" live)" = true ]
"$BSTEER" stat "$LIVE" >"$T/stat.txt"
check "stat: a live one says nothing of that" sh -c "! grep -q 'is gone' '$T/stat.txt'"

"$BSTEER" clean "$LIVE" 2>"$T/err"
check "clean LIVE: refused (exit 1)" [ $? -eq 1 ]
check "clean LIVE: says it is alive" grep -q "is alive" "$T/err"
check "clean LIVE: its pins are still there" [ -d "$ROOT/$LIVE" ]
"$BSTEER" clean "$DEAD" --dry-run >"$T/out"
check "clean --dry-run: names it" grep -q "would remove $DEAD" "$T/out"
check "clean --dry-run: removes nothing" [ -d "$ROOT/$DEAD" ]
"$BSTEER" clean no/such 2>/dev/null
check "clean of a bad name: usage error (exit 2)" [ $? -eq 2 ]

"$BSTEER" clean --json >"$T/clean.json"
check "clean: exit 0 and it was removed" python3 -c "
import json, sys
d = json.load(open('$T/clean.json'))
sys.exit(0 if '$DEAD' in d['removed'] and '$LIVE' not in d['removed'] else 1)"
check "clean: the stale pins are gone" [ ! -e "$ROOT/$DEAD" ]
check "clean: the live pins are not" [ -d "$ROOT/$LIVE" ]
check "the live server still serves" nbdinfo --size "nbd+unix:///aye?socket=$T/a.sock"
stop_serve

# A start pins under +PID+NAME and renames it to NAME once its info map
# names the owner: cleans run all through a start leave it alone.
STARTING=$(instance liststart)
( while [ ! -e "$T/stop-cleaning" ]; do "$BSTEER" clean >/dev/null 2>&1; done ) &
CLEANER=$!
AFTER_KILL+=("kill $CLEANER")
start_serve "$T/c.sock" --instance "$STARTING" --export "sea=$T/a.img" || finish
touch "$T/stop-cleaning"
wait "$CLEANER"
check "cleans during a start: the new instance's pins stay" [ -e "$ROOT/$STARTING/info" ]
check "... and it serves" nbdinfo --size "nbd+unix:///sea?socket=$T/c.sock"
check "... no staging directory is left" sh -c "! ls -a '$ROOT' | grep -q '^+[0-9]*+$STARTING\$'"
stop_serve
# A start killed half way leaves +PID+NAME: clean removes it when PID is
# gone, and not while it lives.
sleep 1000 &
ALIVE=$!
AFTER_KILL+=("kill $ALIVE")
mkdir "$ROOT/+$ALIVE+$STARTING" || fail "mkdir in $ROOT"
sh -c 'exit 0' &
GONE=$!
wait "$GONE"
mkdir "$ROOT/+$GONE+$STARTING" || fail "mkdir in $ROOT"
"$BSTEER" clean --json >"$T/clean2.json"
check "clean: an unfinished start's staging pins removed, in --json" python3 -c "
import json, sys
sys.exit(0 if json.load(open('$T/clean2.json'))['unfinished'] == ['+$GONE+$STARTING'] else 1)"
check "... gone" [ ! -e "$ROOT/+$GONE+$STARTING" ]
check "... but not one whose process lives" [ -d "$ROOT/+$ALIVE+$STARTING" ]
rmdir "$ROOT/+$ALIVE+$STARTING"
finish
