#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bsteer serve with the completion hook detached (--no-hook): every header
# is parsed and every decision made by the syscall twins, the decisions in
# batches after the completions they answer. The data must not care: a
# 2-leg mirror written and read by nbdcopy (many requests in flight) and
# by fio with verification, both legs equal afterwards.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdcopy fio

S=$T/nbd.sock
INST=$(instance fallback)
truncate -s 64M "$T/a.img" "$T/b.img"
start_serve "$S" --instance "$INST" --no-hook --export "m=$T/a.img,$T/b.img" || finish
U="nbd+unix:///m?socket=$S"

# A connection whose only request is DISC leaves a parse stamped with the
# same user_data as the next connection's first header on that index: the
# twin must parse that header, not reuse the stale DISC.
nbdsh -c "
for i in range(3):
    h = nbd.NBD()
    h.connect_uri('$U')
    h.shutdown()
    del h
h = nbd.NBD()
h.connect_uri('$U')
assert h.pread(4096, 0) == bytes(4096)
h.shutdown()
" || fail "a new connection's first request after a DISC-only one"
head -c 64M /dev/urandom >"$T/src"
nbdcopy "$T/src" "$U" || fail "nbdcopy in"
nbdcopy "$U" "$T/out" || fail "nbdcopy out"
check "read back equal" cmp -s "$T/src" "$T/out"
check "leg a equals the source" cmp -s "$T/src" "$T/a.img"
check "leg b equals the source" cmp -s "$T/src" "$T/b.img"
fio --name=v --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --iodepth=32 \
	--size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--output="$T/fio.log" >/dev/null 2>&1 || { cat "$T/fio.log" >&2; fail "fio verify"; }
check "fio's writes on both legs" cmp -s "$T/a.img" "$T/b.img"

"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat"
check "no header parsed in the hook" [ "$(json "$T/stat.json" counters.headers_parsed_hook)" = 0 ]
check "every header by the twin" [ "$(json "$T/stat.json" counters.headers_parsed_fallback)" -gt 8000 ]
check "no decision by the hook" [ "$(json "$T/stat.json" counters.decisions_hook)" = 0 ]
check "decisions by the twin" [ "$(json "$T/stat.json" counters.decisions_fallback)" -gt 8000 ]
check "no rejected decision" [ "$(json "$T/stat.json" counters.decisions_rejected)" = 0 ]
check "no error reply" [ "$(json "$T/stat.json" counters.client_errors)" = 0 ]
stop_serve
finish
