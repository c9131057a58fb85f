/*
 * test_util.c - core/util.c: error text, UIDs, sizes, time, the byte buffer, JSON strings,
 * files and extended attributes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>

#include "core/util.h"

static void strerror_knows_both_ranges(void **state)
{
	(void)state;
	assert_string_equal(dfsr_strerror(-ENOENT), "No such file or directory");
	assert_string_equal(dfsr_strerror(DFSR_ECONFIG), "Invalid configuration");
	assert_non_null(strstr(dfsr_strerror(DFSR_ECONFLICT), "onflict"));
	assert_string_equal(dfsr_strerror(-4999), "Unknown error");
	assert_string_equal(dfsr_strerror(12345), "Unknown error");
	assert_non_null(dfsr_strerror(DFSR_ENOTRUNNING));
}

static void size_parsing(void **state)
{
	uint64_t v = 77;

	(void)state;
	assert_int_equal(dfsr_parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(dfsr_parse_size("4096M", &v), 0);
	assert_int_equal(v, 4096ULL << 20);
	assert_int_equal(dfsr_parse_size("660M", &v), 0);
	assert_int_equal(v, 660ULL << 20);
	assert_int_equal(dfsr_parse_size("20k", &v), 0);
	assert_int_equal(v, 20ULL << 10);
	assert_int_equal(dfsr_parse_size("3G", &v), 0);
	assert_int_equal(v, 3ULL << 30);
	assert_int_equal(dfsr_parse_size("2T", &v), 0);
	assert_int_equal(v, 2ULL << 40);
	assert_int_equal(dfsr_parse_size("12345", &v), 0);
	assert_int_equal(v, 12345);
	v = 99;
	assert_int_equal(dfsr_parse_size("-1", &v), -EINVAL);
	assert_int_equal(dfsr_parse_size(" 5", &v), -EINVAL);
	assert_int_equal(dfsr_parse_size("5 ", &v), -EINVAL);
	assert_int_equal(dfsr_parse_size("+5", &v), -EINVAL);
	assert_int_equal(dfsr_parse_size("", &v), -EINVAL);
	assert_int_equal(dfsr_parse_size("M", &v), -EINVAL);
	assert_int_equal(dfsr_parse_size("4096Q", &v), -EINVAL);
	assert_int_equal(dfsr_parse_size("5MB", &v), -EINVAL);
	assert_int_equal(dfsr_parse_size("0x10", &v), -EINVAL);
	assert_int_equal(v, 99); /* untouched on failure */
	assert_int_equal(dfsr_parse_size("18446744073709551615", &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(dfsr_parse_size("18446744073709551616", &v), -ERANGE);
	assert_int_equal(dfsr_parse_size("99999999999999999999999", &v), -ERANGE);
	assert_int_equal(dfsr_parse_size("16777216T", &v), -ERANGE);
	assert_int_equal(dfsr_parse_size("16777215T", &v), 0);
	assert_int_equal(v, 16777215ULL << 40);
}

static void *draw_uids(void *arg)
{
	struct dfsr_uid *v = arg;

	for (size_t i = 0; i < 40; i++)
		dfsr_uid_random(&v[i]);
	return NULL;
}

/* UIDs come from a pool per thread: never repeated, across refills, threads and a fork. */
static void uid_pool_never_repeats(void **state)
{
	struct dfsr_uid v[120], next, child;
	pthread_t th;
	int pfd[2], status;
	pid_t pid;

	(void)state;
	draw_uids(v); /* 40: two and a half refills of 16 */
	assert_int_equal(pthread_create(&th, NULL, draw_uids, v + 40), 0);
	draw_uids(v + 80);
	assert_int_equal(pthread_join(th, NULL), 0);
	for (size_t i = 0; i < 120; i++) {
		assert_false(dfsr_uid_is_zero(&v[i]));
		for (size_t k = 0; k < i; k++)
			assert_false(dfsr_uid_equal(&v[i], &v[k]));
	}
	/* the pool is part-used now: a forked child must not draw the parent's next bytes */
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dfsr_uid_random(&child);
		_exit(write(pfd[1], &child, sizeof(child)) == (ssize_t)sizeof(child) ? 0 : 1);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &child, sizeof(child)), (ssize_t)sizeof(child));
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	dfsr_uid_random(&next);
	assert_false(dfsr_uid_equal(&next, &child));
}

static void uid_round_trip(void **state)
{
	struct dfsr_uid a, b, z;
	char hex[DFSR_UID_HEX_LEN], guid[DFSR_UID_GUID_LEN], braced[DFSR_UID_GUID_LEN + 2];

	(void)state;
	memset(&z, 0, sizeof(z));
	assert_true(dfsr_uid_is_zero(&z));
	dfsr_uid_random(&a);
	assert_false(dfsr_uid_is_zero(&a));
	dfsr_uid_hex(&a, hex);
	assert_int_equal(strlen(hex), 32);
	assert_int_equal(dfsr_uid_parse(hex, &b), 0);
	assert_true(dfsr_uid_equal(&a, &b));
	assert_int_equal(dfsr_uid_cmp(&a, &b), 0);

	dfsr_uid_guid(&a, guid);
	assert_int_equal(strlen(guid), 36);
	assert_int_equal(guid[8], '-');
	assert_int_equal(guid[13], '-');
	assert_int_equal(guid[18], '-');
	assert_int_equal(guid[23], '-');
	for (size_t i = 0; i < 36; i++)
		assert_false(guid[i] >= 'a' && guid[i] <= 'f');
	memset(&b, 0, sizeof(b));
	assert_int_equal(dfsr_uid_parse(guid, &b), 0);
	assert_true(dfsr_uid_equal(&a, &b));
	snprintf(braced, sizeof(braced), "{%s}", guid);
	memset(&b, 0, sizeof(b));
	assert_int_equal(dfsr_uid_parse(braced, &b), 0);
	assert_true(dfsr_uid_equal(&a, &b));

	b = a;
	b.b[15] ^= 1;
	assert_false(dfsr_uid_equal(&a, &b));
	assert_int_not_equal(dfsr_uid_cmp(&a, &b), 0);
	assert_int_equal(dfsr_uid_cmp(&a, &b), -dfsr_uid_cmp(&b, &a));
}

static void uid_known_value_and_bad_text(void **state)
{
	struct dfsr_uid u;
	char guid[DFSR_UID_GUID_LEN], hex[DFSR_UID_HEX_LEN];

	(void)state;
	assert_int_equal(dfsr_uid_parse("0123456789abcdefFEDCBA9876543210", &u), 0);
	dfsr_uid_guid(&u, guid);
	assert_string_equal(guid, "01234567-89AB-CDEF-FEDC-BA9876543210");
	dfsr_uid_hex(&u, hex);
	assert_string_equal(hex, "0123456789abcdeffedcba9876543210");
	assert_int_equal(dfsr_uid_parse("", &u), -EINVAL);
	assert_int_equal(dfsr_uid_parse("0123456789abcdefFEDCBA987654321", &u), -EINVAL);
	assert_int_equal(dfsr_uid_parse("0123456789abcdefFEDCBA987654321g", &u), -EINVAL);
	assert_int_equal(dfsr_uid_parse("01234567-89AB-CDEF-FEDCBA9876543210", &u), -EINVAL);
	assert_int_equal(dfsr_uid_parse("0123456789-AB-CDEF-FEDC-BA9876543210", &u), -EINVAL);
	assert_int_equal(dfsr_uid_parse("{01234567-89AB-CDEF-FEDC-BA9876543210", &u), -EINVAL);
	assert_int_equal(dfsr_uid_parse("(01234567-89AB-CDEF-FEDC-BA9876543210)", &u), -EINVAL);
}

static void time_helpers(void **state)
{
	char buf[32];
	int64_t a, b;

	(void)state;
	dfsr_time_iso(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	dfsr_time_iso(1795255200LL * 1000000000LL + 999999999, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-21T10:00:00Z");
	dfsr_time_iso(-1, buf, sizeof(buf));
	assert_string_equal(buf, "1969-12-31T23:59:59Z");
	a = dfsr_mono_ns();
	b = dfsr_mono_ns();
	assert_true(b >= a);
	assert_true(dfsr_now_ns() > 1700000000LL * 1000000000LL);
}

static void buf_basics(void **state)
{
	struct dfsr_buf b;
	char *p;
	size_t len;

	(void)state;
	dfsr_buf_init(&b);
	assert_string_equal(b.p, "");
	assert_int_equal(b.len, 0);
	assert_int_equal(dfsr_buf_add(&b, "abc", 3), 0);
	assert_int_equal(dfsr_buf_addf(&b, "-%d-%s", 42, "x"), 0);
	assert_string_equal(b.p, "abc-42-x");
	assert_int_equal(b.len, 8);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(dfsr_buf_addf(&b, "%04d", i), 0);
	assert_int_equal(b.len, 8 + 4000);
	assert_int_equal(b.p[b.len], '\0');
	assert_memory_equal(b.p + b.len - 4, "0999", 4);
	p = dfsr_buf_detach(&b, &len);
	assert_int_equal(len, 4008);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	free(p);
	/* detach of an empty buffer still gives a free()able string */
	p = dfsr_buf_detach(&b, &len);
	assert_non_null(p);
	assert_int_equal(len, 0);
	assert_string_equal(p, "");
	free(p);
	assert_int_equal(dfsr_buf_add(&b, "z", 1), 0);
	dfsr_buf_release(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	dfsr_buf_release(&b); /* twice is fine */
}

static void json_strings(void **state)
{
	struct dfsr_buf b;

	(void)state;
	dfsr_buf_init(&b);
	assert_int_equal(dfsr_json_str(&b, "plain"), 0);
	assert_string_equal(b.p, "\"plain\"");
	dfsr_buf_release(&b);
	assert_int_equal(dfsr_json_str(&b, "q\"b\\n\nt\tc\x01"), 0);
	assert_string_equal(b.p, "\"q\\\"b\\\\n\\nt\\tc\\u0001\"");
	dfsr_buf_release(&b);
	assert_int_equal(dfsr_json_str(&b, "caf\xc3\xa9 \xe2\x82\xac"), 0);
	assert_string_equal(b.p, "\"caf\xc3\xa9 \xe2\x82\xac\"");
	dfsr_buf_release(&b);
	/* invalid UTF-8: a lone continuation byte, a truncated sequence, an overlong form */
	assert_int_equal(dfsr_json_str(&b, "a\x80z\xc3"), 0);
	assert_string_equal(b.p, "\"a\\u0080z\\u00c3\"");
	dfsr_buf_release(&b);
	assert_int_equal(dfsr_json_str(&b, "\xc0\xaf"), 0);
	assert_string_equal(b.p, "\"\\u00c0\\u00af\"");
	dfsr_buf_release(&b);
}

static void text_lines(void **state)
{
	char out[64], tiny[6];

	(void)state;
	assert_string_equal(dfsr_text_line("plain caf\xc3\xa9 \\ \"q\"", out, sizeof(out)),
			    "plain caf\xc3\xa9 \\ \"q\"");
	assert_string_equal(dfsr_text_line("a\nb\rc\td\x01"
					   "e\x7f",
					   out, sizeof(out)),
			    "a\\nb\\rc\\td\\x01e\\x7f");
	/* truncated, never inside an escape */
	assert_string_equal(dfsr_text_line("abcd\n", tiny, sizeof(tiny)), "abcd");
	assert_string_equal(dfsr_text_line("ab\x01", tiny, sizeof(tiny)), "ab");
	assert_string_equal(dfsr_text_line("", out, sizeof(out)), "");
}

static void uid_set_grows_and_finds(void **state)
{
	struct dfsr_uid_set s = { 0 };
	struct dfsr_uid u, zero;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	assert_false(dfsr_uid_set_has(&s, &zero));
	for (unsigned i = 0; i < 1000; i++) {
		memset(&u, 0, sizeof(u));
		memcpy(u.b, &i, sizeof(i));
		u.b[15] = 1;
		assert_int_equal(dfsr_uid_set_add(&s, &u), 0);
		assert_int_equal(dfsr_uid_set_add(&s, &u), 0); /* again: no second entry */
	}
	assert_int_equal(s.n, 1000);
	assert_true(s.cap >= 2000);
	for (unsigned i = 0; i < 1000; i++) {
		memset(&u, 0, sizeof(u));
		memcpy(u.b, &i, sizeof(i));
		u.b[15] = 1;
		assert_true(dfsr_uid_set_has(&s, &u));
		u.b[15] = 2;
		assert_false(dfsr_uid_set_has(&s, &u));
	}
	assert_int_equal(dfsr_uid_set_add(&s, &zero), 0); /* never a member */
	assert_false(dfsr_uid_set_has(&s, &zero));
	dfsr_uid_set_release(&s);
	assert_int_equal(s.n, 0);
	assert_false(dfsr_uid_set_has(&s, &u));
}

static void remove_tree_removes_everything_below(void **state)
{
	char dir[] = "/tmp/dfsr-util-XXXXXX";
	int fd, out;

	(void)state;
	assert_non_null(mkdtemp(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(mkdirat(fd, "t", 0700), 0);
	assert_int_equal(mkdirat(fd, "t/sub", 0500), 0); /* not writable: still removed (root) */
	out = openat(fd, "t/f", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(out >= 0);
	close(out);
	assert_int_equal(symlinkat("/etc", fd, "t/link"), 0); /* removed, not followed */
	assert_int_equal(dfsr_remove_tree(fd, "t"), 0);
	assert_int_equal(faccessat(fd, "t", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	assert_int_equal(access("/etc/passwd", F_OK), 0);
	assert_int_equal(dfsr_remove_tree(fd, "t"), 0); /* missing: fine */
	out = openat(fd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	close(out);
	assert_int_equal(dfsr_remove_tree(fd, "file"), 0);
	close(fd);
	assert_int_equal(rmdir(dir), 0);
}

/* From a regular file (copy_file_range) and from a pipe (it refuses one: read and write). */
static void copy_data_both_ways(void **state)
{
	char path[] = "/tmp/dfsr-copy-XXXXXX", back[64];
	int in = mkstemp(path), out, p[2];

	(void)state;
	assert_true(in >= 0);
	unlink(path);
	assert_int_equal(write(in, "regular file", 12), 12);
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	out = open("/tmp", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
	assert_true(out >= 0);
	assert_int_equal(dfsr_copy_data(in, out), 0);
	assert_int_equal(pread(out, back, sizeof(back), 0), 12);
	assert_memory_equal(back, "regular file", 12);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], " and a pipe", 11), 11);
	close(p[1]);
	assert_int_equal(dfsr_copy_data(p[0], out), 0); /* appends at out's offset */
	assert_int_equal(pread(out, back, sizeof(back), 0), 23);
	assert_memory_equal(back, "regular file and a pipe", 23);
	close(p[0]);
	close(out);
	close(in);
}

/* No attribute, a few (one call), a list longer than the first buffer (size query), the
 * limit, a descriptor, a path with and without following a link, an O_PATH descriptor. */
static void xattr_names_every_way(void **state)
{
	char dir[] = "/var/tmp/dfsr-xattr-XXXXXX", path[64], link[64], name[64];
	char *list;
	size_t len, count = 0;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(link, sizeof(link), "%s/l", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(symlink("f", link), 0);
	assert_int_equal(dfsr_xattr_names(fd, NULL, false, 1 << 20, &list, &len), 0);
	assert_null(list);
	assert_int_equal(len, 0);
	assert_int_equal(fsetxattr(fd, "user.one", "1", 1, 0), 0);
	assert_int_equal(dfsr_xattr_names(fd, NULL, false, 1 << 20, &list, &len), 0);
	assert_int_equal(len, sizeof("user.one"));
	assert_string_equal(list, "user.one");
	free(list);
	for (int i = 0; i < 60; i++) { /* ~2 KiB of names */
		snprintf(name, sizeof(name), "user.a-rather-long-attribute-name-%02d", i);
		assert_int_equal(fsetxattr(fd, name, "", 0, 0), 0);
	}
	assert_int_equal(dfsr_xattr_names(-1, link, true, 1 << 20, &list, &len), 0);
	assert_true(len > 1024);
	for (size_t off = 0; off < len; off += strlen(list + off) + 1)
		count++;
	assert_int_equal(count, 61);
	assert_int_equal(list[len], '\0');
	free(list);
	assert_int_equal(dfsr_xattr_names(fd, NULL, false, 1000, &list, &len), -E2BIG);
	assert_null(list);
	assert_int_equal(dfsr_xattr_names(fd, NULL, false, 10, &list, &len), -E2BIG);
	/* the link itself has none of its target's */
	assert_int_equal(dfsr_xattr_names(-1, link, false, 1 << 20, &list, &len), 0);
	assert_int_equal(len, 0);
	free(list);
	close(fd);
	fd = open(path, O_PATH | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(dfsr_xattr_names(fd, NULL, false, 1 << 20, &list, &len), -EBADF);
	close(fd);
	assert_int_equal(unlink(link), 0);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void write_all_writes_everything(void **state)
{
	char path[] = "/tmp/dfsr-test-util-XXXXXX";
	static char big[3 * 1024 * 1024];
	int fd = mkstemp(path);
	off_t end;

	(void)state;
	assert_true(fd >= 0);
	memset(big, 'x', sizeof(big));
	assert_int_equal(dfsr_write_all(fd, big, sizeof(big)), 0);
	end = lseek(fd, 0, SEEK_END);
	assert_int_equal(end, (off_t)sizeof(big));
	close(fd);
	unlink(path);
	assert_int_equal(dfsr_write_all(-1, "a", 1), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(strerror_knows_both_ranges),
		cmocka_unit_test(size_parsing),
		cmocka_unit_test(uid_round_trip),
		cmocka_unit_test(uid_pool_never_repeats),
		cmocka_unit_test(uid_known_value_and_bad_text),
		cmocka_unit_test(time_helpers),
		cmocka_unit_test(buf_basics),
		cmocka_unit_test(json_strings),
		cmocka_unit_test(text_lines),
		cmocka_unit_test(write_all_writes_everything),
		cmocka_unit_test(uid_set_grows_and_finds),
		cmocka_unit_test(remove_tree_removes_everything_below),
		cmocka_unit_test(copy_data_both_ways),
		cmocka_unit_test(xattr_names_every_way),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
