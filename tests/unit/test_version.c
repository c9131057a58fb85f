/*
 * test_version.c - core/version.c: GVSN ordering and the version-vector algebra (raise,
 * get, merge, compare including concurrent, contains) and the validity check decoders use.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/version.h"

static struct dfsr_uid id(uint8_t n)
{
	struct dfsr_uid u;

	memset(&u, 0, sizeof(u));
	u.b[0] = n;
	u.b[15] = 0x5a;
	return u;
}

static void gvsn_order(void **state)
{
	struct version_gvsn a = { .db = id(1), .counter = 5 };
	struct version_gvsn b = { .db = id(1), .counter = 6 };
	struct version_gvsn c = { .db = id(2), .counter = 1 };

	(void)state;
	assert_true(version_gvsn_cmp(&a, &b) < 0);
	assert_true(version_gvsn_cmp(&b, &a) > 0);
	assert_true(version_gvsn_cmp(&b, &c) < 0); /* db id first */
	assert_int_equal(version_gvsn_cmp(&a, &a), 0);
}

static void raise_get_sorted(void **state)
{
	struct version_vector v;
	struct dfsr_uid a = id(3), b = id(1), c = id(2), zero;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	version_vector_init(&v);
	assert_int_equal(version_vector_get(&v, &a), 0);
	assert_int_equal(version_vector_raise(&v, &a, 7), 0);
	assert_int_equal(version_vector_raise(&v, &b, 2), 0);
	assert_int_equal(version_vector_raise(&v, &c, 4), 0);
	assert_int_equal(version_vector_raise(&v, &a, 5), 0); /* lower: no change */
	assert_int_equal(v.n, 3);
	assert_int_equal(version_vector_get(&v, &a), 7);
	assert_int_equal(version_vector_get(&v, &b), 2);
	assert_int_equal(version_vector_get(&v, &c), 4);
	assert_true(version_vector_valid(&v));
	assert_int_equal(v.v[0].db.b[0], 1); /* sorted */
	assert_int_equal(v.v[2].db.b[0], 3);
	assert_int_equal(version_vector_raise(&v, &zero, 1), -EINVAL);
	assert_int_equal(version_vector_raise(&v, &a, 0), -EINVAL);
	/* lowering: never raises, removes an entry lowered to 0, ignores an absent one */
	version_vector_lower(&v, &a, 9);
	assert_int_equal(version_vector_get(&v, &a), 7);
	version_vector_lower(&v, &a, 6);
	assert_int_equal(version_vector_get(&v, &a), 6);
	version_vector_lower(&v, &c, 0);
	assert_int_equal(v.n, 2);
	assert_int_equal(version_vector_get(&v, &c), 0);
	version_vector_lower(&v, &c, 3);
	assert_int_equal(v.n, 2);
	assert_true(version_vector_valid(&v));
	version_vector_release(&v);
	assert_int_equal(v.n, 0);
}

static void compare_cases(void **state)
{
	struct version_vector a, b;
	struct dfsr_uid x = id(1), y = id(2);

	(void)state;
	version_vector_init(&a);
	version_vector_init(&b);
	assert_int_equal(version_vector_compare(&a, &b), VERSION_EQUAL);
	assert_int_equal(version_vector_raise(&a, &x, 1), 0);
	assert_int_equal(version_vector_compare(&a, &b), VERSION_DOMINATES);
	assert_int_equal(version_vector_compare(&b, &a), VERSION_DOMINATED);
	assert_int_equal(version_vector_raise(&b, &x, 1), 0);
	assert_int_equal(version_vector_compare(&a, &b), VERSION_EQUAL);
	assert_int_equal(version_vector_raise(&a, &x, 2), 0);
	assert_int_equal(version_vector_raise(&b, &y, 1), 0);
	assert_int_equal(version_vector_compare(&a, &b), VERSION_CONCURRENT);
	assert_int_equal(version_vector_compare(&b, &a), VERSION_CONCURRENT);
	assert_int_equal(version_vector_merge(&a, &b), 0);
	assert_int_equal(version_vector_get(&a, &x), 2);
	assert_int_equal(version_vector_get(&a, &y), 1);
	assert_int_equal(version_vector_compare(&a, &b), VERSION_DOMINATES);
	assert_int_equal(version_vector_merge(&b, &a), 0);
	assert_int_equal(version_vector_compare(&a, &b), VERSION_EQUAL);
	version_vector_release(&a);
	version_vector_release(&b);
}

static void contains_and_copy(void **state)
{
	struct version_vector a, c;
	struct dfsr_uid x = id(1), y = id(9);
	struct version_gvsn g1 = { .db = x, .counter = 3 }, g2 = { .db = x, .counter = 4 };
	struct version_gvsn g3 = { .db = y, .counter = 1 };

	(void)state;
	version_vector_init(&a);
	version_vector_init(&c);
	assert_int_equal(version_vector_raise(&a, &x, 3), 0);
	assert_true(version_vector_contains(&a, &g1));
	assert_false(version_vector_contains(&a, &g2));
	assert_false(version_vector_contains(&a, &g3));
	assert_int_equal(version_vector_copy(&c, &a), 0);
	assert_int_equal(version_vector_compare(&a, &c), VERSION_EQUAL);
	assert_int_equal(version_vector_raise(&c, &x, 4), 0);
	assert_int_equal(version_vector_get(&a, &x), 3); /* deep copy */
	version_vector_release(&a);
	version_vector_release(&c);
}

static void bounded_and_validity(void **state)
{
	struct version_vector v;
	int rc = 0;

	(void)state;
	version_vector_init(&v);
	for (unsigned i = 0; i <= VERSION_VV_MAX && rc == 0; i++) {
		struct dfsr_uid u;

		memset(&u, 0, sizeof(u));
		u.b[0] = (uint8_t)(i >> 8);
		u.b[1] = (uint8_t)i;
		u.b[15] = 1;
		rc = version_vector_raise(&v, &u, 1);
	}
	assert_int_equal(rc, -E2BIG);
	assert_int_equal(v.n, VERSION_VV_MAX);
	assert_true(version_vector_valid(&v));
	v.v[1].db = v.v[0].db; /* duplicate id */
	assert_false(version_vector_valid(&v));
	v.v[1].db = v.v[2].db;
	v.v[1].db.b[15] = 2; /* now above v[2]: out of order */
	assert_false(version_vector_valid(&v));
	version_vector_release(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(gvsn_order),           cmocka_unit_test(raise_get_sorted),
		cmocka_unit_test(compare_cases),        cmocka_unit_test(contains_and_copy),
		cmocka_unit_test(bounded_and_validity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
