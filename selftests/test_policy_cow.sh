#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# cow: a read-only base under an overlay. Clients write (nbdcopy, then
# writes that cover chunks only in part, some racing for one chunk); the
# base must stay byte-identical, reads must give what was written, the
# overlay must survive a restart, and "bsteer cow commit" must leave a base
# equal to what the client saw.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdcopy

S=$T/nbd.sock
INST=$(instance cow)
head -c 32M /dev/urandom >"$T/base"
cp "$T/base" "$T/base.orig"
cp "$T/base" "$T/expect"
U="nbd+unix:///c?socket=$S"
EXPORT="c=$T/base,$T/overlay,policy=cow"

start_serve "$S" --instance "$INST" --threads 2 --slots 16 --export "$EXPORT" || finish
check "overlay created" [ -f "$T/overlay" ] && [ -f "$T/overlay.cowmap" ]

# 4 MiB at 8 MiB (whole chunks).
head -c 4M /dev/urandom >"$T/w4"
nbdsh -u "$U" -c "h.pwrite(open('$T/w4','rb').read(), 8*1024*1024)" ||
	fail "4 MiB write"
dd if="$T/w4" of="$T/expect" bs=1M seek=8 conv=notrunc status=none

# Writes that cover their chunks in part: the rest comes from the base.
# Then 16 writes of 512 bytes into one 64 KiB chunk at once: each must wait
# for the one filling the chunk, and none may undo another.
head -c 2M /dev/urandom >"$T/wp"
nbdsh -u "$U" -c "
d = open('$T/wp','rb').read()
h.pwrite(d[:3*4096], 7*512)
h.pwrite(d[:1048576-2048], 5*1048576+512)
cs = []
for i in range(16):
    cs.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d[i*512:(i+1)*512])), 20*1048576 + 4096 + i*1024))
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cs:
    assert h.aio_command_completed(c)
h.flush()
" || fail "partial-chunk writes"
/usr/bin/python3 - "$T" <<'PY'
import sys
t = sys.argv[1]
d = open(t + '/wp', 'rb').read()
e = bytearray(open(t + '/expect', 'rb').read())
def put(b, o): e[o:o + len(b)] = b
put(d[:3*4096], 7*512)
put(d[:1048576-2048], 5*1048576+512)
for i in range(16):
    put(d[i*512:(i+1)*512], 20*1048576 + 4096 + i*1024)
open(t + '/expect', 'wb').write(e)
PY
nbdcopy "$U" "$T/seen" || fail "read the export"
check "reads give what was written" cmp "$T/expect" "$T/seen"
check "base untouched while serving" cmp "$T/base.orig" "$T/base"
"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat"
check "no rejected decision" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
check "no failed request" [ "$(json "$T/stat.json" counters.requests_failed)" = 0 ]
check "cow made the decisions" [ "$(json "$T/stat.json" decisions_by_policy_id.5)" -gt 0 ]
"$BSTEER" cow status "$T/base" "$T/overlay" >/dev/null 2>&1
check "status refused while serving" [ $? -ne 0 ]
stop_serve

# A restart keeps the overlay.
start_serve "$S" --instance "$INST" --export "$EXPORT" || finish
nbdcopy "$U" "$T/seen2" || fail "read after restart"
check "overlay survives a restart" cmp "$T/expect" "$T/seen2"
stop_serve
check "base untouched after serving" cmp "$T/base.orig" "$T/base"

"$BSTEER" cow status "$T/base" "$T/overlay" --json >"$T/st.json" || fail "cow status"
check "status counts the chunks" [ "$(json "$T/st.json" chunks_in_overlay)" -ge 66 ]
"$BSTEER" cow commit "$T/base" "$T/overlay" --json >"$T/commit.json" || fail "cow commit"
check "commit gives the base the client saw" cmp "$T/expect" "$T/base"
"$BSTEER" cow status "$T/base" "$T/overlay" --json >"$T/st2.json"
check "overlay empty after commit" [ "$(json "$T/st2.json" chunks_in_overlay)" = 0 ]
start_serve "$S" --instance "$INST" --export "$EXPORT" || finish
nbdcopy "$U" "$T/seen3" || fail "read after commit"
check "export unchanged by the commit" cmp "$T/expect" "$T/seen3"
# nbdcopy over the whole export, then commit: the base is the source.
head -c 32M /dev/urandom >"$T/src"
nbdcopy "$T/src" "$U" || fail "nbdcopy to the export"
check "base untouched by nbdcopy" cmp "$T/expect" "$T/base"
stop_serve
"$BSTEER" cow commit "$T/base" "$T/overlay" >/dev/null || fail "second commit"
check "second commit gives the nbdcopy source" cmp "$T/src" "$T/base"
finish
