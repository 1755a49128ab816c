#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Bad input to bsteer copy: a clear error, a non-zero exit, and no output
# touched.
. "$(dirname "$0")/lib.sh"
need_root

head -c 100000 /dev/urandom >"$T/src"
echo keep >"$T/existing"
mkdir "$T/dir"

expect_error() {	# expect_error MESSAGE_REGEX ARGS...
	local re=$1
	shift
	if "$BSTEER" copy "$@" >"$T/out" 2>"$T/err"; then
		fail "copy $* succeeded"
		return
	fi
	grep -qiE -- "$re" "$T/err" && echo "ok: copy $* -> $(head -1 "$T/err")" ||
		fail "copy $*: message '$(cat "$T/err")' does not match '$re'"
	[ "$(cat "$T/existing")" = keep ] || fail "copy $* touched an output"
}

expect_error "cannot read .*missing.*No such file" "$T/missing" --to "$T/existing"
expect_error "is a directory" "$T/src" --to "$T/existing" --to "$T/dir"
expect_error "no target" "$T/src"
expect_error "multiple of 4096" "$T/src" --to "$T/existing" --slot-size 5000
expect_error "--slot-size: .lots. is not a size" "$T/src" --to "$T/existing" --slot-size lots
expect_error "is a directory" "$T/dir" --to "$T/existing"
expect_error "is the source" "$T/src" --to "$T/existing" --to "$T/src"
expect_error "given twice" "$T/src" --to "$T/existing" --to "$T/existing"
expect_error "unknown policy" "$T/src" --to "$T/existing" --policy nosuch
expect_error "--instance: .a/b. is not a valid name" "$T/src" --to "$T/existing" --instance "a/b"
head -c 5000 /dev/urandom >"$T/odd"
expect_error "direct needs a size that is a multiple of 4096" "$T/odd" --to "$T/existing" --direct
expect_error "direct needs SRC to be a file" - --to "$T/existing" --direct </dev/null
check "help shows examples" sh -c "'$BSTEER' copy --help | grep -q EXAMPLES"
finish
