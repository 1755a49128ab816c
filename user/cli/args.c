// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * What every command does with its arguments: one line for a usage error,
 * naming the command and pointing at its --help (exit status 2, as getopt
 * programs do), and one checked parser for every number.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bsteer %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; try 'bsteer %s --help'\n", cmd);
	return 2;
}

int cli_bad_option(const char *cmd, char **argv)
{
	const char *opt = optind > 0 ? argv[optind - 1] : "?";

	/* getopt's own message is off (opterr = 0): ours is one line. */
	if (optopt && opt[0] == '-' && opt[1] != '-' && !strchr(opt + 1, optopt))
		return cli_usage(cmd, "unknown option '-%c'", optopt);
	if (optopt && opt[0] == '-' && opt[1] != '-')
		return cli_usage(cmd, "unknown option '-%c' or a value missing", optopt);
	return cli_usage(cmd, "unknown option '%s' or a value missing", opt);
}

/* The value of @s with a K, M, G or T suffix (powers of 1024) if @suffix. */
static int scan_u64(const char *s, bool suffix, __u64 *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (suffix && *end) {
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return -EINVAL;
		}
		end++;
		if (*end == 'i' && end[1] == 'B')	/* KiB, MiB, ... */
			end += 2;
		else if (*end == 'B' || *end == 'b')
			end++;
	}
	if (*end)
		return -EINVAL;
	if (shift && v > (~0ull >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int cli_u64(const char *cmd, const char *opt, const char *val, __u64 min, __u64 max,
	    unsigned flags, __u64 *out)
{
	bool suffix = flags & CLI_SIZE;
	int err = scan_u64(val, suffix, out);

	if (err == -EINVAL)
		return -cli_usage(cmd, "%s: '%s' is not a %s (allowed: %llu..%llu%s)", opt, val,
				  suffix ? "size" : "whole number", (unsigned long long)min,
				  (unsigned long long)max, suffix ? ", K/M/G/T suffixes" : "");
	if (err || *out < min || *out > max)
		return -cli_usage(cmd, "%s: '%s' is out of range (allowed: %llu..%llu)", opt,
				  val, (unsigned long long)min, (unsigned long long)max);
	return 0;
}

int cli_secs(const char *cmd, const char *opt, const char *val, double min, double max,
	     double *out)
{
	char *end;

	errno = 0;
	*out = *val && *val != ' ' ? strtod(val, &end) : 0;
	if (!*val || *val == ' ' || errno || *end || !(*out >= min && *out <= max))
		return -cli_usage(cmd, "%s: '%s' is not a number of seconds in %g..%g", opt,
				  val, min, max);
	return 0;
}
