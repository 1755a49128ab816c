#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Every option of every command, with bad values: -1, 0, the maximum plus
# one, an empty string and garbage (those that are bad for that option).
# Each must give one line on stderr naming the option, exit status 2, and
# leave nothing behind: no pin, no file. Flags get a value they cannot
# take (--flag=x). The options are read from each command's --help, and
# an option with no row in the table below fails the test, so a new option
# cannot slip in unchecked.
. "$(dirname "$0")/lib.sh"
need_root
mkdir "$T/cwd"
export BSTEER T
exec python3 - <<'PY'
import os, re, subprocess, sys

B, T = os.environ["BSTEER"], os.environ["T"]
CWD = T + "/cwd"
ROOT = "/sys/fs/bpf/bsteer"

# command -> (arguments after the option, {option: [bad values] | "flag"})
NUM = lambda mx: ["-1", "0", str(mx + 1), "", "x"]
SECS = lambda mx: ["-1", "0", str(mx + 1), "", "x"]
NAME = ["", "a/b", "n" * 33]
TABLE = {
    "serve": ([], {
        "--listen": ["", "x", "tcp:127.0.0.1:-1", "tcp:127.0.0.1:0", "tcp:127.0.0.1:65536", "unix:"],
        "--export": ["", "x", "-1", "0", "=a", "x=/dev/null,cache=bogus"],
        "--threads": NUM(64),
        "--instance": NAME,
        "--slots": ["-1", "0", "1", "16385", "", "x"],
        "--slot-size": ["-1", "0", "4194305", "", "x", "5000"],
        "--allow-remote": "flag",
        "--metrics": ["", "x", "tcp:127.0.0.1:0", "tcp:127.0.0.1:65536", "-1"],
        "--upstream-timeout": SECS(3600),
        "--reply-timeout": SECS(3600),
        "--handshake-timeout": SECS(3600),
        "--inline-io": ["-1", "0", "", "x"],
        "--inline-budget": ["-1", "10000001", "", "x"],
        "--splice": ["-1", "0", "", "x"],
        "--fuse": [""],
        "--fuse-depth": NUM(256),
        "--loop": "flag",
        "--fuse-transport": ["-1", "0", "", "x"],
        "--allow": ["", "x", "-1", "198.18.0.0/33", "::/129", "198.18.0.0/"],
        "--deny": ["", "x", "-1", "198.18.0.0/33", "::/129", "1.2.3.4/x"],
        "--xdp": ["-1", "0", "", "x"],
        "--xdp-dev": ["", "x" * 16],
        "--allow-uid": ["-1", "", "x", "4294967295"],
        "--allow-gid": ["-1", "", "x", "4294967295"],
        "--max-connections": NUM(1 << 20),
        "--max-request": ["-1", "0", "4095", "4294967296", "", "x"],
        "--max-per-source": NUM(1 << 20),
        "--xdp-replace": "flag",
        "--tls": ["", "x", "-1", "ON"],
        "--tls-certificates": [""],
        "--tls-psk": [""],
        "--tls-verify-peer": "flag",

        "--no-hook": "flag",
        "--json-log": "flag",
        "--config": [""],
        "--verbose": "flag",
        "--help": "flag",
    }),
    "copy": (["src", "--to", "dst"], {
        "--to": [""],
        "--policy": [""],
        "--slot-size": ["-1", "0", "33554433", "", "x", "5000"],
        "--depth": NUM(16382),
        "--instance": NAME,
        "--fsync": "flag", "--direct": "flag", "--no-hook": "flag",
        "--no-progress": "flag", "--json": "flag", "--verbose": "flag", "--help": "flag",
    }),
    "stat": (["inst"], {
        "--json": "flag", "--prometheus": "flag",
        "--interval": SECS(86400),
        "--count": NUM(1000000000),
        "--help": "flag",
    }),
    "policy": (["list"], {
        "--dry-run": "flag", "--force": "flag", "--json": "flag", "--verbose": "flag", "--help": "flag",
    }),
    "cow": (["status", "a", "b"], {"--map": [""], "--json": "flag", "--help": "flag"}),
    "resync": (["inst", "exp", "1"], {"--json": "flag", "--no-wait": "flag", "--help": "flag"}),
    "leg": (["add", "inst", "exp", "/tgt"], {
        "--resync": "flag", "--no-wait": "flag", "--json": "flag", "--help": "flag",
    }),
    "trace": (["-d", "1"], {
        "--pid": ["-1", "0", "1073741824", "", "x", ","],
        "--comm": ["", "c" * 16],
        "--no-follow": "flag",
        "--instance": NAME,
        "--no-xcheck": "flag",
        "--json": "flag",
        "--output": [""],
        "--hist": "flag",
        "--interval": SECS(3600),
        "--duration": ["-1", "0", "", "x"],
        "--rows": NUM(100000),
        "--ringbuf": NUM(1024) + ["3"],
        "--verbose": "flag",
        "--help": "flag",
    }),
    "list": ([], {"--json": "flag", "--help": "flag"}),
    "access": (["add", "nonesuch", "deny", "192.0.2.7"], {
        "--id": ["-1", "256", "", "x"], "--json": "flag", "--help": "flag",
    }),
    "clean": (["nonesuch"], {"--dry-run": "flag", "--json": "flag", "--help": "flag"}),
}

fails = 0
def fail(msg):
    global fails
    fails += 1
    print("FAIL: " + msg, file=sys.stderr)

def state(pid=None):
    """What a run could leave: pins named after its pid (serve-PID,
    copy-PID: the default instance names; the bad names in the table are
    refused before anything is made), and files in its working folder.
    Other instances on the host (another test, a benchmark) are not ours."""
    pins = sorted(os.listdir(ROOT)) if os.path.isdir(ROOT) else []
    ours = lambda p: (pid is not None and p.endswith(f"-{pid}")) or p in NAME
    return [p for p in pins if ours(p)], sorted(os.listdir(CWD))

# Every option the commands list must have a row, and every row an option.
out = subprocess.run([B, "--help"], capture_output=True, text=True).stdout
commands = re.findall(r"^  ([a-z]+) ", out.split("COMMANDS:")[1], re.M)
for cmd in commands:
    help_ = subprocess.run([B, cmd, "--help"], capture_output=True, text=True).stdout
    listed = set(re.findall(r"^\s+(?:-[a-zA-Z], )?(--[a-z][a-z-]*)", help_, re.M))
    if cmd not in TABLE:
        fail(f"{cmd}: no rows in the option table")
        continue
    rows = set(TABLE[cmd][1])
    for o in sorted(listed - rows):
        fail(f"{cmd} {o}: in --help, but not in the option table")
    for o in sorted(rows - listed):
        fail(f"{cmd} {o}: in the option table, but not in --help")

runs = 0
before = state()
for cmd, (rest, opts) in TABLE.items():
    for opt, bad in opts.items():
        if opt == "--help":
            continue
        cases = [[f"{opt}=x"]] if bad == "flag" else [[opt, v] for v in bad]
        for i, args in enumerate(cases):
            argv = [B, cmd] + args + rest
            # On the sanitized build, LeakSanitizer's check at exit costs
            # some 0.6 s per process on a VM where page faults are dear
            # (40 K of them): it checks the first bad value of each option,
            # whose error path the others share, and not the rest.
            env = dict(os.environ)
            if i and "ASAN_OPTIONS" in env:
                env["ASAN_OPTIONS"] += ":detect_leaks=0"
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=CWD, env=env)
            out_, err_ = p.communicate(timeout=60)
            r = subprocess.CompletedProcess(argv, p.returncode, out_, err_)
            runs += 1
            what = f"bsteer {cmd} {' '.join(repr(a) if a == '' else a for a in args)}"
            lines = r.stderr.splitlines()
            if r.returncode != 2:
                fail(f"{what}: exit {r.returncode}, not 2 ({r.stderr.strip()!r})")
            elif len(lines) != 1:
                fail(f"{what}: {len(lines)} lines on stderr, not 1: {r.stderr!r}")
            elif opt not in lines[0] and not (bad == "flag" and opt.lstrip("-") in lines[0]):
                fail(f"{what}: the error does not name {opt}: {lines[0]!r}")
            if state(p.pid) != before:
                fail(f"{what}: left something behind: {state(p.pid)} (was {before})")
                before = state()
print(f"{runs} bad option values tried over {len(TABLE)} commands")
sys.exit(1 if fails else 0)
PY
