#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The man pages: docs/man/*.scd, built by make into $BUILD/man with scdoc.
#  - every source has its page, no older than the source (else: run make);
#  - each page renders with man -l (MANWIDTH=80) and groff -ww -z -man
#    without one warning, and has the sections a page of its kind needs;
#  - bsteer(8) names every command of 'bsteer --help', each command has its
#    page bsteer-CMD(8), and there is no page for a command that is gone;
#  - every option a command's --help lists is an item of its page's OPTIONS
#    (as --help spells it: "-l, --listen"), and every item there is in
#    --help: a page cannot fall behind its command silently;
#  - every example that runs bsteer uses a command and options it has;
#  - the examples that can run here (those matching RUNNABLE below: --help,
#    --version, policy list, list, clean --dry-run) run, and must exit 0;
#  - SEE ALSO names only pages that exist, or pages of other packages;
#  - the example policy of bsteer-policies(7) compiles against the tree.
. "$(dirname "$0")/lib.sh"
need_tools man groff scdoc col python3 jq "${CLANG:-clang-19}"
mkdir "$T/bin"
ln -s "$BSTEER" "$T/bin/bsteer"
export BSTEER T BUILD CLANG=${CLANG:-clang-19}
PATH=$T/bin:$PATH python3 - <<'PY' || FAILS=$((FAILS + 1))
import glob, os, re, subprocess, sys

B, T, BUILD = os.environ["BSTEER"], os.environ["T"], os.environ["BUILD"]
MAN = BUILD + "/man"
root = os.getuid() == 0
# Examples run here, whole lines (after joining "\" continuations). Only
# commands that need no instance, file or device; list and clean read
# /sys/fs/bpf/bsteer, which needs root.
RUNNABLE = [
    r"bsteer --help", r"bsteer --version", r"bsteer [a-z]+ --help",
    r"bsteer policy list( --json)?( \| jq -r '[^']*')?",
] + ([r"bsteer list( --json)?( \| jq -r '[^']*')?", r"bsteer clean --dry-run"] if root else [])
# Pages of other packages that SEE ALSO may name.
SECTIONS = {"8": ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "EXIT STATUS",
                  "SEE ALSO"],
            "7": ["NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "SEE ALSO"]}
bad = 0

def fail(msg):
    global bad
    bad += 1
    print("FAIL: " + msg)

def ok(msg):
    print("ok: " + msg)

def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)

def sections(text):
    """The rendered page's sections: {HEADING: [lines]}."""
    out, cur = {}, None
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z ]+$", line):
            cur = line.strip()
            out[cur] = []
        elif cur:
            out[cur].append(line)
    return out

def help_options(text):
    """The items of a --help's OPTIONS, as spelled: ("-l, --listen", ...)."""
    return [m.group(1) + (m.group(2) or "") for m in
            re.finditer(r"^ {2,6}((?:-[a-zA-Z], )?)(--[a-z][a-z-]*)", text, re.M)]

sources = sorted(glob.glob("docs/man/*.scd"))
pages = {}
for src in sources:
    name = os.path.basename(src)[:-4]		# bsteer-serve.8
    page = f"{MAN}/{name}"
    if not os.path.exists(page):
        fail(f"{page}: missing (run make)")
        continue
    if os.path.getmtime(page) < os.path.getmtime(src):
        fail(f"{page}: older than {src} (run make)")
    env = dict(os.environ, MANWIDTH="80")
    r = run(["man", "--warnings", "-l", page], env=env)
    if r.returncode or r.stderr:
        fail(f"{name}: man -l: exit {r.returncode}: {r.stderr.strip()}")
    g = run(["groff", "-ww", "-z", "-man", page])
    if g.returncode or g.stderr:
        fail(f"{name}: groff -ww: {g.stderr.strip()}")
    text = run(["col", "-bx"], input=r.stdout).stdout
    secs = sections(text)
    missing = [s for s in SECTIONS[name[-1]] if s not in secs]
    if missing:
        fail(f"{name}: no section {', '.join(missing)}")
    if not (r.returncode or r.stderr or g.stderr or missing):
        ok(f"{name} renders without warnings, sections all there")
    pages[name] = (src, text, secs)

# The commands and their pages.
top = run([B, "--help"]).stdout
commands = re.findall(r"^  ([a-z]+) ", top.split("COMMANDS:")[1], re.M)
if len(commands) < 5:
    fail(f"bsteer --help lists too few commands to be read right: {commands}")
for cmd in commands:
    if f"bsteer-{cmd}.8" not in pages:
        fail(f"{cmd}: in bsteer --help, but no page bsteer-{cmd}.8")
    elif "bsteer.8" in pages and not re.search(
            rf"^ {{7}}{cmd}$", "\n".join(pages["bsteer.8"][2].get("DESCRIPTION", [])), re.M):
        fail(f"{cmd}: no item in bsteer(8)'s list of commands")
    else:
        ok(f"{cmd}: a page, and an item in bsteer(8)")
for name in pages:
    m = re.match(r"bsteer-([a-z]+)\.8$", name)
    if m and m.group(1) not in commands:
        fail(f"{name}: a page for '{m.group(1)}', which bsteer --help does not list")

# Options: each --help item is a page item, and each page item is in --help.
opt_count = 0
helps = {}
for cmd in commands:
    h = run([B, cmd, "--help"])
    helps[cmd] = h.stdout
    if h.returncode:
        fail(f"bsteer {cmd} --help: exit {h.returncode}")
        continue
    if f"bsteer-{cmd}.8" not in pages:
        continue
    listed = help_options(h.stdout.split("OPTIONS:")[1].split("\n\n")[0]
                          if "OPTIONS:" in h.stdout else "")
    if len(listed) < 2:
        fail(f"bsteer {cmd} --help: fewer than 2 options read: {listed}")
    opts = "\n".join(pages[f"bsteer-{cmd}.8"][2].get("OPTIONS", []))
    items = [m.group(1) + m.group(2) for m in
             re.finditer(r"^ {7}((?:-[a-zA-Z], )?)(--[a-z][a-z-]*)", opts, re.M)]
    gone = [o for o in listed if o not in items]
    extra = [o for o in items if o not in listed]
    for o in gone:
        fail(f"bsteer-{cmd}.8: '{o}' is in bsteer {cmd} --help, but not an item of OPTIONS")
    for o in extra:
        fail(f"bsteer-{cmd}.8: OPTIONS has '{o}', which bsteer {cmd} --help does not list")
    opt_count += len(listed)
    if not gone and not extra:
        ok(f"bsteer-{cmd}.8: all {len(listed)} options of --help, and no other")
# bsteer(8): the options bsteer --help tells of.
if "bsteer.8" in pages:
    opts = "\n".join(pages["bsteer.8"][2].get("OPTIONS", []))
    for o in ["--help"] + re.findall(r"'bsteer (--[a-z]+)'", top):
        if not re.search(rf"^ {{7}}(-[a-zA-Z], )?{o}\b", opts, re.M):
            fail(f"bsteer.8: '{o}' is not an item of OPTIONS")
print(f"{opt_count} options of {len(commands)} commands found in their pages")

# The examples, from the sources: fenced blocks under "# EXAMPLES".
def examples(src):
    text = open(src).read().split("\n# EXAMPLES\n", 1)
    if len(text) < 2:
        return
    body = re.split(r"\n# ", text[1], 1)[0]
    for block in re.findall(r"^```\n(.*?)^```$", body, re.S | re.M):
        block = block.replace("\\\\", "\\").replace("\\\n", " ")
        for line in block.splitlines():
            line = re.sub(r"\s+", " ", line).strip()
            if "bsteer" in line.split("|")[0].split()[:3]:
                yield line

ran = notrun = 0
for name, (src, _, _) in pages.items():
    for line in examples(src):
        # The command and options it uses must exist.
        m = re.search(r"(?:^|\| )bsteer (?:([a-z]+)(?: |$))?(.*)", line)
        cmd, rest = m.group(1), m.group(2)
        rest = re.split(r" -- | \| | &|;", " " + rest + " ")[0]
        if cmd and cmd not in commands:
            fail(f"{name}: example '{line}': no command '{cmd}'")
            continue
        known = helps.get(cmd, top + "\n  --help\n  --version")
        for o in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", rest):
            if not re.search(rf"(?<![\w-]){o}(?![\w-])", known):
                fail(f"{name}: example '{line}': bsteer {cmd or ''} has no option {o}")
        if not any(re.fullmatch(p, line) for p in RUNNABLE):
            notrun += 1
            continue
        r = run(["bash", "-e", "-o", "pipefail", "-c", line], cwd=T, timeout=60)
        ran += 1
        if r.returncode:
            fail(f"{name}: example '{line}': exit {r.returncode}: {r.stderr.strip()}")
        else:
            ok(f"{name}: example '{line}' ran")
print(f"examples: {ran} ran, {notrun} not run here (not in RUNNABLE)")
if ran < 6:
    fail(f"only {ran} examples ran: the extraction is broken, or the pages lost them")

# SEE ALSO: our own pages must exist.
for name, (_, _, secs) in pages.items():
    for ref in re.findall(r"\b(bsteer[a-z-]*)\((\d)\)", " ".join(secs.get("SEE ALSO", []))):
        if f"{ref[0]}.{ref[1]}" not in pages:
            fail(f"{name}: SEE ALSO names {ref[0]}({ref[1]}), which is not a page")

# The example policy of bsteer-policies(7) builds.
if "bsteer-policies.7" in pages:
    srcs = [b for b in re.findall(r"^```\n(.*?)^```$", open(pages["bsteer-policies.7"][0]).read(),
                                  re.S | re.M) if re.search(r"^BSTEER_POLICY\(\w+, \d+\)$", b, re.M)]
    if not srcs:
        fail("bsteer-policies.7: no example policy found")
    for i, c in enumerate(srcs):
        path = f"{T}/example{i}.bpf.c"
        open(path, "w").write(c)
        arch = {"x86_64": "x86", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
        r = run([os.environ["CLANG"], "-g", "-O2", "-target", "bpf", "-mcpu=v3",
                 f"-D__TARGET_ARCH_{arch}", "-I.", "-Iinclude", "-Ibpf", "-c", path,
                 "-o", path[:-2] + ".o"])
        if r.returncode:
            fail(f"bsteer-policies.7: the example policy does not build:\n{r.stderr}")
        else:
            ok("bsteer-policies.7: the example policy builds")
sys.exit(1 if bad else 0)
PY
finish
