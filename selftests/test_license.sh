#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The furniture: a licence, an SPDX line at the top of every source file,
# and bsteer --version.
. "$(dirname "$0")/lib.sh"
git rev-parse --git-dir >/dev/null 2>&1 || skip "not a git checkout: no list of the source files"

check "LICENSE and the texts it names are there" \
	test -s LICENSE -a -s LICENSES/LGPL-2.1 -a -s LICENSES/BSD-2-Clause

# Every tracked text file but documentation, data and the generated
# vmlinux.h (LICENSE says why each is exempt).
missing=$(git ls-files | grep -Ev '\.(md|png|svg|csv|json)$|^vmlinux\.h$|^LICENSES?/|^LICENSE$|^VERSION$|^selftests/fuzz/|^\.gitignore$|^\.clang-format$' |
	while read -r f; do
		head -3 "$f" | grep -q 'SPDX-License-Identifier: ' || echo "$f"
	done)
check "every source file has an SPDX line in its first three${missing:+ (not: $missing)}" \
	test -z "$missing"

v=$("$BSTEER" --version)
check "bsteer --version prints the VERSION file's version ($v)" \
	grep -qx "bsteer $(cat VERSION)\( (git [0-9a-f]*\(-dirty\)\?)\)\?" <<<"$v"
check "bsteer -V says the same" test "$("$BSTEER" -V)" = "$v"
finish
