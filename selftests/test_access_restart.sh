#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# The XDP program's life cycle after SIGKILL, on a veth pair: the killed
# server's program stays on the device; a restart with the same instance
# knows it as its own (pinned under the instance as access_xdp_IFINDEX,
# same id, named bsteer_access), detaches it and attaches a new one that
# works (--xdp require starts); bsteer clean detaches it after another
# SIGKILL. A foreign program on the device (the same object, so the same
# name, loaded by bpftool) is never taken for ours: not by a restart over
# stale pins, not by bsteer clean; --xdp-replace replaces it, and SIGTERM
# then leaves the device bare.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
need_root
need_tools python3
make_netns
INST=$(instance access-restart)
PIN=/sys/fs/bpf/bsteer/$INST
truncate -s 16M "$T/d.img"

xdp_id() {	# the id of the XDP program on VH, or nothing
	ip -j link show "$VH" | python3 -c 'import json, sys
print(json.load(sys.stdin)[0].get("xdp", {}).get("prog", {}).get("id", ""))'
}
kill9() {	# SIGKILL the server and wait for it
	kill -KILL "$SERVE"
	wait "$SERVE" 2>/dev/null
}
serves() {	# the rules hold: NS_IP2 dropped, NS_IP connects
	ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP" "$HOST_IP" 10809 &&
		! ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP2" "$HOST_IP" 10809
}
ARGS=(--instance "$INST" --deny "$NS_IP2" --export "d=$T/d.img")

start_tcp "$HOST_IP:10809" --xdp require "${ARGS[@]}" || finish
ID1=$(xdp_id)
check "first run: our program on the device" [ -n "$ID1" ]
check "first run: pinned as ours" test -e "$PIN/access_xdp_$(cat "/sys/class/net/$VH/ifindex")"
check "first run: the rules hold" serves
kill9
check "SIGKILL: the program stays on the device" [ "$(xdp_id)" = "$ID1" ]

start_tcp "$HOST_IP:10809" --xdp require "${ARGS[@]}" || finish
check "restart: the stale program detached, said" grep -q \
	"instance $INST: detached the XDP program (bsteer_access, id $ID1) a dead instance left on $VH" \
	"$T/serve.log"
ID2=$(xdp_id)
check "restart: a new program of ours" test -n "$ID2" -a "$ID2" != "$ID1"
check "restart: the rules hold" serves
kill9
check "SIGKILL again: the program stays" [ "$(xdp_id)" = "$ID2" ]
"$BSTEER" clean "$INST" >"$T/clean.txt"
check "clean: exit 0" [ $? = 0 ]
check "clean: the program detached" [ -z "$(xdp_id)" ]
check "clean: the pins removed" test ! -e "$PIN"

# Ours killed, then someone else's on the device (same object, same name).
start_tcp "$HOST_IP:10809" --xdp require "${ARGS[@]}" || finish
kill9
ip link set dev "$VH" xdp off
bpftool prog load "$BUILD/bpf/access.bpf.o" "/sys/fs/bpf/bst-foreign-$$" type xdp ||
	{ fail "bpftool prog load"; finish; }
AFTER_KILL+=("rm -f /sys/fs/bpf/bst-foreign-$$")
bpftool net attach xdp pinned "/sys/fs/bpf/bst-foreign-$$" dev "$VH" ||
	{ fail "bpftool net attach"; finish; }
FOREIGN=$(xdp_id)
start_tcp "$HOST_IP:10809" "${ARGS[@]}" || finish
check "stale pins, foreign program: not detached" [ "$(xdp_id)" = "$FOREIGN" ]
check "... nor claimed" sh -c "! grep -q 'detached the XDP program' '$T/serve.log'"
check "... auto fell back, saying why" grep -q \
	"admission: no XDP program ($VH already has an XDP program (bsteer_access, id $FOREIGN); not replacing it)" \
	"$T/serve.log"
kill9
check "clean: the foreign program is left alone" "$BSTEER" clean "$INST"
check "... still there" [ "$(xdp_id)" = "$FOREIGN" ]
"$BSTEER" serve --listen "tcp:$HOST_IP:10809" --allow-remote --xdp require "${ARGS[@]}" \
	>"$T/req.log" 2>&1
check "require without the override: refused" [ $? = 1 ]
check "... the foreign program is still there" [ "$(xdp_id)" = "$FOREIGN" ]

start_tcp "$HOST_IP:10809" --xdp require --xdp-replace "${ARGS[@]}" || finish
check "--xdp-replace: said" grep -q "admission: --xdp-replace: $VH already has an XDP program (bsteer_access, id $FOREIGN); replaced" \
	"$T/serve.log"
ID3=$(xdp_id)
check "--xdp-replace: ours now" test -n "$ID3" -a "$ID3" != "$FOREIGN"
check "--xdp-replace: the rules hold" serves
stop_serve
check "SIGTERM: the device is bare" [ -z "$(xdp_id)" ]
finish
