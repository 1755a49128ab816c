#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# serve --json-log: one JSON object per line, with an RFC 3339 UTC
# timestamp to the microsecond, a level, the instance and the message;
# a leg that cannot be opened is logged as an error, in JSON too.
. "$(dirname "$0")/lib.sh"
need_root

truncate -s 16M "$T/a.img"
NAME=$(instance jlog)
start_serve "$T/s.sock" --json-log --instance "$NAME" --export "d=$T/a.img" || finish
stop_serve
"$BSTEER" serve --json-log --instance "$NAME-bad" --listen "unix:$T/bad.sock" \
	--export "d=$T/missing.img" 2>>"$T/serve.log"
check "a server whose leg is missing exits 1" test $? -eq 1
check "and made no socket" test ! -e "$T/bad.sock"

# Every line, checked by a JSON parser; the clock within a day of now.
check "every line is a JSON log record" python3 - "$T/serve.log" "$NAME" <<'PY'
import datetime, json, re, sys
path, name = sys.argv[1], sys.argv[2]
now = datetime.datetime.now(datetime.timezone.utc)
levels = set()
for n, line in enumerate(open(path), 1):
    rec = json.loads(line)
    ts = rec["ts"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ts), (n, ts)
    when = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    when = when.replace(tzinfo=datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 86400, (n, ts)
    assert rec["level"] in ("info", "warn", "error"), (n, rec)
    assert isinstance(rec["msg"], str) and rec["msg"], (n, rec)
    if "listening on" in rec["msg"]:
        assert rec["instance"] == name, (n, rec)
    levels.add(rec["level"])
    if "missing.img" in rec["msg"]:
        assert rec["level"] == "error", (n, rec)
assert levels >= {"info", "error"}, levels
PY
finish
