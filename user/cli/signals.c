// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Signals, for every command: SIGINT and SIGTERM only set a flag. */
#include <signal.h>
#include "cli/cli.h"

volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A peer that goes away is an error on that write, not our end. */
	signal(SIGPIPE, SIG_IGN);
}
