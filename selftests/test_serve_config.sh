#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bsteer serve --config: settings from a file (comments, blank lines,
# "key value" and "key=value"), command-line options added on top, and a
# clear error naming the file and line for a bad setting.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdinfo

S=$T/nbd.sock
INST=$(instance conf)
truncate -s 32M "$T/a.img" "$T/b.img"
truncate -s 16M "$T/c.img"
cat >"$T/serve.conf" <<CONF
# exports for the test
export mirror=$T/a.img,$T/b.img

threads=2
instance $INST
slots   16
CONF
start_serve "$S" --config "$T/serve.conf" --export "extra=$T/c.img" || finish
nbdinfo --json "nbd+unix:///mirror?socket=$S" >"$T/m.json" || fail "nbdinfo mirror"
nbdinfo --json "nbd+unix:///extra?socket=$S" >"$T/e.json" || fail "nbdinfo extra"
check "export from the file" [ "$(json "$T/m.json" exports.0.export-size)" = $((32 << 20)) ]
check "export from the command line" [ "$(json "$T/e.json" exports.0.export-size)" = $((16 << 20)) ]
check "instance name from the file" [ -e "/sys/fs/bpf/bsteer/$INST/info" ]
"$BSTEER" stat "$INST" --json >"$T/stat.json" || fail "stat"
check "threads from the file" [ "$(json "$T/stat.json" counters.rings)" = 2 ]
check "slots from the file (16 per thread)" [ "$(json "$T/stat.json" slots.total)" = 32 ]
stop_serve

printf 'export x=%s\nbogus 1\n' "$T/c.img" >"$T/bad.conf"
if "$BSTEER" serve --listen "unix:$T/x.sock" --config "$T/bad.conf" 2>"$T/err"; then
	fail "a bad setting was accepted"
fi
check "unknown setting names file and line" grep -q "bad.conf:2: unknown setting 'bogus'" "$T/err"
printf 'threads\n' >"$T/bad2.conf"
"$BSTEER" serve --config "$T/bad2.conf" 2>"$T/err2" && fail "a missing value was accepted"
check "missing value is reported" grep -q "bad2.conf:1: 'threads' needs a value" "$T/err2"
"$BSTEER" serve --config "$T/missing.conf" 2>"$T/err3" && fail "a missing file was accepted"
check "missing file is reported" grep -q "cannot read .*missing.conf" "$T/err3"
finish
