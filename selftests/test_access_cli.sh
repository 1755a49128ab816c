#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bsteer access add|del|list on a live server behind a veth pair, listening
# on a bracketed IPv6 address too: a deny rule added for an address drops
# its next connect at XDP (its counters from 0, on the id picked), del lets
# it in again, list shows the rules (text and --json); the errors (bad
# CIDR, unknown instance, a rule not there, one there already) are clear.
# --max-per-source 2: a third connection from one address is closed at
# once while another address is served, and the refusal is counted in
# bsteer stat, --json and --prometheus (promtool check metrics), with the
# rules' hits and drops. serve refuses a prefix given twice in one list,
# and warns that the rules do nothing with --fuse alone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
need_root
need_tools python3 promtool
make_netns
INST=$(instance access-cli)
truncate -s 16M "$T/d.img"

check "--help: examples" sh -c "'$BSTEER' access --help | grep -q 'bsteer access add edge deny 192.0.2.7'"
"$BSTEER" serve --listen "tcp:$HOST_IP:10809" --allow-remote --instance "t-dup-$$" \
	--deny 192.0.2.0/24 --deny 192.0.2.9/24 --export "d=$T/d.img" >"$T/dup.log" 2>&1
check "serve: a prefix twice is a usage error" [ $? = 2 ]
check "serve: ... naming the first rule" grep -q "deny 192.0.2.9/24: the same prefix as rule 0" "$T/dup.log"
"$BSTEER" serve --fuse "$T/nofuse/x" --instance "t-fuse-$$" --deny 192.0.2.1 \
	--export "d=$T/d.img" >"$T/fuse.log" 2>&1
AFTER_KILL+=("'$BSTEER' clean t-fuse-$$")
check "serve --fuse alone with rules: warned" \
	grep -q "guard NBD listeners only; with --fuse and no --listen they have no effect" "$T/fuse.log"

# One rule the test never hits; XDP required so drops are seen there.
start_tcp "$HOST_IP:10809" --instance "$INST" --xdp require --deny 192.0.2.1 \
	--listen "tcp:[$HOST_IP6]:10809" --max-per-source 2 --export "d=$T/d.img" || finish
check "listening on the bracketed IPv6 address" grep -q "listening on tcp:\[$HOST_IP6\]:10809 " "$T/serve.log"
check "IPv6 client connects" ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP6" "$HOST_IP6" 10809

# add: the lowest free id (1), and the address is dropped at XDP.
check "before: the second address connects" \
	ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP2" "$HOST_IP" 10809
"$BSTEER" access add "$INST" deny "$NS_IP2" >"$T/add.txt"
check "add: exit 0" [ $? = 0 ]
check "add: says the rule and its id" grep -qx "$INST: rule 1: deny $NS_IP2/32" "$T/add.txt"
check "add: the address gets no connection" \
	sh -c "! ip netns exec $NS python3 -c \"\$0\" $NS_IP2 $HOST_IP 10809" "$NS_CONNECT"
check "add: its drops rose" [ "$(rule_count "$INST" 1 drops)" -gt 0 ]
check "add: the other address still connects" \
	ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP" "$HOST_IP" 10809
"$BSTEER" access add "$INST" allow "${NS_IP6%::*}::/64" --id 20 >/dev/null
check "add --id 20" [ $? = 0 ]

"$BSTEER" access list "$INST" >"$T/list.txt" || fail "access list"
check "list: rule 1 with drops" grep -Eq "^1 +deny +$NS_IP2/32 +[1-9][0-9]* +[1-9]" "$T/list.txt"
check "list: rule 20" grep -Eq "^20 +allow +${NS_IP6%::*}::/64 " "$T/list.txt"
check "list: the XDP interface" grep -q "XDP on $VH" "$T/list.txt"
"$BSTEER" access list "$INST" --json >"$T/list.json" || fail "access list --json"
check "list --json: rule 1's cidr" [ "$(json "$T/list.json" access_rules.1.cidr)" = "$NS_IP2/32" ]
check "list --json: its drops" [ "$(json "$T/list.json" access_rules.1.drops)" = "$(rule_count "$INST" 1 drops)" ]
check "list --json: the XDP interface" [ "$(json "$T/list.json" access_xdp.0)" = "$VH" ]

# The errors.
"$BSTEER" access add "$INST" deny 198.18.0.0/33 2>"$T/err"
check "bad CIDR: usage error" [ $? = 2 ]
check "bad CIDR: said" grep -q "'198.18.0.0/33' is not an IPv4 or IPv6 address or CIDR" "$T/err"
"$BSTEER" access list "nosuch-$$" 2>"$T/err"
check "unknown instance: exit 1" [ $? = 1 ]
check "unknown instance: said" grep -q "no instance 'nosuch-$$'" "$T/err"
"$BSTEER" access del "$INST" allow "$NS_IP2" 2>"$T/err"
check "del of a rule not there: exit 1" [ $? = 1 ]
check "del of a rule not there: said" grep -q "no allow rule $NS_IP2/32" "$T/err"
"$BSTEER" access add "$INST" deny "$NS_IP2/32" 2>"$T/err"
check "add of a rule there: exit 1" [ $? = 1 ]
check "add of a rule there: said" grep -q "deny $NS_IP2/32 is rule 1 already" "$T/err"

check "del" "$BSTEER" access del "$INST" deny "$NS_IP2"
check "del: it connects again" \
	ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP2" "$HOST_IP" 10809
check "del: gone from the list" sh -c "! '$BSTEER' access list '$INST' | grep -q ' $NS_IP2/32 '"

# --max-per-source 2: NS_IP holds two connections (greeted), its third is
# closed at once (EOF, no greeting), NS_IP2 is greeted meanwhile.
ip netns exec "$NS" python3 -c 'import socket, sys, os, time
def greet(src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    s.connect((sys.argv[3], 10809))
    return s, s.recv(8)
a, ga = greet(sys.argv[1])
b, gb = greet(sys.argv[1])
c, gc = greet(sys.argv[1])
d, gd = greet(sys.argv[2])
print(ga, gb, gc, gd)
sys.exit(not (ga == gb == gd == b"NBDMAGIC" and gc == b""))' "$NS_IP" "$NS_IP2" "$HOST_IP" >"$T/ps.txt" 2>&1
check "per source: two served, the third closed at once, another source served" [ $? = 0 ]
cat "$T/ps.txt"
check "per source: refusal logged" \
	grep -q "admission: refused $NS_IP: 2 open from it, --max-per-source 2" "$T/serve.log"
"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat --json"
check "stat --json: one refusal over --max-per-source" \
	[ "$(json "$T/stat.json" access_refusals.max_per_source)" = 1 ]
check "stat --json: none by rule" [ "$(json "$T/stat.json" access_refusals.rule)" = 0 ]
check "stat: the refusals line" sh -c "'$BSTEER' stat '$INST' | grep -q ', 1 over --max-per-source'"
# Once they are gone, NS_IP has its two again.
check "per source: freed when closed" wait_for 30 ip netns exec "$NS" python3 -c 'import socket, sys
s = [socket.create_connection((sys.argv[1], 10809), 5) for i in range(2)]
sys.exit(not all(x.recv(8) == b"NBDMAGIC" for x in s))' "$HOST_IP"

"$BSTEER" stat "$INST" --prometheus >"$T/prom.txt" || fail "stat --prometheus"
check "prometheus: promtool check metrics" promtool check metrics <"$T/prom.txt"
check "prometheus: per-source refusals" \
	grep -qx "bsteer_access_refusals_total{instance=\"$INST\",reason=\"max_per_source\"} 1" "$T/prom.txt"
check "prometheus: a rule's hits" \
	grep -Eq "^bsteer_access_rule_hits_total\{instance=\"$INST\",rule=\"0\",action=\"deny\",cidr=\"192.0.2.1/32\"\} 0$" "$T/prom.txt"
check "prometheus: a rule's drops" \
	grep -Eq "^bsteer_access_rule_drops_total\{instance=\"$INST\",rule=\"20\",action=\"allow\",cidr=\"${NS_IP6%::*}::/64\"\} 0$" "$T/prom.txt"

# Concurrent adds: each holds the pin directory's lock while it picks a
# free id, so twelve at once get twelve ids. While another process holds
# that lock, an add waits for it.
PIN=/sys/fs/bpf/bsteer/$INST
pids=()
for i in $(seq 1 12); do
	"$BSTEER" access add "$INST" deny "203.0.113.$i" >/dev/null 2>>"$T/conc.err" &
	pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
check "concurrent adds: all 12 succeed" [ "$bad" = 0 ]
"$BSTEER" access list "$INST" --json >"$T/conc.json" || fail "access list --json"
check "concurrent adds: 12 rules, 12 distinct ids" python3 -c 'import json, sys
r = [x for x in json.load(open(sys.argv[1]))["access_rules"] if x["cidr"].startswith("203.0.113.")]
sys.exit(not (len(r) == 12 and len({x["id"] for x in r}) == 12))' "$T/conc.json"
flock -x "$PIN" -c "touch '$T/locked'; until [ -e '$T/unlock' ]; do sleep 0.1; done" &
LOCKER=$!
AFTER_KILL+=("kill $LOCKER")
wait_for 10 test -e "$T/locked" || fail "flock on $PIN"
"$BSTEER" access add "$INST" deny 203.0.113.100 >/dev/null &
ADDER=$!
sleep 1
check "an add waits while the lock is held" sh -c "! '$BSTEER' access list '$INST' | grep -q ' 203.0.113.100/32 '"
touch "$T/unlock"
wait "$ADDER"
check "... and is done once it is released" [ $? = 0 ]
wait "$LOCKER"
check "... the rule is there" sh -c "'$BSTEER' access list '$INST' | grep -q ' 203.0.113.100/32 '"
stop_serve
finish
