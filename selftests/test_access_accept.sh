#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# The rules without XDP: with --xdp off, and when another XDP program is on
# the device (it is never replaced), a denied client is refused at
# accept() and closed at once, an allowed one is served, and the rule
# counters stay at 0 (no packet went through our program). --xdp require
# refuses to start instead.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
need_root
need_tools nbdinfo python3
make_netns
truncate -s 16M "$T/d.img"
URL=nbd://$HOST_IP:10809/d

# accept_only INST: NS_IP (denied) is refused, NS_IP2 (allowed) is served.
accept_only() {
	check "$1: denied client refused" sh -c "! ip netns exec $NS nbdinfo $URL >/dev/null 2>&1"
	check "$1: refusal logged" grep -q "admission: refused $NS_IP\$" "$T/serve.log"
	check "$1: the TCP handshake itself went through" \
		ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP" "$HOST_IP" 10809
	# nbdinfo uses the first address; the allowed one is tried by a raw
	# NBD greeting read from the second.
	check "$1: allowed client greeted" ip netns exec "$NS" python3 -c 'import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.settimeout(5)
s.connect((sys.argv[2], 10809))
sys.exit(s.recv(8) != b"NBDMAGIC")' "$NS_IP2" "$HOST_IP"
	check "$1: no packet counted" [ "$(rule_count "$2" 0 hits)" = 0 ]
	check "$1: host client served" sh -c "nbdinfo $URL >/dev/null"
}

INST=$(instance access-off)
start_tcp "$HOST_IP:10809" --instance "$INST" --xdp off --deny "$NS_IP" \
	--export "d=$T/d.img" || finish
check "off: says so" grep -q "checked at accept() (--xdp off)" "$T/serve.log"
check "off: no program on the device" sh -c "! ip link show $VH | grep -q prog/xdp"
accept_only off "$INST"
stop_serve

# Someone else's XDP program (ours, loaded by bpftool: a plain XDP_PASS for
# every packet with its maps empty).
bpftool prog load "$BUILD/bpf/access.bpf.o" "/sys/fs/bpf/bst-foreign-$$" type xdp ||
	{ fail "bpftool prog load"; finish; }
AFTER_KILL+=("rm -f /sys/fs/bpf/bst-foreign-$$")
bpftool net attach xdp pinned "/sys/fs/bpf/bst-foreign-$$" dev "$VH" ||
	{ fail "bpftool net attach"; finish; }
FOREIGN=$(ip -j link show "$VH" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["xdp"]["prog"]["id"])')

INST=$(instance access-auto)
start_tcp "$HOST_IP:10809" --instance "$INST" --deny "$NS_IP" --export "d=$T/d.img" || finish
check "auto: one line says why" grep -q \
	"admission: no XDP program ($VH already has an XDP program (bsteer_access, id $FOREIGN); not replacing it); 1 rule(s) checked at accept() only" \
	"$T/serve.log"
accept_only auto "$INST"
stop_serve
check "auto: the foreign program is still there" \
	sh -c "ip -j link show $VH | grep -q '\"id\":$FOREIGN'"

INST=$(instance access-require)
"$BSTEER" serve --listen "tcp:$HOST_IP:10809" --allow-remote --instance "$INST" \
	--xdp require --deny "$NS_IP" --export "d=$T/d.img" >"$T/req.log" 2>&1
check "require: exit status 1" [ $? = 1 ]
check "require: says why" grep -q "xdp require: $VH already has an XDP program" "$T/req.log"
check "require: the foreign program is still there" \
	sh -c "ip -j link show $VH | grep -q '\"id\":$FOREIGN'"
finish
