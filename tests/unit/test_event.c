/*
 * test_event.c - core/event.c: the events.def table, formatting, and the stderr copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/event.h"

static const int all_ids[] = {
#define DFSR_EVENT(id, name, level, text) id,
#include "core/events.def"
#undef DFSR_EVENT
};

static void table_lookups(void **state)
{
	(void)state;
	assert_string_equal(event_name(EV_CONFLICT_RESOLVED), "CONFLICT_RESOLVED");
	assert_string_equal(event_text(EV_CONFLICT_RESOLVED), "conflict resolved; loser preserved");
	assert_int_equal(event_level(EV_CONFLICT_RESOLVED), LOG_NOTICE);
	assert_int_equal(EV_CONFLICT_RESOLVED, 4412);
	assert_int_equal(event_level(EV_FATAL), LOG_CRIT);
	assert_null(event_name(7));
	assert_null(event_text(-1));
	assert_int_equal(event_level(123456), -1);
}

static void ids_are_unique_and_complete(void **state)
{
	size_t n = sizeof(all_ids) / sizeof(all_ids[0]);

	(void)state;
	assert_true(n > 10);
	for (size_t i = 0; i < n; i++) {
		assert_non_null(event_name(all_ids[i]));
		assert_non_null(event_text(all_ids[i]));
		assert_true(event_level(all_ids[i]) >= LOG_EMERG);
		assert_true(event_level(all_ids[i]) <= LOG_DEBUG);
		for (size_t j = 0; j < i; j++)
			if (all_ids[i] == all_ids[j])
				fail_msg("event id %d is used twice", all_ids[i]);
	}
}

static void vformat_helper(char *buf, size_t len, enum dfsr_event ev, const char *fmt, ...)
	DFSR_PRINTF(4, 5);

static void vformat_helper(char *buf, size_t len, enum dfsr_event ev, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	event_vformat(buf, len, ev, fmt, ap);
	va_end(ap);
}

static void formatting(void **state)
{
	char buf[EVENT_MSG_MAX], small[12];

	(void)state;
	vformat_helper(buf, sizeof(buf), EV_SCAN_DONE, "files=%d dirs=%s", 12, "3");
	assert_string_equal(buf, "consistency scan done files=12 dirs=3");
	vformat_helper(buf, sizeof(buf), EV_SCAN_DONE, "%s", "");
	assert_string_equal(buf, "consistency scan done");
	vformat_helper(small, sizeof(small), EV_SCAN_DONE, "x=%d", 1);
	assert_string_equal(small, "consistency");
	vformat_helper(buf, 0, EV_SCAN_DONE, "x=%d", 1); /* nothing written, no crash */
	/* a name with control characters stays on the event's one line (no forged line) */
	vformat_helper(buf, sizeof(buf), EV_SCAN_DONE, "path=\"%s\"",
		       "a\n2026-01-01T00:00:00Z 4412 share: fake\r\x01");
	assert_string_equal(buf, "consistency scan done "
				 "path=\"a\\n2026-01-01T00:00:00Z 4412 share: fake\\r\\x01\"");
	assert_null(strchr(buf, '\n'));
}

static void foreground_copy_on_stderr(void **state)
{
	char out[4096] = { 0 };
	int fds[2], saved;
	ssize_t n;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
	event_init("dfsr-test", true);
	event_log(EV_MEMBER_STARTED, "version=%s", "0.1");
	event_emit(EV_CONFLICT_RESOLVED, "share", "conflict resolved; loser preserved path=a");
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(fds[1]);
	n = read(fds[0], out, sizeof(out) - 1);
	close(fds[0]);
	assert_true(n > 0);
	assert_non_null(strstr(out, "9001 -: member started version=0.1\n"));
	assert_non_null(strstr(out, "4412 share: conflict resolved; loser preserved path=a\n"));
	closelog();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(table_lookups),
		cmocka_unit_test(ids_are_unique_and_complete),
		cmocka_unit_test(formatting),
		cmocka_unit_test(foreground_copy_on_stderr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
