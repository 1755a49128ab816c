#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# make install DESTDIR=$T/root PREFIX=/usr from this build (nothing is
# built again: -o keeps the binary as it is): exactly the files expected
# (the binary, the policies' BPF objects, the two units with ExecStart at
# /usr/bin, the bash completion, the man pages that are built); the
# installed copy lists the policies, serves an export that nbdinfo reads,
# and its 'policy swap --dry-run' names the installed object, which is
# there and which bpftool loads into the live instance (the commands
# printed, run); without the objects it names both places it looked;
# make uninstall leaves no file behind.
. "$(dirname "$0")/lib.sh"
need_root
need_tools nbdinfo bpftool make
ROOT=$PWD
R=$T/root
INST=$(instance install)
MK=(make -s -C "$ROOT" OUTPUT="$BUILD" -o "$BUILD/bsteer" PREFIX=/usr DESTDIR="$R")
# The units in the build tree get /usr/bin: put the default back after.
AFTER_KILL+=("make -s -C '$ROOT' OUTPUT='$BUILD' -o '$BUILD/bsteer' '$BUILD/systemd/bsteer@.service'")

"${MK[@]}" install >"$T/install.log" 2>&1
check "make install: exit 0" [ $? -eq 0 ]
cat "$T/install.log" >&2

# --- the file list
{
	echo usr/bin/bsteer
	for p in cow mirror mirror_lif mirror_rr passthrough redirect stripe; do
		echo "usr/lib/bsteer/$p.bpf.o"
	done
	echo usr/lib/systemd/system/bsteer@.service
	echo usr/lib/systemd/system/bsteer@.socket
	echo usr/share/bash-completion/completions/bsteer
	for m in "$BUILD"/man/*.[78]; do
		[ -e "$m" ] && echo "usr/share/man/man${m##*.}/${m##*/}"
	done
} | sort >"$T/want"
(cd "$R" && find . -type f | sed 's|^\./||' | sort) >"$T/got"
check "install: the files expected, no other" diff -u "$T/want" "$T/got"
check "install: the binary is executable" [ -x "$R/usr/bin/bsteer" ]
check "install: the service runs /usr/bin/bsteer" \
	grep -qx 'ExecStart=/usr/bin/bsteer serve --config /etc/bsteer/%i.conf --instance %i' \
	"$R/usr/lib/systemd/system/bsteer@.service"
check "install: the completion is the source's" \
	cmp -s user/completion/bsteer.bash "$R/usr/share/bash-completion/completions/bsteer"

# --- the installed copy works without the build tree's layout
B=$R/usr/bin/bsteer
"$B" policy list >"$T/list.out" 2>&1
check "installed: policy list" grep -q '^mirror_rr ' "$T/list.out"
truncate -s 16M "$T/a.img"
BSTEER=$B start_serve "$T/s.sock" --instance "$INST" --export "m=$T/a.img,policy=mirror" || finish
check "installed: serves an export nbdinfo reads" \
	sh -c "nbdinfo --size 'nbd+unix:///m?socket=$T/s.sock' | grep -qx 16777216"

# Run from / so that the path is printed whole.
(cd / && "$B" policy swap "$INST" mirror_rr --dry-run) >"$T/dry.sh" 2>&1
check "installed: --dry-run exit 0" [ $? -eq 0 ]
obj=$(sed -n 's/^bpftool prog loadall \([^ ]*\) .*/\1/p' "$T/dry.sh")
check "installed: --dry-run names the installed object" [ "$obj" = "$R/usr/lib/bsteer/mirror_rr.bpf.o" ]
check "installed: that object is there" [ -f "$obj" ]
cat "$T/dry.sh" >&2
# And bpftool loads it: the instance then runs mirror_rr.
sh -e "$T/dry.sh" >"$T/dry.log" 2>&1
check "installed: the --dry-run commands run" [ $? -eq 0 ]
cat "$T/dry.log" >&2
"$B" policy show "$INST" >"$T/show.out" 2>&1
check "installed: the instance runs the installed mirror_rr" grep -q "hook program mirror_rr_tp" "$T/show.out"
check "installed: still serves" sh -c "nbdinfo --size 'nbd+unix:///m?socket=$T/s.sock' >/dev/null"
stop_serve

# --- without the objects, the error says where it looked
mv "$R/usr/lib/bsteer" "$R/usr/lib/bsteer.away"
"$B" policy swap "$INST" mirror --dry-run >"$T/noobj.out" 2>&1
check "no objects: --dry-run fails" [ $? -ne 0 ]
check "no objects: it names where it looked" \
	grep -qF "not in $R/usr/bin/../lib/bsteer/mirror.bpf.o nor in $R/usr/bin/bpf/mirror.bpf.o" "$T/noobj.out"
cat "$T/noobj.out" >&2
mv "$R/usr/lib/bsteer.away" "$R/usr/lib/bsteer"

# --- uninstall
"${MK[@]}" uninstall >"$T/uninstall.log" 2>&1
check "make uninstall: exit 0" [ $? -eq 0 ]
(cd "$R" && find . -type f) >"$T/left"
check "uninstall: no file left" [ ! -s "$T/left" ]
check "uninstall: no lib/bsteer folder left" [ ! -e "$R/usr/lib/bsteer" ]
cat "$T/left" >&2
finish
