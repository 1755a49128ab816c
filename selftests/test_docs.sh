#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The documentation runs: every shell block (```sh, ```bash, ```console)
# of README.md and docs/*.md is run, from the source tree, against a live
# instance, or carries a marker on the line before it:
#   <!-- doctest: skip: REASON -->        not run here, and why
#   <!-- doctest: output of: COMMAND -->  the block is COMMAND's output,
#                                         exactly; it is also run
# (among the HTML comment lines just above the fence: other tests have
# markers of their own there, such as the policy guide's <!-- build -->).
# The one placeholder is INSTANCE, the live instance's name: a block that
# names it runs with it replaced, as a reader would paste it. `bsteer` is
# this build's. Each block runs under bash -e -o pipefail and must exit 0.
# At the end: how many ran, how many were skipped, by reason.
#
# Our own extractor (a page of Python) rather than bats or cram: the blocks
# are plain commands, not transcripts, and the markers need to say why.
#
# The bpftool swap recipe gets one more check: it runs on an instance that
# already runs mirror, and the program it loads must use the instance's
# pinned maps (map ids from bpftool prog show against the pins').
. "$(dirname "$0")/lib.sh"
need_root
need_tools bpftool promtool python3
INST=$(instance docs)
D=/sys/fs/bpf/bsteer/$INST
truncate -s 64M "$T/a.img" "$T/b.img"
start_serve "$T/s.sock" --instance "$INST" --export "m=$T/a.img,$T/b.img,policy=mirror" || finish
mkdir "$T/bin"
ln -s "$BSTEER" "$T/bin/bsteer"
ROOT=$PWD
export INST T ROOT D BUILD
PATH=$T/bin:$PATH python3 - <<'PY' || FAILS=$((FAILS + 1))
import collections, glob, os, re, subprocess, sys

inst, T, root = os.environ["INST"], os.environ["T"], os.environ["ROOT"]
files = ["README.md"] + sorted(glob.glob("docs/*.md"))
ran, skipped, bad = 0, collections.Counter(), 0

def blocks(path):
    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if m.group(1) in ("sh", "bash", "console", "shell"):
            # The marker: the doctest one among the comment lines just above.
            k, before = i - 1, ""
            while k >= 0 and lines[k].startswith("<!--"):
                if lines[k].startswith("<!-- doctest"):
                    before = lines[k]
                k -= 1
            yield i + 1, before, "\n".join(lines[i + 1:j]) + "\n"
        i = j + 1

for f in files:
    for line, before, text in blocks(f):
        where = f"{f}:{line}"
        mark = re.match(r"^<!-- doctest: (skip|output of): (.*?) -->$", before)
        if before.startswith("<!-- doctest") and not mark:
            print(f"FAIL: {where}: a marker I cannot read: {before}")
            bad += 1
            continue
        if mark and mark.group(1) == "skip":
            skipped[mark.group(2)] += 1
            continue
        if mark:
            cmd = mark.group(2).split()
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=root).stdout
            # The sanitized pass's binary names its own objects' directory.
            out = out.replace(os.environ["BUILD"] + "/bpf/", "build/bpf/")
            if out != text:
                print(f"FAIL: {where}: not the output of '{mark.group(2)}' (run it and paste):")
                sys.stdout.writelines(l + "\n" for l in __import__("difflib").unified_diff(
                    text.splitlines(), out.splitlines(), "README", "output", lineterm=""))
                bad += 1
                continue
        script = text.replace("INSTANCE", inst)
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=root,
                           capture_output=True, text=True, timeout=120)
        ran += 1
        if r.returncode:
            print(f"FAIL: {where}: exit {r.returncode}\n{script}--- output:\n{r.stdout}{r.stderr}")
            bad += 1
        else:
            print(f"ok: {where} ran")
print(f"doc blocks: {ran} ran, {sum(skipped.values())} skipped" +
      "".join(f"\n  skipped ({n}): {why}" for why, n in skipped.items()))
sys.exit(1 if bad else 0)
PY

# The swap recipes loaded mirror and mirror_rr again: their programs must
# use the pins.
check "the recipes' programs are pinned" sh -c \
	"bpftool prog show pinned '$D/progs/mirror/mirror_tp' >/dev/null &&
	 bpftool prog show pinned '$D/progs/mirror_rr/mirror_rr_tp' >/dev/null"
check "they use the instance's pinned maps, every one they declare" python3 - "$D" <<'PY'
import json, subprocess, sys
d = sys.argv[1]
def show(*a):
    return json.loads(subprocess.run(["bpftool", "-j", *a], capture_output=True, text=True,
                                     check=True).stdout)
names = ["reqs", "decisions", "slot_meta", "scratch", "slot_free", "targets", "rings", "stats",
         "policy_stats", "batch", "cfg", "events", "mirror_sync", "mirror_rr"]
pinned = {show("map", "show", "pinned", f"{d}/{n}")["id"]: n for n in names}
ok = True
for pol in ("mirror", "mirror_rr"):
    used = set()
    for prog in (f"{pol}_tp", f"{pol}_sys"):
        used |= set(show("prog", "show", "pinned", f"{d}/progs/{pol}/{prog}").get("map_ids", []))
    missing = sorted(n for i, n in pinned.items() if i not in used)
    own = [show("map", "show", "id", str(i))["name"] for i in sorted(used - set(pinned))]
    # Its own maps may only be internal ones (.rodata...): no private copy.
    print(f"{pol}: pinned maps not used: {missing}; maps of its own: {own}")
    ok &= not missing and all(n.startswith(".") for n in own)
sys.exit(0 if ok else 1)
PY
check "the server still serves after the swap" nbdinfo --size "nbd+unix:///m?socket=$T/s.sock"
stop_serve
finish
