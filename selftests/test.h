/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Shared helpers for the C selftests. A test's main() returns TEST_PASS,
 * TEST_FAIL or TEST_SKIP (77); the ASSERT macros print what was expected
 * and what was got, and return whether the check held, so a test can
 * "if (!ASSERT_EQ(...)) goto cleanup;".
 */
#ifndef BSTEER_TEST_H
#define BSTEER_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_PASS	0
#define TEST_FAIL	1
#define TEST_SKIP	77

static int test_failures;

#define ASSERT_TRUE(cond, name) ({					\
	bool ___ok = (cond);						\
	if (!___ok) {							\
		fprintf(stderr, "%s:%d: FAIL %s: expected true: %s\n",	\
			__FILE__, __LINE__, name, #cond);		\
		test_failures++;					\
	}								\
	___ok;								\
})

#define ASSERT_EQ(got, want, name) ({					\
	long long ___g = (long long)(got), ___w = (long long)(want);	\
	bool ___ok = ___g == ___w;					\
	if (!___ok) {							\
		fprintf(stderr, "%s:%d: FAIL %s: got %lld, want %lld\n",	\
			__FILE__, __LINE__, name, ___g, ___w);		\
		test_failures++;					\
	}								\
	___ok;								\
})

#define ASSERT_NE(got, bad, name) ({					\
	long long ___g = (long long)(got), ___b = (long long)(bad);	\
	bool ___ok = ___g != ___b;					\
	if (!___ok) {							\
		fprintf(stderr, "%s:%d: FAIL %s: got %lld, want anything else\n", \
			__FILE__, __LINE__, name, ___g);		\
		test_failures++;					\
	}								\
	___ok;								\
})

#define ASSERT_GE(got, min, name) ({					\
	long long ___g = (long long)(got), ___m = (long long)(min);	\
	bool ___ok = ___g >= ___m;					\
	if (!___ok) {							\
		fprintf(stderr, "%s:%d: FAIL %s: got %lld, want >= %lld\n", \
			__FILE__, __LINE__, name, ___g, ___m);		\
		test_failures++;					\
	}								\
	___ok;								\
})

/* A unique instance name per test process. */
static inline void test_instance_name(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "t-%s-%d", what, getpid());
}

/* Skip only where BPF cannot run at all; in CI that is a failure. */
static inline int test_skip(const char *why)
{
	const char *ci = getenv("CI");

	fprintf(stderr, "SKIP: %s\n", why);
	return ci && !strcmp(ci, "true") ? TEST_FAIL : TEST_SKIP;
}

#endif /* BSTEER_TEST_H */
