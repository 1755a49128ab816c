#!/usr/bin/env python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""The layering of user/, as docs/architecture.md draws it, checked from
the #include lines: usage: layering.py [TOP] (default: the tree it is in).

  core/      the engine, the instance, the server: includes nothing of
             frontend/, target/, policy/, trace/, cli/, wire/, and no
             skeleton but the core's own
  frontend/  target/   modules: the public header (libbsteer.h), their own
             module's headers, the shared wire (wire/); never another
             module's, never core/'s insides
  policy/    trace/    the same, with their own skeletons
  wire/      protocol helpers: nothing of the tree but include/
  cli/       anything public; never core/'s insides
and no cycle among the tree's headers. Prints each violation; exits 1 if
there is one.
"""
import os
import re
import sys

top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
user = os.path.join(top, "user")
errors = []


def bpf_names(folder):
    d = os.path.join(top, "bpf", folder)
    return {f[:-len(".bpf.c")] for f in os.listdir(d) if f.endswith(".bpf.c")} if os.path.isdir(d) else set()


# Skeletons each folder may include (variants are built from a policy's source).
skels = {
    "core": bpf_names(""),
    "frontend": bpf_names("frontend"),
    "policy": bpf_names("policy") | {"mirror_rr", "mirror_lif"},
    "trace": bpf_names("trace"),
}
public = {"libbsteer.h", "compat.h"}
abi = set(os.listdir(os.path.join(top, "include")))


def module(name):
    """A module's name in frontend/ and target/: nbd_conn.c -> nbd."""
    return re.split(r"[_.]", name, 1)[0]


def allowed(folder, fname, inc):
    """None if @fname in user/@folder may include "@inc", else why not."""
    if inc in abi:
        return None
    if inc.endswith(".skel.h"):
        base = inc[:-len(".skel.h")]
        return None if base in skels.get(folder, set()) else \
            f"the skeleton of {base} belongs to another part"
    part = inc.split("/", 1)[0] if "/" in inc else None
    if folder == "wire":
        return None if part == "wire" else "wire/ includes only itself and include/"
    if inc in public:
        return None
    if part is None:
        return f"no such public header {inc}"
    if folder == "cli":
        return "core/'s insides are the core's alone" if part == "core" else None
    if part == folder:
        if folder in ("frontend", "target") and fname != "registry.c" and \
                module(os.path.basename(inc)) != module(fname):
            return f"{folder}/ modules do not include each other"
        return None
    if part == "wire" and folder in ("frontend", "target"):
        return None
    return f"{folder}/ may not include {part}/"


headers = {}
for folder in sorted(os.listdir(user)):
    path = os.path.join(user, folder)
    files = [(folder, f) for f in sorted(os.listdir(path))] if os.path.isdir(path) else []
    for folder_, f in files:
        if not f.endswith((".c", ".h")):
            continue
        incs = re.findall(r'^#include "([^"]+)"', open(os.path.join(path, f)).read(), re.M)
        for inc in incs:
            why = allowed(folder_, f, inc)
            if why:
                errors.append(f"user/{folder_}/{f}: #include \"{inc}\": {why}")
        if f.endswith(".h"):
            headers[f"{folder_}/{f}"] = [i for i in incs if "/" in i]
for f in ("libbsteer.h", "compat.h"):
    incs = re.findall(r'^#include "([^"]+)"', open(os.path.join(user, f)).read(), re.M)
    bad = [i for i in incs if i not in public and i not in abi]
    errors += [f"user/{f}: #include \"{i}\": the public header includes only the ABI" for i in bad]

# No cycle among the tree's headers.
state = {}


def visit(h, stack):
    if state.get(h) == 1:
        errors.append("include cycle: " + " -> ".join(stack[stack.index(h):] + [h]))
        return
    if state.get(h) == 2:
        return
    state[h] = 1
    for i in headers.get(h, []):
        visit(i, stack + [h])
    state[h] = 2


for h in sorted(headers):
    visit(h, [])

for e in errors:
    print(e)
print(f"layering: {len(errors)} violation(s) in user/")
sys.exit(1 if errors else 0)
