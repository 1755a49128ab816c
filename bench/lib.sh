#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bench/lib.sh: what the bench scripts share; sourced, not run.

# served URI WHY LOG: wait up to 10 s for an NBD server to answer at URI;
# else say WHY ("bench/x.sh: nbdkit did not start"), show LOG, exit 1.
served() {
	for _ in $(seq 100); do
		nbdinfo --size "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "$2:" >&2
	cat "$3" >&2
	exit 1
}
