/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef BSTEER_TEST_H
#define BSTEER_TEST_H
#include <stdio.h>
#define TEST_PASS 0
#define TEST_FAIL 1
#define TEST_SKIP 77
#endif
