#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Run the hook microbenchmark: builds build/bench/hookbench if needed,
# makes sure bpffs is mounted, and passes every argument through.
#   bench/hooks.sh --iters 50000 --rounds 3
#   bench/hooks.sh --json
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/build/bench/hookbench"

# make decides whether anything is stale; its output would pollute --json.
if ! make -C "$root" -s bench >&2; then
	echo "hooks.sh: build failed (make bench)" >&2
	exit 1
fi

# --help needs neither root nor bpffs.
for a in "$@"; do
	case "$a" in
	-h|--help) exec "$bin" "$@" ;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "hooks.sh: must run as root (hookbench loads BPF programs)" >&2
	exit 1
fi
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

exec "$bin" "$@"
