#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The layering of user/ (selftests/layering.py): the tree as it is passes;
# a copy with one violation planted at a time fails, naming it: the core
# including a frontend, a target including another target, the core's
# insides used by the CLI, a module's skeleton in the core, and a cycle.
. "$(dirname "$0")/lib.sh"
need_tools python3
CHECK=$PWD/selftests/layering.py

check "the tree keeps its layers" python3 "$CHECK" .
# The core and the ABI know no protocol: not even the word (issue 17).
check "the core and the ABI never name NBD" sh -c \
	'! grep -ril nbd user/core include/bsteer.h bpf/core.bpf.c bpf/bsteer.bpf.h'

plant() {	# plant WHAT PATTERN FILE LINE: add LINE to FILE of a copy; it must fail
	local what=$1 pat=$2 file=$3 line=$4
	rm -rf "$T/tree"
	mkdir -p "$T/tree"
	cp -r user include bpf "$T/tree/"
	sed -i "0,/^#include \"/s||$line\n#include \"|" "$T/tree/$file"
	python3 "$CHECK" "$T/tree" >"$T/out" 2>&1
	check "$what: refused" [ $? -eq 1 ]
	check "$what: named" grep -q "$pat" "$T/out"
}
plant "the core including a frontend" "core/ may not include frontend/" \
	user/core/server.c '#include "frontend/nbd.h"'
plant "a target including another" "target/ modules do not include each other" \
	user/target/nbd.c '#include "target/file.h"'
plant "the CLI using the core's insides" "core/'s insides" \
	user/cli/stat.c '#include "core/engine.h"'
plant "a frontend's skeleton in the core" "skeleton of nbd" \
	user/core/loader.c '#include "nbd.skel.h"'
plant "an include cycle" "include cycle" \
	user/target/file.h '#include "target/file.h"'
finish
