#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The systemd side of bsteer serve, on a machine whose PID 1 is not
# systemd: the units pass systemd-analyze verify with nothing to say;
# socket activation (systemd-socket-activate, LISTEN_FDS) serves nbdinfo;
# Type=notify readiness (READY=1 once serving, STOPPING=1 on SIGTERM) to a
# NOTIFY_SOCKET of the test's own; and the unit's CapabilityBoundingSet and
# NoNewPrivileges, applied with setpriv, leave serve working (and without
# CAP_SYS_ADMIN it refuses, so the check has teeth).
. "$(dirname "$0")/lib.sh"
need_root
need_tools systemd-analyze systemd-socket-activate setpriv nbdinfo
INST=$(instance sysd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
truncate -s 16M "$T/a.img"

# --- the units, with ExecStart pointing at this build
mkdir "$T/units"
sed "s|@BINDIR@|$(dirname "$BSTEER")|" "$ROOT/user/systemd/bsteer@.service.in" >"$T/units/bsteer@$INST.service"
cp "$ROOT/user/systemd/bsteer@.socket" "$T/units/bsteer@$INST.socket"
# ConditionPathExists= is only checked at start; verify wants the binary.
(cd "$T/units" && systemd-analyze verify --man=no "./bsteer@$INST.service" "./bsteer@$INST.socket") \
	>"$T/verify.log" 2>&1
rc=$?
check "systemd-analyze verify: exit 0" [ $rc -eq 0 ]
check "systemd-analyze verify: nothing to say" [ ! -s "$T/verify.log" ]
cat "$T/verify.log" >&2

# --- socket activation: the socket is made and held by systemd-socket-activate
systemd-socket-activate -l "$T/act.sock" "$BSTEER" serve --instance "$INST" \
	--export "m=$T/a.img" >"$T/act.log" 2>&1 &
ACT=$!
PIDS+=("$ACT")
wait_for 30 test -S "$T/act.sock"
check "socket activation: nbdinfo gets the export" \
	sh -c "nbdinfo --size 'nbd+unix:///m?socket=$T/act.sock' | grep -qx 16777216"
# The socket was there before serve: a worker may answer nbdinfo before
# the last one is set up and the line is said.
check "socket activation: serve said it took fd 3" wait_for 10 grep -q "listening on fd:3 " "$T/act.log"
kill -TERM "$ACT"
wait "$ACT"
check "socket activation: a clean exit" [ $? -eq 0 ]

# --- Type=notify: a datagram socket of our own as NOTIFY_SOCKET
python3 - "$T/notify.sock" "$T/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as log:
    while True:
        msg = s.recv(4096).decode()
        log.write(msg.replace("\n", " ") + "\n")
        log.flush()
        if "STOPPING=1" in msg:
            break
PY
LISTENER=$!
PIDS+=("$LISTENER")
wait_for 30 test -S "$T/notify.sock"
NOTIFY_SOCKET=$T/notify.sock start_serve "$T/n.sock" --instance "$INST" --export "m=$T/a.img" ||
	finish
wait_for 30 grep -q "READY=1" "$T/notify.log"
check "notify: READY=1 once it serves" grep -q "READY=1 STATUS=serving 1 export(s), instance $INST" "$T/notify.log"
check "notify: and it does serve" nbdinfo --size "nbd+unix:///m?socket=$T/n.sock"
check "notify: no STOPPING=1 before it is told to stop" sh -c "! grep -q STOPPING=1 '$T/notify.log'"
stop_serve
wait_for 30 grep -q "STOPPING=1" "$T/notify.log"
check "notify: STOPPING=1 on SIGTERM" grep -q "STOPPING=1" "$T/notify.log"
kill "$LISTENER" 2>/dev/null	# gone already, unless STOPPING=1 never came
wait "$LISTENER" 2>/dev/null

# --- the unit's capabilities and NoNewPrivileges, applied by setpriv
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$ROOT/user/systemd/bsteer@.service.in" |
	tr ' ' '\n' | sed 's/^CAP_//' | tr 'A-Z' 'a-z' | sed 's/^/+/' | paste -sd,)
check "the unit names its capabilities" [ -n "$caps" ]
setpriv --no-new-privs --bounding-set "-all,$caps" true
check "setpriv knows every capability the unit names" [ $? -eq 0 ]
BSTEER_REAL=$BSTEER
# start_serve runs "$BSTEER"; run the wrapped command through a script.
printf '#!/bin/sh\nexec setpriv --no-new-privs --bounding-set -all,%s %s "$@"\n' "$caps" "$BSTEER_REAL" >"$T/capped"
chmod +x "$T/capped"
BSTEER=$T/capped
start_serve "$T/c.sock" --instance "$INST" --export "m=$T/a.img" &&
	check "with the unit's capabilities: serves" nbdinfo --size "nbd+unix:///m?socket=$T/c.sock" &&
	stop_serve
nosys=$(echo "$caps" | tr ',' '\n' | grep -v '^+sys_admin$' | paste -sd,)
setpriv --no-new-privs --bounding-set "-all,$nosys" "$BSTEER_REAL" serve --listen "unix:$T/d.sock" \
	--instance "$INST-d" --export "m=$T/a.img" >"$T/nocap.log" 2>&1
check "without CAP_SYS_ADMIN: refused" grep -q "missing privileges" "$T/nocap.log"
BSTEER=$BSTEER_REAL
finish
