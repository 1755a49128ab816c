# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A veth pair and a network namespace of the test's own, for the admission
# tests; source it after lib.sh. make_netns sets NS (the namespace), VH (the
# host end), HOST_IP (on VH), NS_IP and NS_IP2 (two addresses in NS, on one
# /24 of 198.18.0.0/15 picked from the test's PID), HOST_IP6, NS_IP6 and
# NS_IP6_2 (the same on a /64 of 2001:db8::/32). Both are removed on any
# exit (after the test's processes are stopped).
make_netns() {
	local n=$(($$ % 250 + 2)) b=$((18 + ($$ / 250) % 2)) h
	NS=bst-$$
	VH=bsh$$
	HOST_IP=198.$b.$n.1
	NS_IP=198.$b.$n.2
	NS_IP2=198.$b.$n.3
	h=$(printf '%x%02x' "$b" "$n")
	HOST_IP6=2001:db8:$h::1
	NS_IP6=2001:db8:$h::2
	NS_IP6_2=2001:db8:$h::3
	need_tools ip bpftool
	AFTER_KILL+=("ip netns del $NS" "ip link del $VH")
	ip netns add "$NS" || skip "cannot make a network namespace"
	ip link add "$VH" type veth peer name bsn$$ || skip "cannot make a veth pair"
	ip link set bsn$$ netns "$NS" &&
	ip addr add "$HOST_IP/24" dev "$VH" &&
	ip link set "$VH" up &&
	ip -n "$NS" addr add "$NS_IP/24" dev bsn$$ &&
	ip -n "$NS" addr add "$NS_IP2/24" dev bsn$$ &&
	ip addr add "$HOST_IP6/64" dev "$VH" nodad &&
	ip -n "$NS" addr add "$NS_IP6/64" dev bsn$$ nodad &&
	ip -n "$NS" addr add "$NS_IP6_2/64" dev bsn$$ nodad &&
	ip -n "$NS" link set bsn$$ up &&
	ip -n "$NS" link set lo up || { fail "cannot set up $VH and $NS"; finish; }
}

# start_tcp ADDR:PORT ARGS...: bsteer serve on TCP, in the background, as
# start_serve does on a unix socket.
start_tcp() {
	local addr=$1
	shift
	: >"$T/serve.log"	# before the fork: see start_serve
	"$BSTEER" serve --listen "tcp:$addr" --allow-remote "$@" >"$T/serve.log" 2>&1 &
	SERVE=$!
	PIDS+=("$SERVE")
	wait_for 60 sh -c "grep -q 'listening on tcp:$addr ' '$T/serve.log' || ! kill -0 $SERVE" 2>/dev/null
	grep -q "listening on tcp:$addr " "$T/serve.log" ||
		{ cat "$T/serve.log" >&2; fail "server did not start"; return 1; }
}

# A TCP connect from address argv[1] to argv[2]:argv[3] that gives up
# after 1 s; exits 0 if the server answered the handshake. Run it in the
# namespace: ip netns exec "$NS" python3 -c "$NS_CONNECT" SRC HOST PORT.
NS_CONNECT='import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.bind((sys.argv[1], 0))
s.settimeout(1)
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
except OSError:
    sys.exit(1)'

# rule_count INSTANCE ID FIELD: the sum over CPUs of rule ID's hits or drops.
rule_count() {
	bpftool -j map lookup pinned "/sys/fs/bpf/bsteer/$1/access_counts" \
		key "$2" 0 0 0 | python3 -c 'import json, sys
print(sum(v["value"][sys.argv[1]] for v in json.load(sys.stdin)["formatted"]["values"]))' "$3"
}
