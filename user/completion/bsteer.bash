# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bash completion for bsteer (installed as
# $(PREFIX)/share/bash-completion/completions/bsteer; or source it).
#
# Nothing here lists a command or an option: the commands come from
# 'bsteer --help', each command's options, their values and its arguments
# from 'bsteer COMMAND --help' (the OPTIONS rows and the USAGE lines), run
# when TAB is pressed, so the completion follows the binary it completes.
# Instances are the folders under /sys/fs/bpf/bsteer/, policies the names
# 'bsteer policy list' prints. It needs no bash-completion helpers.
# shellcheck shell=bash

_bsteer_instances() {
	local d
	for d in /sys/fs/bpf/bsteer/*/; do
		[[ -d $d ]] || continue
		d=${d%/}
		printf '%s\n' "${d##*/}"
	done
}

_bsteer_policies() {	# _bsteer_policies BIN: the NAME column
	"$1" policy list 2>/dev/null | awk 'NR > 1 && NF { print $1 }'
}

# _bsteer_words: COMP_WORDS with the words bash split at '=' and ':' (in
# COMP_WORDBREAKS) joined again, so "--export", "a", "=", "/x,policy", "="
# reads "--export", "a=/x,policy=". Sets _bw (the words) and _bc (the
# index of the word under the cursor).
_bsteer_words() {
	local i w prev=
	_bw=() _bc=0
	for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
		w=${COMP_WORDS[i]}
		if ((i > 0)) && [[ $w =~ ^[=:]+$ || $prev =~ ^[=:]+$ ]] && ((${#_bw[@]})); then
			_bw[${#_bw[@]} - 1]+=$w
		else
			_bw+=("$w")
		fi
		((i == COMP_CWORD)) && _bc=$((${#_bw[@]} - 1))
		prev=$w
	done
	((COMP_CWORD >= ${#COMP_WORDS[@]})) && { _bw+=(""); _bc=$((${#_bw[@]} - 1)); }
}

# _bsteer_reply CUR CANDIDATE...: those that start with CUR, less what
# readline keeps of CUR (up to its last '=' or ':' that breaks words).
_bsteer_reply() {
	local cur=$1 c keep=
	local -A seen=()
	shift
	if [[ $cur =~ ^(.*[=:]) ]]; then
		keep=${BASH_REMATCH[1]}
		# Only the break characters bash really splits at.
		while [[ -n $keep && $COMP_WORDBREAKS != *"${keep: -1}"* ]]; do
			keep=${keep%?}
			[[ $keep =~ ^(.*[=:]) ]] && keep=${BASH_REMATCH[1]} || keep=
		done
	fi
	for c in "$@"; do
		[[ $c == "$cur"* && -z ${seen[x$c]:-} ]] || continue
		seen[x$c]=1
		COMPREPLY+=("${c#"$keep"}")
		# A folder or "policy=" goes on: no space after it.
		[[ $c == */ || $c == *= ]] && compopt -o nospace 2>/dev/null
	done
	return 0
}

# _bsteer_files PREFIX PART [-d|-o]: files (or folders; or folders and
# BPF objects) that complete PART, each with PREFIX before it.
_bsteer_files() {
	local f
	while IFS= read -r f; do
		[[ -d $f ]] && f+=/
		printf '%s\n' "$1$f"
	done < <(case ${3:--f} in
		-o) compgen -d -- "$2"; compgen -f -X '!*.bpf.o' -- "$2" ;;
		*) compgen "${3:--f}" -- "$2" ;;
		esac)
}

# _bsteer_value BIN OPTION PLACEHOLDER CUR: an option's value. The
# placeholder is what --help shows after the option (NAME, auto|off, ...).
_bsteer_value() {
	local bin=$1 opt=$2 ph=$3 cur=$4 pre part c
	local -a cands=()
	if [[ $opt == --instance || $ph == INSTANCE ]]; then
		mapfile -t cands < <(_bsteer_instances)
	elif [[ $ph == *'|'* && $ph != *[A-Z]* ]]; then
		IFS='|' read -ra cands <<<"$ph"
	elif [[ $opt == --export ]]; then
		# NAME=TARGET[,TARGET...][,TOKEN...]: a policy after policy=,
		# else a file after the last comma (or the NAME=).
		if [[ $cur == *=* ]]; then
			pre=${cur%,*}
			[[ $pre == "$cur" ]] && pre=${cur%%=*}= || pre+=,
			part=${cur#"$pre"}
			if [[ $part == policy=* ]]; then
				for c in $(_bsteer_policies "$bin"); do
					cands+=("${pre}policy=$c")
				done
			else
				mapfile -t cands < <(_bsteer_files "$pre" "$part")
				cands+=("${pre}policy=" "${pre}ro")
			fi
		fi
	elif [[ $opt == --policy || $ph == P ]]; then
		mapfile -t cands < <(_bsteer_policies "$bin"; _bsteer_files "" "$cur" -o)
	elif [[ $ph == DIR ]]; then
		mapfile -t cands < <(_bsteer_files "" "$cur" -d)
	elif [[ $ph =~ FILE|PATH|DST|SRC ]]; then
		mapfile -t cands < <(_bsteer_files "" "$cur")
	fi
	_bsteer_reply "$cur" "${cands[@]}"
}

_bsteer() {
	local bin=${COMP_WORDS[0]} cmd help line re i w cur opt ph
	local -a _bw lits=() types=() usages=() pos=() cands=()
	local -A takes=() long=()
	local _bc
	COMPREPLY=()
	[[ $bin == "~"/* ]] && bin=$HOME/${bin#"~"/}
	[[ -x $bin ]] || bin=$(type -P "$bin") || bin=$(type -P bsteer) || return 0
	_bsteer_words
	cur=${_bw[_bc]}

	if ((_bc == 1)); then
		if [[ $cur == -* ]]; then
			_bsteer_reply "$cur" --help --version
		else
			mapfile -t cands < <("$bin" --help 2>/dev/null |
				sed -n '/^COMMANDS:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
			_bsteer_reply "$cur" "${cands[@]}"
		fi
		return 0
	fi
	cmd=${_bw[1]}
	help=$("$bin" "$cmd" --help 2>/dev/null) || return 0

	# The options: "  -i, --instance NAME   text" takes a value; two
	# spaces after the name (or none) make it a flag.
	re='^ +(-([a-zA-Z]), )?(--[a-z][a-z-]*)( ([^ ]+))?'
	while IFS= read -r line; do
		[[ $line =~ $re ]] || continue
		takes[${BASH_REMATCH[3]}]=${BASH_REMATCH[5]}
		[[ -n ${BASH_REMATCH[2]} ]] && long[-${BASH_REMATCH[2]}]=${BASH_REMATCH[3]}
	done <<<"$help"

	# The words typed so far: options and their values out, the rest are
	# the positional arguments.
	for ((i = 2; i < _bc; i++)); do
		w=${_bw[i]}
		[[ $w == -- ]] && return 0	# trace -- COMMAND: not ours
		if [[ $w == -?* ]]; then
			opt=$w
			[[ $w == -? ]] && opt=${long[$w]:-$w}
			[[ $opt != *=* && -n ${takes[$opt]:-} ]] && ((i++))
			continue
		fi
		pos+=("$w")
	done

	# The value of an option: after it, or after "--option=".
	w=${_bw[_bc - 1]} opt=${_bw[_bc - 1]}
	[[ $w == -? ]] && opt=${long[$w]:-$w}
	if [[ $opt == --?* && -n ${takes[$opt]:-} ]]; then
		_bsteer_value "$bin" "$opt" "${takes[$opt]}" "$cur"
		return 0
	fi
	if [[ $cur == --*=* ]]; then
		opt=${cur%%=*}
		local -a sub=()
		COMPREPLY=()
		[[ -n ${takes[$opt]:-} ]] || return 0
		_bsteer_value "$bin" "$opt" "${takes[$opt]}" "${cur#*=}"
		# Put "--option=" back before each, unless bash keeps it.
		if [[ $COMP_WORDBREAKS != *=* ]]; then
			for w in "${COMPREPLY[@]}"; do sub+=("$opt=$w"); done
			COMPREPLY=("${sub[@]}")
		fi
		return 0
	fi
	if [[ $cur == -* ]]; then
		_bsteer_reply "$cur" "${!takes[@]}"
		return 0
	fi

	# A positional argument: what the USAGE lines name at its place
	# ("bsteer policy swap INSTANCE NAME|FILE.bpf.o [--dry-run]" gives
	# swap, INSTANCE, NAME|FILE.bpf.o). Bracketed options are left out;
	# a lower-case word is a subcommand, a trailing "..." repeats. Only the
# USAGE block, up to its first empty line (EXAMPLES look alike).
	while IFS= read -r line; do
		[[ -z $line ]] && break		# the end of the USAGE block
		[[ $line =~ ^(USAGE:)?\ +bsteer\ "$cmd"(\ |$)(.*) ]] || continue
		local depth=0 skip=0 t
		local -a toks=() raw=()
		read -ra raw <<<"${BASH_REMATCH[3]}"
		for t in "${raw[@]}"; do
			if ((depth)) || [[ $t == '['-* || $t == '[OPTIONS]' ]]; then
				w=${t//[^[]/}; depth=$((depth + ${#w}))
				w=${t//[^]]/}; depth=$((depth - ${#w}))
				continue
			fi
			((skip)) && { skip=0; continue; }	# the DST of "--to DST"
			[[ $t == -* ]] && { skip=1; continue; }
			toks+=("${t//[][]/}")
		done
		usages+=("${toks[*]}")
	done <<<"$help"
	((${#usages[@]})) || return 0

	local n=${#pos[@]} u
	for u in "${usages[@]}"; do
		local -a toks=()
		read -ra toks <<<"$u"
		((${#toks[@]})) || continue
		# A subcommand must be the one typed.
		if [[ ${toks[0]} =~ ^[a-z] ]]; then
			if ((n == 0)); then
				lits+=("${toks[0]}")
				continue
			fi
			[[ ${toks[0]} == "${pos[0]}" ]] || continue
		fi
		if ((n < ${#toks[@]})); then
			types+=("${toks[n]}")
		elif [[ ${toks[-1]} == *... ]]; then
			types+=("${toks[-1]}")
		fi
	done
	cands=("${lits[@]}")
	for ph in "${types[@]}"; do
		ph=${ph%...}
		case $ph in
		INSTANCE) mapfile -t -O "${#cands[@]}" cands < <(_bsteer_instances) ;;
		*NAME*FILE*|P) mapfile -t -O "${#cands[@]}" cands < <(_bsteer_policies "$bin"; _bsteer_files "" "$cur" -o) ;;
		*=*|EXPORT|LEG|[a-z]*) ;;
		*) mapfile -t -O "${#cands[@]}" cands < <(_bsteer_files "" "$cur") ;;
		esac
	done
	_bsteer_reply "$cur" "${cands[@]}"
	return 0
}

complete -F _bsteer bsteer
