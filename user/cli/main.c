// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* bsteer: the command line. Each subcommand lives in user/cmd_*.c. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "version.h"

static const struct bsteer_cmd cmds[] = {
	{ "serve", "serve block devices to NBD clients, steered by BPF", cmd_serve },
	{ "copy", "copy a file to one or more targets through the engine", cmd_copy },
	{ "stat", "show the counters of a running instance", cmd_stat },
	{ "policy", "list, load, swap and configure policies", cmd_policy },
	{ "cow", "show or commit a copy-on-write overlay", cmd_cow },
	{ "resync", "rebuild a mirror leg of a running server", cmd_resync },
	{ "leg", "add or remove a mirror leg of a running server", cmd_leg },
	{ "access", "add, remove and list the admission rules of a server", cmd_access },
	{ "list", "list the instances, alive and left behind", cmd_list },
	{ "clean", "remove the pins of instances whose owner is gone", cmd_clean },
	{ "trace", "who holds which registered io_uring buffer, for how long", cmd_trace },
	{ NULL, NULL, NULL },
};

static void usage(FILE *f)
{
	const struct bsteer_cmd *c;

	fprintf(f,
		"USAGE: bsteer COMMAND [ARGS...]\n\n"
		"eBPF-driven buffer steering for io_uring: BPF policies at the\n"
		"completion hook decide where each borrowed buffer slot goes.\n\n"
		"COMMANDS:\n");
	for (c = cmds; c->name; c++)
		fprintf(f, "  %-8s %s\n", c->name, c->summary);
	fprintf(f, "\nRun 'bsteer COMMAND --help' for a command's options and examples,\n"
		"'bsteer --version' for the version.\n");
}

int main(int argc, char **argv)
{
	const struct bsteer_cmd *c;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V") ||
	    !strcmp(argv[1], "version")) {
		printf("bsteer %s\n", BSTEER_VERSION);
		return 0;
	}
	opterr = 0;	/* each command says what was wrong, in one line */
	for (c = cmds; c->name; c++)
		if (!strcmp(argv[1], c->name))
			return c->fn(argc - 1, argv + 1);
	fprintf(stderr, "bsteer: unknown %s '%s'; try 'bsteer --help'\n",
		argv[1][0] == '-' ? "option" : "command", argv[1]);
	return 2;
}
