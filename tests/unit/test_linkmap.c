/*
 * test_linkmap.c - core/linkmap.c: the (st_dev, st_ino) -> UIDs map of hard-linked objects:
 * set and get, one entry per UID (a UID set under another key moves), exact deletes, forgets
 * by UID, the bound, and growth past the initial buckets.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/linkmap.h"

static struct dfsr_uid uid_of(unsigned n)
{
	struct dfsr_uid u;

	memset(&u, 0, sizeof(u));
	memcpy(u.b, &n, sizeof(n));
	u.b[DFSR_UID_LEN - 1] = 0x5a; /* never zero */
	return u;
}

static bool has(const struct dfsr_uid *v, size_t n, const struct dfsr_uid *u)
{
	for (size_t i = 0; i < n; i++)
		if (dfsr_uid_equal(&v[i], u))
			return true;
	return false;
}

static void set_get_move(void **state)
{
	struct linkmap *m = linkmap_new(16);
	struct dfsr_uid a = uid_of(1), b = uid_of(2), zero = { 0 }, out[4];

	(void)state;
	assert_non_null(m);
	assert_int_equal(linkmap_get(m, 1, 100, out, 4), 0);
	assert_int_equal(linkmap_set(m, 1, 100, &a), 0);
	assert_int_equal(linkmap_set(m, 1, 100, &b), 0);
	assert_int_equal(linkmap_set(m, 1, 100, &a), 0); /* again: no second entry */
	assert_int_equal(linkmap_set(m, 1, 100, &zero), 0);
	assert_int_equal(linkmap_count(m), 2);
	assert_int_equal(linkmap_get(m, 1, 100, out, 4), 2);
	assert_true(has(out, 2, &a) && has(out, 2, &b));
	/* the same inode number on another device is another object */
	assert_int_equal(linkmap_get(m, 2, 100, out, 4), 0);
	/* more than fits in @out: counted, only @max written */
	assert_int_equal(linkmap_get(m, 1, 100, out, 1), 2);

	/* b now names another object: moved, not copied */
	assert_int_equal(linkmap_set(m, 1, 200, &b), 0);
	assert_int_equal(linkmap_count(m), 2);
	assert_int_equal(linkmap_get(m, 1, 100, out, 4), 1);
	assert_true(dfsr_uid_equal(&out[0], &a));
	assert_int_equal(linkmap_get(m, 1, 200, out, 4), 1);
	assert_true(dfsr_uid_equal(&out[0], &b));
	linkmap_free(m);
	linkmap_free(NULL);
}

static void del_and_forget(void **state)
{
	struct linkmap *m = linkmap_new(16);
	struct dfsr_uid a = uid_of(1), b = uid_of(2), out[4];

	(void)state;
	assert_non_null(m);
	assert_int_equal(linkmap_set(m, 1, 100, &a), 0);
	assert_int_equal(linkmap_set(m, 1, 100, &b), 0);
	/* an exact delete under another key leaves the entry alone */
	linkmap_del(m, 1, 999, &a);
	assert_int_equal(linkmap_count(m), 2);
	linkmap_del(m, 1, 100, &a);
	assert_int_equal(linkmap_count(m), 1);
	assert_int_equal(linkmap_get(m, 1, 100, out, 4), 1);
	assert_true(dfsr_uid_equal(&out[0], &b));
	linkmap_forget(m, &a); /* not there: nothing happens */
	linkmap_forget(m, &b);
	assert_int_equal(linkmap_count(m), 0);
	assert_int_equal(linkmap_get(m, 1, 100, out, 4), 0);
	linkmap_free(m);
}

static void bounded_and_grows(void **state)
{
	enum {
		MAX = 1000
	}; /* past the initial 64 buckets: the tables double several times */
	struct linkmap *m = linkmap_new(MAX);
	struct dfsr_uid u, out[2];

	(void)state;
	assert_non_null(m);
	for (unsigned i = 0; i < MAX; i++) {
		u = uid_of(i + 1);
		assert_int_equal(linkmap_set(m, 7, i / 2, &u), 0); /* two names per object */
	}
	u = uid_of(MAX + 1);
	assert_int_equal(linkmap_set(m, 7, 5000, &u), -ENOSPC);
	u = uid_of(1);
	assert_int_equal(linkmap_set(m, 7, 5000, &u), 0); /* a move needs no room */
	assert_int_equal(linkmap_count(m), MAX);
	for (unsigned i = 1; i < MAX / 2; i++) {
		struct dfsr_uid x = uid_of(2 * i + 1), y = uid_of(2 * i + 2);

		assert_int_equal(linkmap_get(m, 7, i, out, 2), 2);
		assert_true(has(out, 2, &x) && has(out, 2, &y));
	}
	linkmap_free(m); /* frees every entry (ASan checks) */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(set_get_move),
		cmocka_unit_test(del_and_forget),
		cmocka_unit_test(bounded_and_grows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
