// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Small shared helpers: errors, time, sizes, /proc, a JSON writer. */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/capability.h>
#include "libbsteer.h"

static __thread char errbuf[512];

const char *bsteer_errbuf(void)
{
	return errbuf;
}

/* Formatted apart first: a message may quote the one it replaces. */
void bsteer_set_err(const char *fmt, ...)
{
	char msg[sizeof(errbuf)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(errbuf, msg, sizeof(errbuf));
}

__u64 bsteer_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* "4096", "256K", "1M", "2G" (powers of 1024). */
int bsteer_parse_size(const char *s, __u64 *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 0:
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] && strcasecmp(end + 1, "iB") && strcasecmp(end + 1, "B"))
		return -EINVAL;
	if (shift && v > (~0ull >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

void bsteer_human_bytes(double b, char *out, size_t len)
{
	const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;

	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(out, len, i ? "%.1f %s" : "%.0f %s", b, unit[i]);
}

/* Field 22 of /proc/PID/stat: start time in clock ticks since boot. */
int bsteer_proc_start_time(int pid, __u64 *out)
{
	char path[64], buf[1024];
	unsigned long long v;
	char *p;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	p = strrchr(buf, ')');	/* comm may hold spaces */
	if (!p)
		return -EIO;
	p++;
	for (i = 3; i <= 22; i++) {
		p = strchr(p, ' ');
		if (!p)
			return -EIO;
		p++;
	}
	if (sscanf(p, "%llu", &v) != 1)
		return -EIO;
	*out = v;
	return 0;
}

/* ---- JSON: enough for flat reports, escaped properly ---- */

static void json_sep(struct bsteer_json *j, const char *key)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = false;
	if (key)
		fprintf(j->f, "\"%s\":", key);
}

void json_begin(struct bsteer_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->first[0] = true;
	fputc('{', f);
}

static void json_open(struct bsteer_json *j, const char *key, char c)
{
	json_sep(j, key);
	fputc(c, j->f);
	if (j->depth < 15)
		j->depth++;
	j->first[j->depth] = true;
}

void json_obj(struct bsteer_json *j, const char *key)
{
	json_open(j, key, '{');
}

void json_arr(struct bsteer_json *j, const char *key)
{
	json_open(j, key, '[');
}

void json_end_obj(struct bsteer_json *j)
{
	fputc('}', j->f);
	if (j->depth)
		j->depth--;
}

void json_end_arr(struct bsteer_json *j)
{
	fputc(']', j->f);
	if (j->depth)
		j->depth--;
}

void json_u64(struct bsteer_json *j, const char *key, unsigned long long v)
{
	json_sep(j, key);
	fprintf(j->f, "%llu", v);
}

void json_i64(struct bsteer_json *j, const char *key, long long v)
{
	json_sep(j, key);
	fprintf(j->f, "%lld", v);
}

void json_dbl(struct bsteer_json *j, const char *key, double v)
{
	json_sep(j, key);
	fprintf(j->f, "%.6g", v);
}

void json_bool(struct bsteer_json *j, const char *key, bool v)
{
	json_sep(j, key);
	fputs(v ? "true" : "false", j->f);
}

void json_str(struct bsteer_json *j, const char *key, const char *v)
{
	const unsigned char *p;

	json_sep(j, key);
	fputc('"', j->f);
	for (p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(j->f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(j->f, "\\u%04x", *p);
		else
			fputc(*p, j->f);
	}
	fputc('"', j->f);
}

void json_finish(struct bsteer_json *j)
{
	fputs("}\n", j->f);
	fflush(j->f);
}

/* ---- privileges ---- */

#ifndef CAP_PERFMON
#define CAP_PERFMON	38
#endif
#ifndef CAP_BPF
#define CAP_BPF		39
#endif

static bool has_cap(const struct __user_cap_data_struct *d, int cap)
{
	return d[cap / 32].effective & (1u << (cap % 32));
}

/*
 * Loading and attaching the programs needs CAP_BPF and CAP_PERFMON (or
 * CAP_SYS_ADMIN, which covers both); mounting bpffs and the owner-only
 * pins under /sys/fs/bpf need CAP_SYS_ADMIN. Say which are missing, once,
 * before anything fails halfway with a libbpf message.
 */
bool bsteer_addr_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	return sa->sa_family == AF_INET6 &&
	       IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

int bsteer_check_privileges(const char *who)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {};
	char missing[96] = "";

	if (syscall(SYS_capget, &h, d))
		return 0;	/* cannot tell: let the kernel say */
	if (has_cap(d, CAP_SYS_ADMIN))
		return 0;
	if (!has_cap(d, CAP_BPF))
		strcat(missing, "CAP_BPF, ");
	if (!has_cap(d, CAP_PERFMON))
		strcat(missing, "CAP_PERFMON, ");
	strcat(missing, "CAP_SYS_ADMIN");
	fprintf(stderr,
		"%s: missing privileges: %s (BPF programs at io_uring's hooks, pins\n"
		"under /sys/fs/bpf/bsteer). Run it as root, e.g. 'sudo bsteer ...'.\n",
		who, missing);
	return -EPERM;
}

/* ---- log2 histograms ---- */

/* Slot i counts values v with 2^(i-1) <= v < 2^i; slot 0 counts zeros. */
unsigned int bsteer_log2_slot(__u64 v)
{
	unsigned int s = 0;

	while (v && s < BSTEER_HIST_SLOTS - 1) {
		v >>= 1;
		s++;
	}
	return s;
}

void bsteer_print_log2_hist(FILE *f, const __u64 *slots, const char *unit)
{
	int first = -1, last = -1, i, j, bar;
	__u64 max = 0;

	for (i = 0; i < BSTEER_HIST_SLOTS; i++) {
		if (!slots[i])
			continue;
		if (first < 0)
			first = i;
		last = i;
		if (slots[i] > max)
			max = slots[i];
	}
	if (first < 0) {
		fprintf(f, "    (no samples)\n");
		return;
	}
	fprintf(f, "%24s : %-10s %s\n", unit, "count", "distribution");
	for (i = first; i <= last; i++) {
		__u64 lo = i ? 1ull << (i - 1) : 0, hi = i ? (1ull << i) - 1 : 0;

		bar = (int)(slots[i] * 40 / max);
		if (slots[i] && !bar)
			bar = 1;
		fprintf(f, "%11llu -> %-10llu : %-10llu |", (unsigned long long)lo,
			(unsigned long long)hi, (unsigned long long)slots[i]);
		for (j = 0; j < 40; j++)
			fputc(j < bar ? '*' : ' ', f);
		fputs("|\n", f);
	}
}

void json_hist(struct bsteer_json *j, const char *key, const __u64 *slots)
{
	int i;

	json_arr(j, key);
	for (i = 0; i < BSTEER_HIST_SLOTS; i++) {
		if (!slots[i])
			continue;
		json_obj(j, NULL);
		json_u64(j, "lo", i ? 1ull << (i - 1) : 0);
		json_u64(j, "hi", i ? (1ull << i) - 1 : 0);
		json_u64(j, "count", slots[i]);
		json_end_obj(j);
	}
	json_end_arr(j);
}

/* See libbsteer.h: the installed layout first, then the build tree's. */
int bsteer_bpf_object_path(const char *name, char *out, size_t len)
{
	static const char *const where[] = { "../lib/bsteer", "bpf" };
	char exe[PATH_MAX], real[PATH_MAX], tried[2][PATH_MAX + 80];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *dir;
	size_t i;

	if (n < 0) {
		int err = -errno;

		bsteer_set_err("cannot find %s.bpf.o: /proc/self/exe: %s", name,
			       strerror(-err));
		return err;
	}
	exe[n] = 0;
	dir = dirname(exe);
	for (i = 0; i < 2; i++) {
		snprintf(tried[i], sizeof(tried[i]), "%s/%s/%s.bpf.o", dir,
			 where[i], name);
		if (!access(tried[i], R_OK) && realpath(tried[i], real) &&
		    strlen(real) < len) {
			memcpy(out, real, strlen(real) + 1);
			return 0;
		}
	}
	bsteer_set_err("cannot find %s.bpf.o: not in %s nor in %s", name,
		       tried[0], tried[1]);
	return -ENOENT;
}
