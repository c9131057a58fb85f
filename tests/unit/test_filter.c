/*
 * test_filter.c - core/filter.c: DFSR wildcard lists, case-insensitive, one component.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/filter.h"

static void default_dfsr_filter(void **state)
{
	struct filter f;

	(void)state;
	assert_int_equal(filter_build(&f, "~*, *.bak, *.tmp"), 0);
	assert_int_equal(f.n, 3);
	assert_true(filter_match(&f, "~$report.docx"));
	assert_true(filter_match(&f, "old.bak"));
	assert_true(filter_match(&f, "OLD.BAK"));
	assert_true(filter_match(&f, "x.Tmp"));
	assert_true(filter_match(&f, ".tmp"));
	assert_false(filter_match(&f, "report.docx"));
	assert_false(filter_match(&f, "bak"));
	assert_false(filter_match(&f, "a.bak.txt"));
	assert_false(filter_match(&f, "a~"));
	filter_release(&f);
	assert_int_equal(f.n, 0);
	assert_null(f.pat);
}

static void patterns_are_lowercased_and_trimmed(void **state)
{
	struct filter f;

	(void)state;
	assert_int_equal(filter_build(&f, "  *.LOG\t,Thumbs.db ,?x[0-9]  "), 0);
	assert_int_equal(f.n, 3);
	assert_string_equal(f.pat[0], "*.log");
	assert_string_equal(f.pat[1], "thumbs.db");
	assert_string_equal(f.pat[2], "?x[0-9]");
	assert_true(filter_match(&f, "THUMBS.DB"));
	assert_true(filter_match(&f, "ax7"));
	assert_true(filter_match(&f, "AX7"));
	assert_false(filter_match(&f, "ax"));
	assert_true(filter_match(&f, ".hidden.log")); /* a leading dot is not special */
	filter_release(&f);
}

static void empty_lists(void **state)
{
	struct filter f;

	(void)state;
	assert_int_equal(filter_build(&f, ""), 0);
	assert_int_equal(f.n, 0);
	assert_false(filter_match(&f, "anything"));
	filter_release(&f);
	assert_int_equal(filter_build(&f, "   "), 0);
	assert_int_equal(f.n, 0);
	filter_release(&f);
}

static void bad_lists(void **state)
{
	struct filter f;
	char *big;
	size_t len;

	(void)state;
	assert_int_equal(filter_build(&f, "a,,b"), -EINVAL);
	assert_int_equal(f.n, 0);
	assert_null(f.pat);
	assert_int_equal(filter_build(&f, "*.bak,"), -EINVAL);
	assert_int_equal(filter_build(&f, ", x"), -EINVAL);
	assert_int_equal(filter_build(&f, "dir/*.bak"), -EINVAL);
	big = malloc(FILTER_MAX_PATTERN + 2);
	assert_non_null(big);
	memset(big, 'a', FILTER_MAX_PATTERN + 1);
	big[FILTER_MAX_PATTERN + 1] = '\0';
	assert_int_equal(filter_build(&f, big), -EINVAL);
	big[FILTER_MAX_PATTERN] = '\0';
	assert_int_equal(filter_build(&f, big), 0);
	assert_int_equal(f.n, 1);
	filter_release(&f);
	free(big);

	len = (FILTER_MAX_PATTERNS + 1) * 2;
	big = malloc(len);
	assert_non_null(big);
	for (size_t i = 0; i < FILTER_MAX_PATTERNS + 1; i++) {
		big[2 * i] = 'x';
		big[2 * i + 1] = ',';
	}
	big[len - 1] = '\0';
	assert_int_equal(filter_build(&f, big), -E2BIG);
	assert_int_equal(f.n, 0);
	big[len - 3] = '\0'; /* exactly FILTER_MAX_PATTERNS */
	assert_int_equal(filter_build(&f, big), 0);
	assert_int_equal(f.n, FILTER_MAX_PATTERNS);
	filter_release(&f);
	free(big);
}

static void backslash_is_literal(void **state)
{
	struct filter f;

	(void)state;
	assert_int_equal(filter_build(&f, "a\\*"), 0);
	assert_true(filter_match(&f, "a\\xyz"));
	assert_false(filter_match(&f, "a*"));
	filter_release(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(default_dfsr_filter),
		cmocka_unit_test(patterns_are_lowercased_and_trimmed),
		cmocka_unit_test(empty_lists),
		cmocka_unit_test(bad_lists),
		cmocka_unit_test(backslash_is_literal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
