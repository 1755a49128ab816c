#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Unix socket peers by credentials (SO_PEERCRED at accept): with
# --allow-uid 0, root is served and nobody is refused; --allow-gid admits
# by group. --max-connections 1: a second client is closed at once while
# the first is open, and served once it has gone.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdinfo nbdsh setpriv python3
truncate -s 16M "$T/d.img"
S=$T/nbd.sock
NOBODY=$(id -u nobody) || skip "no user nobody"
NOGROUP=$(id -g nobody)
# nobody must reach the socket: the refusal under test is ours, not the
# file system's.
chmod 755 "$T"

start_serve "$S" --instance "$(instance access-uid)" --allow-uid 0 \
	--export "d=$T/d.img" || finish
chmod 666 "$S"
URL="nbd+unix:///d?socket=$S"
check "uid 0 served" sh -c "nbdinfo '$URL' >/dev/null"
check "nobody refused" sh -c "! setpriv --reuid $NOBODY --regid $NOGROUP --clear-groups nbdinfo '$URL' >/dev/null 2>&1"
check "refusal logged with the uid" grep -q "admission: refused uid $NOBODY gid $NOGROUP" "$T/serve.log"
stop_serve

start_serve "$S" --instance "$(instance access-gid)" --allow-gid "$NOGROUP" \
	--export "d=$T/d.img" || finish
chmod 666 "$S"
check "nobody's group served" sh -c "setpriv --reuid $NOBODY --regid $NOGROUP --clear-groups nbdinfo '$URL' >/dev/null"
check "root (gid 0) refused" sh -c "! nbdinfo '$URL' >/dev/null 2>&1"
stop_serve

start_serve "$S" --instance "$(instance access-max)" --max-connections 1 \
	--export "d=$T/d.img" || finish
# The first client holds its connection until $T/go appears.
nbdsh -u "$URL" -c "
import os, time
open('$T/held', 'w').close()
while not os.path.exists('$T/go'):
    time.sleep(0.05)
" &
HOLD=$!
PIDS+=("$HOLD")
wait_for 60 test -e "$T/held" || fail "the first client did not connect"
check "second client refused" sh -c "! nbdinfo '$URL' >/dev/null 2>&1"
check "refusal logged" grep -q "refused a connection: 1 open, --max-connections 1" "$T/serve.log"
touch "$T/go"
wait "$HOLD"
check "first client unharmed" [ $? = 0 ]
# Its close reaches the server after the client exits: poll for the slot.
check "served again once it left" wait_for 60 sh -c "nbdinfo '$URL' >/dev/null 2>&1"
stop_serve
finish
