#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Rules change under load: while an allowed client copies from the export,
# a deny rule for another address is added with bpftool alone. That
# address's next connect is dropped at XDP (counted on the new rule's id),
# the running copy finishes with the right bytes, and deleting the rule
# lets the address in again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
need_root
need_tools nbdcopy python3
make_netns
INST=$(instance access-live)
PIN=/sys/fs/bpf/bsteer/$INST
truncate -s 64M "$T/d.img"
head -c 64M /dev/urandom | dd of="$T/d.img" conv=notrunc status=none
# One rule the test never hits, so the program is there from the start.
start_tcp "$HOST_IP:10809" --instance "$INST" --deny 192.0.2.1 \
	--export "d=$T/d.img" || finish
URL=nbd://$HOST_IP:10809/d

check "before: the second address connects" \
	ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP2" "$HOST_IP" 10809

# The running client: copies until the rule is in, then once more.
ip netns exec "$NS" sh -c "while [ ! -e '$T/rule-in' ]; do nbdcopy '$URL' '$T/out' || exit 1; done
	nbdcopy '$URL' '$T/out'" &
COPY=$!
PIDS+=("$COPY")
wait_for 60 test -s "$T/out" || fail "the copy did not start"

# Rule 7: NS_IP2/32 (key: prefix length as __u32 LE, then the address).
IFS=. read -r a b c d <<<"$NS_IP2"
bpftool map update pinned "$PIN/access_deny4" key 32 0 0 0 "$a" "$b" "$c" "$d" \
	value 7 0 0 0 || fail "bpftool map update"
check "after: the second address gets no connection" \
	sh -c "! ip netns exec $NS python3 -c \"\$0\" $NS_IP2 $HOST_IP 10809" "$NS_CONNECT"
check "the new rule's drops rose" [ "$(rule_count "$INST" 7 drops)" -gt 0 ]
touch "$T/rule-in"
wait "$COPY"
check "the running copy finished" [ $? = 0 ]
check "its bytes" cmp "$T/d.img" "$T/out"

bpftool map delete pinned "$PIN/access_deny4" key 32 0 0 0 "$a" "$b" "$c" "$d" ||
	fail "bpftool map delete"
check "rule deleted: it connects again" \
	ip netns exec "$NS" python3 -c "$NS_CONNECT" "$NS_IP2" "$HOST_IP" 10809
stop_serve
finish
