#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Privilege and exposure:
#  - a user without the capabilities gets one clear message naming them
#    (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) from every command that needs
#    them (trace too), before it opens or pins anything, and no libbpf dump; --help and
#    'policy list' still work;
#  - the pins directory and the pins are owner-only;
#  - the default listen address is loopback; another needs --allow-remote;
#  - a read-only export refuses writes (EPERM).
. "$(dirname "$0")/lib.sh"
need_root
need_tools setpriv
# nobody must reach the binary and a source file.
chmod 755 "$T"
head -c 1M /dev/urandom >"$T/src"
chmod 644 "$T/src"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all "$@"; }

unpriv() {	# unpriv WHAT ARGS...
	local what=$1
	shift
	if as_nobody "$BSTEER" "$@" >"$T/out" 2>&1; then
		fail "$what: succeeded without privileges"
	fi
	check "$what: names the missing capabilities" grep -q "missing privileges: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN" "$T/out"
	check "$what: says to run it as root" grep -q "as root" "$T/out"
	check "$what: no libbpf output" sh -c "! grep -qi libbpf '$T/out'"
}
unpriv "copy" copy "$T/src" --to "$T/dst"
check "copy wrote nothing" [ ! -e "$T/dst" ]
unpriv "serve" serve --listen "unix:$T/np.sock" --export "m=$T/src"
unpriv "stat" stat some-instance
unpriv "policy show" policy show some-instance
unpriv "resync" resync some-instance m 1
unpriv "trace" trace -p 1
check "--help works unprivileged" as_nobody "$BSTEER" serve --help
check "policy list works unprivileged" as_nobody "$BSTEER" policy list

# Owner-only pins; loopback by default; --allow-remote for the rest.
truncate -s 16M "$T/a"
INST=$(instance priv)
"$BSTEER" serve --instance "$INST" --listen "unix:$T/s.sock" --export "m=$T/a" \
	--export "r=$T/a,ro" >"$T/serve.log" 2>&1 &
SERVE=$!
PIDS+=("$SERVE")
wait_for 10 [ -S "$T/s.sock" ] || fail "serve did not start"
check "the instance directory is 0700" [ "$(stat -c %a "/sys/fs/bpf/bsteer/$INST")" = 700 ]
check "every pin is 0600" sh -c "[ -z \"\$(find /sys/fs/bpf/bsteer/$INST -type f ! -perm 600)\" ]"
check "nobody cannot read the pins" sh -c "! setpriv --reuid=nobody --regid=nogroup --clear-groups ls /sys/fs/bpf/bsteer/$INST >/dev/null 2>&1"
check "a read-only export refuses writes with EPERM" nbdsh -u "nbd+unix:///r?socket=$T/s.sock" -c '
import errno
try:
    h.pwrite(b"x" * 4096, 0)
    raise SystemExit("write to a read-only export succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e'
kill "$SERVE"
wait "$SERVE"
if "$BSTEER" serve --instance "$(instance priv2)" --listen tcp:0.0.0.0:10809 \
	--export "m=$T/a" >"$T/remote.log" 2>&1; then
	fail "listening on 0.0.0.0 without --allow-remote"
fi
check "a non-loopback address needs --allow-remote" grep -q -- "--allow-remote" "$T/remote.log"
check "the default listen address is loopback" sh -c "'$BSTEER' serve --help | grep -q 'tcp:127.0.0.1:10809'"
finish
