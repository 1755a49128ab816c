#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The bash completion (user/completion/bsteer.bash), sourced and driven by
# COMP_WORDS/COMP_CWORD as bash would: the commands are those of
# 'bsteer --help' and a command's options those of its --help, exactly;
# an option's value from its choices (auto|all|off); the name of a live
# instance (a server started here) where a command takes an INSTANCE; the
# policies of 'bsteer policy list' after 'policy swap INSTANCE', 'policy
# load INSTANCE', --policy and --export ...,policy= (split at '=' by bash,
# and not split).
. "$(dirname "$0")/lib.sh"
need_root
INST=$(instance compl)
# shellcheck source=../user/completion/bsteer.bash
. user/completion/bsteer.bash
complete -p bsteer >"$T/reg" 2>&1
check "the script registers _bsteer for bsteer" grep -q -- '-F _bsteer bsteer$' "$T/reg"

# comp WORD...: complete the last word; the candidates, one a line, sorted.
comp() {
	COMP_WORDS=("$BSTEER" "$@")
	COMP_CWORD=$#
	COMPREPLY=()
	_bsteer
	printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort
}
# has WORD WORDS...: is WORD one of WORDS (a line of comp's output each)?
has() { grep -qxF -- "$1" <<<"$2"; }
lacks() { ! has "$@"; }
# all_start PREFIX WORDS: WORDS are not empty, and each starts with PREFIX.
all_start() { [ -n "$2" ] && ! grep -qv "^$1" <<<"$2"; }

# --- commands and options, against the binary's own --help
"$BSTEER" --help | sed -n '/^COMMANDS:/,/^$/s/^  \([a-z]*\) .*/\1/p' | sort >"$T/cmds"
check "there are commands to compare" [ "$(wc -l <"$T/cmds")" -ge 8 ]
comp "" >"$T/got"
check "commands: every one of --help, no other" diff -u "$T/cmds" "$T/got"
check "commands: 's' gives serve and stat" [ "$(comp s | paste -sd' ')" = "serve stat" ]
check "top-level options: --version" [ "$(comp --ver)" = --version ]
for cmd in $(cat "$T/cmds"); do
	"$BSTEER" "$cmd" --help | grep -oE '^ +(-[a-zA-Z], )?--[a-z][a-z-]*' |
		sed 's/.*\(--\)/\1/' | sort -u >"$T/opts"
	comp "$cmd" -- >"$T/got"
	check "$cmd: the options of its --help, no other" diff -u "$T/opts" "$T/got"
done
check "stat: --js gives --json" [ "$(comp stat x --js)" = --json ]
check "serve --inline-io: its choices" [ "$(comp serve --inline-io '' | paste -sd' ')" = "all auto off" ]
check "serve --splice=: its choices (split at =)" [ "$(comp serve --splice = '' | paste -sd' ')" = "auto off" ]
check "policy: its subcommands" [ "$(comp policy '' | paste -sd' ')" = "config list load show swap" ]
check "cow: its subcommands" [ "$(comp cow '' | paste -sd' ')" = "commit status" ]

# --- instance names: a live one
truncate -s 16M "$T/a.img"
start_serve "$T/s.sock" --instance "$INST" --export "m=$T/a.img" || finish
for words in "stat" "resync" "leg add" "leg remove" "clean" "policy show" "policy swap" "policy load" \
	"policy config" "trace --instance" "stat --json"; do
	# shellcheck disable=SC2086 # the words, split
	check "$words: the instance $INST" has "$INST" "$(comp $words '')"
done
check "stat t-compl: only that prefix" all_start t-compl "$(comp stat t-compl)"
check "list: takes no instance" [ -z "$(comp list '')" ]
check "policy swap INSTANCE: not an instance again" lacks "$INST" "$(comp policy swap "$INST" '')"

# --- policy names
"$BSTEER" policy list | awk 'NR > 1 { print $1 }' | sort >"$T/pols"
check "there are policies to compare" [ "$(wc -l <"$T/pols")" -ge 5 ]
comp policy swap "$INST" '' | grep -vE '/$|\.bpf\.o$' >"$T/got"
check "policy swap INSTANCE: every policy of 'policy list'" diff -u "$T/pols" "$T/got"
check "policy load INSTANCE mi: the mirrors" \
	[ "$(comp policy load "$INST" mi | paste -sd' ')" = "mirror mirror_lif mirror_rr" ]
check "policy swap -n INSTANCE st: stripe (an option between)" [ "$(comp policy swap -n "$INST" st)" = stripe ]
check "copy --policy pa: passthrough" [ "$(comp copy --policy pa)" = passthrough ]
check "serve --export a=/x,policy=mi, split at '=': the mirrors, after the '='" \
	[ "$(comp serve --export a = /x,policy = mi | paste -sd' ')" = "mirror mirror_lif mirror_rr" ]
comp serve --export a = /x,policy = >"$T/got"
check "serve --export a=/x,policy=, split at '=': every policy" diff -u "$T/pols" "$T/got"
check "serve --export=a=/x,policy=re: redirect" [ "$(comp serve --export = a = /x,policy = re)" = redirect ]
WB=$COMP_WORDBREAKS
COMP_WORDBREAKS=$' \t\n'
check "serve --export a=/x,policy=mi, not split: the whole word" \
	[ "$(comp serve --export a=/x,policy=mi | paste -sd' ')" = "a=/x,policy=mirror a=/x,policy=mirror_lif a=/x,policy=mirror_rr" ]
check "serve --export=a=/x,policy=co, not split: the whole word" \
	[ "$(comp serve --export=a=/x,policy=co)" = "--export=a=/x,policy=cow" ]
COMP_WORDBREAKS=$WB
stop_serve
check "stat: the instance gone with its server" lacks "$INST" "$(comp stat '')"
finish
