#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer serve --metrics: GET /metrics passes promtool check metrics, and
# its counters move by what a fio run did, the targets' latency histograms
# with them, and policy swaps are counted; bsteer stat --prometheus gives
# the same text; bad addresses are usage errors, refused before anything
# starts; a non-loopback address needs --allow-remote.
. "$(dirname "$0")/lib.sh"
need_root
need_tools promtool fio
INST=$(instance metrics)
S=$T/s.sock
# A free loopback port, picked by the kernel.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/metrics

scrape() {	# scrape URL: the body, or fail
	python3 -c 'import sys, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=30)
except urllib.error.HTTPError as e:
    print(e.code); sys.exit(3)
sys.stdout.write(r.read().decode())' "$1"
}

# metric FILE NAME LABELS: one sample's value (labels as written, sorted).
metric() {
	awk -v k="$2{$3}" '$1 == k { print $2 }' "$1"
}

truncate -s 64M "$T/a.img" "$T/b.img"
start_serve "$S" --instance "$INST" --export "m=$T/a.img,$T/b.img" \
	--metrics "tcp:127.0.0.1:$PORT" || finish
scrape "$URL" >"$T/m1" || fail "GET /metrics"
check "/metrics passes promtool check metrics" sh -c "promtool check metrics <'$T/m1'"
check "it names the instance and the policy" \
	grep -q "^bsteer_info{instance=\"$INST\",kind=\"serve\",policy=\"mirror\"" "$T/m1"

# 2048 writes of 4 KiB: each reaches both legs.
fio --name=m --ioengine=nbd --uri="nbd+unix:///m?socket=$S" --rw=randwrite --bs=4k \
	--iodepth=8 --size=8M --number_ios=2048 --output="$T/fio.log" >/dev/null 2>&1 ||
	{ cat "$T/fio.log" >&2; fail "fio"; }
scrape "$URL" >"$T/m2" || fail "GET /metrics again"
check "again it passes promtool" sh -c "promtool check metrics <'$T/m2'"
for leg in 0 1; do
	l="instance=\"$INST\",target=\"$leg\",export=\"m\",leg=\"$leg\""
	a=$(metric "$T/m1" bsteer_target_ops_total "$l")
	b=$(metric "$T/m2" bsteer_target_ops_total "$l")
	check "leg $leg: ops moved by at least fio's 2048 writes ($a -> $b)" \
		[ -n "$a" ] && [ -n "$b" ] && [ $((b - a)) -ge 2048 ]
done
# The latency histogram: every target op reaped is timed once, so its count
# moves with ops_total (a file leg has no short transfers to count twice);
# the buckets are cumulative and end in +Inf at the count.
for leg in 0 1; do
	l="instance=\"$INST\",target=\"$leg\",export=\"m\",leg=\"$leg\""
	oa=$(metric "$T/m1" bsteer_target_ops_total "$l")
	ob=$(metric "$T/m2" bsteer_target_ops_total "$l")
	ca=$(metric "$T/m1" bsteer_target_latency_seconds_count "$l")
	cb=$(metric "$T/m2" bsteer_target_latency_seconds_count "$l")
	check "leg $leg: the latency count moved as ops did ($ca -> $cb, ops $oa -> $ob)" \
		[ -n "$ca" ] && [ -n "$cb" ] && [ $((cb - ca)) -eq $((ob - oa)) ]
	check "leg $leg: buckets cumulative, +Inf equal to the count, a sum > 0" \
		python3 - "$T/m2" "$l" <<'PY'
import re, sys
text, labels = open(sys.argv[1]).read(), sys.argv[2]
b = [(m.group(1), int(m.group(2))) for m in re.finditer(
    r'^bsteer_target_latency_seconds_bucket\{' + re.escape(labels) + r',le="([^"]+)"\} (\d+)$', text, re.M)]
cnt = re.search(r'^bsteer_target_latency_seconds_count\{' + re.escape(labels) + r'\} (\d+)$', text, re.M)
tot = re.search(r'^bsteer_target_latency_seconds_sum\{' + re.escape(labels) + r'\} (\S+)$', text, re.M)
les = [float(le) for le, _ in b[:-1]]
ok = (len(b) > 2 and b[-1][0] == "+Inf" and les == sorted(les) and
      all(x[1] <= y[1] for x, y in zip(b, b[1:])) and cnt and b[-1][1] == int(cnt.group(1)) and
      b[-1][1] > 0 and tot and float(tot.group(1)) > 0)
print(b[:3], "...", b[-1], cnt and cnt.group(1), tot and tot.group(1))
sys.exit(0 if ok else 1)
PY
done

# A policy swap (bpftool's would count too) moves bsteer_policy_changes_total.
changes() {	# changes N: /metrics says N policy changes
	scrape "$URL" >"$T/mc" &&
		[ "$(metric "$T/mc" bsteer_policy_changes_total "instance=\"$INST\"")" = "$1" ]
}
check "no policy change yet" changes 0
"$BSTEER" policy swap "$INST" passthrough --force >/dev/null || fail "swap to passthrough"
check "a swap is counted" wait_for 30 changes 1
"$BSTEER" policy swap "$INST" mirror --force >/dev/null || fail "swap back to mirror"
check "a swap back is counted" wait_for 30 changes 2

a=$(metric "$T/m1" bsteer_nbd_client_writes_total "instance=\"$INST\"")
b=$(metric "$T/m2" bsteer_nbd_client_writes_total "instance=\"$INST\"")
check "the frontend's writes moved by 2048 ($a -> $b)" [ -n "$a" ] && [ $((b - a)) -eq 2048 ]

"$BSTEER" stat "$INST" --prometheus >"$T/p"
check "stat --prometheus passes promtool" sh -c "promtool check metrics <'$T/p'"
check "stat --prometheus has the same families" \
	cmp <(grep '^# TYPE' "$T/m2") <(grep '^# TYPE' "$T/p")
check "another path is 404" [ "$(scrape "http://127.0.0.1:$PORT/x")" = 404 ]
stop_serve

for bad in "tcp:127.0.0.1:99999" "tcp:127.0.0.1:0" "tcp:127.0.0.1:" "127.0.0.1:9" "tcp:127.0.0.1:x"; do
	"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" --export "m=$T/a.img" \
		--metrics "$bad" >"$T/bad.log" 2>&1
	rc=$?
	check "--metrics $bad: exit 2" [ $rc -eq 2 ]
	check "--metrics $bad: one line naming the option" \
		sh -c "[ \$(wc -l <'$T/bad.log') -eq 1 ] && grep -q -- '--metrics' '$T/bad.log'"
	check "--metrics $bad: nothing pinned" [ ! -e "/sys/fs/bpf/bsteer/$INST-x" ]
done
"$BSTEER" serve --listen "unix:$T/x.sock" --instance "$INST-x" --export "m=$T/a.img" \
	--metrics tcp:198.18.0.1:9100 >"$T/bad.log" 2>&1
check "a non-loopback address is refused without --allow-remote" \
	grep -q "not a loopback address; add --allow-remote" "$T/bad.log"
finish
