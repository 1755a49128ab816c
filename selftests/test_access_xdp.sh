#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# --allow/--deny at the NIC: a namespace behind a veth pair has an allowed
# address and a denied one. The allowed client reads and writes through
# nbdinfo and nbdcopy; the denied one's SYNs are dropped by the XDP program
# (its connect times out, the deny rule's drop counter rises, and the
# server never sees an accept); bsteer stat shows the rules and their
# counts; SIGTERM detaches the program.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
need_root
need_tools nbdinfo nbdcopy python3
make_netns
INST=$(instance access-xdp)
PIN=/sys/fs/bpf/bsteer/$INST
truncate -s 16M "$T/d.img"
# Rule 0 admits NS_IP although rule 1 (its /24) refuses it: allow first.
# Rules 2 and 3: the same over IPv6, on a second listening address.
start_tcp "$HOST_IP:10809" --instance "$INST" --xdp require \
	--allow "$NS_IP/32" --deny "${NS_IP%.*}.0/24" \
	--allow "$NS_IP6" --deny "${NS_IP6%::*}::/64" --listen "tcp:$HOST_IP6:10809" \
	--export "d=$T/d.img" || finish
URL=nbd://$HOST_IP:10809/d

check "XDP program attached, mode logged" \
	grep -Eq "admission: XDP program on $VH \((native|skb) mode, libxdp" "$T/serve.log"
check "the device shows it" sh -c "ip link show $VH | grep -q 'prog/xdp.*bsteer_access'"
check "rule maps pinned" test -e "$PIN/access_allow4" -a -e "$PIN/access_deny4" -a -e "$PIN/access_counts"

ip netns exec "$NS" nbdinfo --json "$URL" >"$T/info.json" || fail "allowed nbdinfo"
check "allowed client: size" [ "$(json "$T/info.json" exports.0.export-size)" = $((16 << 20)) ]
head -c 4M /dev/urandom >"$T/src"
check "allowed client: nbdcopy in" ip netns exec "$NS" nbdcopy "$T/src" "$URL"
check "allowed client: nbdcopy out" ip netns exec "$NS" nbdcopy "$URL" "$T/out"
check "allowed client: the bytes" cmp -n $((4 << 20)) "$T/src" "$T/out"
check "allow rule counted" [ "$(rule_count "$INST" 0 hits)" -gt 0 ]
check "allow rule dropped nothing" [ "$(rule_count "$INST" 0 drops)" = 0 ]

check "no drops before the denied client" [ "$(rule_count "$INST" 1 drops)" = 0 ]
check "denied client: no connection" \
	sh -c "! ip netns exec $NS python3 -c \"\$0\" $NS_IP2 $HOST_IP 10809" "$NS_CONNECT"
check "denied client: drop counter rose" [ "$(rule_count "$INST" 1 drops)" -gt 0 ]
check "denied client: never accepted" sh -c "! grep -q 'admission: refused' '$T/serve.log'"

check "IPv6: allowed client connects" \
	ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP6" "$HOST_IP6" 10809
check "IPv6: allow rule counted" [ "$(rule_count "$INST" 2 hits)" -gt 0 ]
check "IPv6: denied client: no connection" \
	sh -c "! ip netns exec $NS python3 -c \"\$0\" $NS_IP6_2 $HOST_IP6 10809" "$NS_CONNECT"
check "IPv6: drop counter rose" [ "$(rule_count "$INST" 3 drops)" -gt 0 ]
check "IPv6: never accepted" sh -c "! grep -q 'admission: refused' '$T/serve.log'"

"$BSTEER" stat "$INST" >"$T/stat.txt" || fail "bsteer stat"
check "stat: the rules, allow first" grep -Eq "^0 +allow +$NS_IP/32 +[1-9]" "$T/stat.txt"
check "stat: the deny rule's drops" grep -Eq "^1 +deny +${NS_IP%.*}.0/24 +[1-9][0-9]* +[1-9]" "$T/stat.txt"
"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "bsteer stat --json"
check "stat --json: rule 1" [ "$(json "$T/stat.json" access_rules.1.cidr)" = "${NS_IP%.*}.0/24" ]
check "stat --json: its drops" [ "$(json "$T/stat.json" access_rules.1.drops)" = "$(rule_count "$INST" 1 drops)" ]
stop_serve
check "SIGTERM detached the program" sh -c "! ip link show $VH | grep -q prog/xdp"
check "pins removed" test ! -e "$PIN"
finish
