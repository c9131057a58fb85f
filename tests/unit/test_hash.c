/*
 * test_hash.c - core/hash.c on real trees: stable under cp -a, touch and rename; changed by
 * data, mode, owner, xattrs and ACLs; symlinks and directories; content reuse; the exact
 * encoding of core/hash.h checked against an independent SHA-256 (libsodium's).
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
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>

#include "core/hash.h"
#include "tests/unit/tmpdir.h"

struct tree {
	char dir[64];
	int fd; /* O_PATH of dir */
};

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void write_file(int dirfd, const char *name, const void *data, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchown(fd, 0, 0), 0);
	assert_int_equal(fchmod(fd, 0644), 0);
	close(fd);
}

static int setup(void **state)
{
	struct tree *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	if (test_tmpdir_make(t->dir, sizeof(t->dir), "hash", &t->fd) < 0)
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tree *t = *state;

	close(t->fd);
	test_tmpdir_remove(t->dir);
	free(t);
	return 0;
}

static void hash_name(int dirfd, const char *name, struct hash_result *r)
{
	int rc = hash_at(dirfd, name, r);

	if (rc != 0)
		fail_msg("hash_at(%s): %d", name, rc);
}

/* A small tree: a file with an xattr, a directory with a file, a symlink. */
static void make_tree(int dirfd)
{
	static const char data[] = "hello, replicated world\n";
	int sub;

	write_file(dirfd, "a.txt", data, sizeof(data) - 1);
	assert_int_equal(mkdirat(dirfd, "sub", 0750), 0);
	sub = openat(dirfd, "sub", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(sub >= 0);
	write_file(sub, "b.bin", "\0\1\2\3", 4);
	close(sub);
	assert_int_equal(symlinkat("a.txt", dirfd, "link"), 0);
}

static const char *const tree_names[] = { "a.txt", "sub", "sub/b.bin", "link" };

static void same_tree_hashes(int a, int b, bool expect_same)
{
	for (size_t i = 0; i < sizeof(tree_names) / sizeof(tree_names[0]); i++) {
		struct hash_result x, y;

		hash_name(a, tree_names[i], &x);
		hash_name(b, tree_names[i], &y);
		if (expect_same && memcmp(x.hash, y.hash, HASH_LEN) != 0)
			fail_msg("%s: hash differs after cp -a", tree_names[i]);
		assert_memory_equal(x.content, y.content, HASH_LEN);
	}
}

static void same_after_cp_a(void **state)
{
	struct tree *t = *state;
	char copy[128];
	int src, dst;

	assert_int_equal(mkdirat(t->fd, "src", 0755), 0);
	src = openat(t->fd, "src", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(src >= 0);
	make_tree(src);
	assert_int_equal(run("setfattr -n user.x -v 1 '%s/src/a.txt'", t->dir), 0);
	assert_int_equal(run("setfacl -m u:1234:r '%s/src/sub/b.bin'", t->dir), 0);
	snprintf(copy, sizeof(copy), "%s/dst", t->dir);
	assert_int_equal(run("cp -a '%s/src' '%s'", t->dir, copy), 0);
	dst = openat(t->fd, "dst", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(dst >= 0);
	same_tree_hashes(src, dst, true);
	close(src);
	close(dst);
}

/* Hash of @name before and after running @cmd; whether they differ must be @differ. */
static void check_change(struct tree *t, const char *name, const char *cmd, bool differ)
{
	struct hash_result before, after;

	hash_name(t->fd, name, &before);
	assert_int_equal(run("cd '%s' && %s", t->dir, cmd), 0);
	hash_name(t->fd, name, &after);
	if (differ != (memcmp(before.hash, after.hash, HASH_LEN) != 0))
		fail_msg("'%s' on %s: hash should %s", cmd, name, differ ? "change" : "not change");
}

static void changes_that_matter(void **state)
{
	struct tree *t = *state;

	make_tree(t->fd);
	check_change(t, "a.txt", "printf 'HELLO, replicated world\\n' > a.txt", true);
	check_change(t, "a.txt", "chmod 0600 a.txt", true);
	check_change(t, "a.txt", "chmod u+s a.txt", true);
	check_change(t, "a.txt", "chown 1234 a.txt", true);
	check_change(t, "a.txt", "chgrp 4321 a.txt", true);
	check_change(t, "a.txt", "setfattr -n user.x -v 1 a.txt", true);
	check_change(t, "a.txt", "setfattr -n user.x -v 2 a.txt", true);
	check_change(t, "a.txt", "setfattr -n user.y -v 2 a.txt", true);
	check_change(t, "a.txt", "setfattr -x user.x a.txt", true);
	check_change(t, "a.txt", "setfacl -m u:1234:rw a.txt", true);
	check_change(t, "a.txt", "truncate -s 100 a.txt", true);
	check_change(t, "sub", "chmod 0700 sub", true);
	check_change(t, "sub", "setfacl -d -m u:1234:rx sub", true);
	check_change(t, "sub", "setfattr -n user.d -v z sub", true);
	check_change(t, "link", "ln -sfn other link", true);
	check_change(t, "link", "chown -h 55 link", true);
}

static void changes_that_do_not_matter(void **state)
{
	struct tree *t = *state;
	struct hash_result before, after;

	make_tree(t->fd);
	check_change(t, "a.txt", "touch -d 2001-02-03 a.txt", false);
	check_change(t, "a.txt", "touch a.txt", false);
	check_change(t, "sub", "touch -d 2001-02-03 sub", false);
	check_change(t, "sub", "touch sub/new", false); /* a directory's entries are not in it */
	check_change(t, "link", "touch -h -d 2001-02-03 link", false);
	check_change(t, "a.txt", "cat a.txt > /dev/null", false);
	/* excluded xattrs */
	check_change(t, "a.txt", "setfattr -n user.dfsr.uid -v abc a.txt", false);
	check_change(t, "a.txt", "setfattr -n trusted.dfsr.x -v abc a.txt", false);
	check_change(t, "sub", "setfattr -n user.dfsr.v -v 1 sub", false);
	/* rename, also into another directory */
	hash_name(t->fd, "a.txt", &before);
	assert_int_equal(renameat(t->fd, "a.txt", t->fd, "sub/renamed"), 0);
	hash_name(t->fd, "sub/renamed", &after);
	assert_memory_equal(before.hash, after.hash, HASH_LEN);
}

static void excluded_names(void **state)
{
	(void)state;
	assert_true(hash_xattr_excluded("user.dfsr.uid"));
	assert_true(hash_xattr_excluded("trusted.dfsr.anything"));
	assert_true(hash_xattr_excluded("security.selinux"));
	assert_false(hash_xattr_excluded("user.dfsr"));
	assert_false(hash_xattr_excluded("user.x"));
	assert_false(hash_xattr_excluded("system.posix_acl_access"));
	assert_false(hash_xattr_excluded("security.capability"));
	assert_false(hash_xattr_excluded("security.selinuxx"));
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* The encoding of core/hash.h, computed independently with libsodium's SHA-256. */
static void expected_hash(char type, uint32_t mode, uint64_t size, const uint8_t content[32],
			  const char *xname, const char *xval, uint8_t out[32])
{
	crypto_hash_sha256_state s;
	uint8_t b[8];

	crypto_hash_sha256_init(&s);
	crypto_hash_sha256_update(&s, (const uint8_t *)"dfsr-hash-1", 12);
	crypto_hash_sha256_update(&s, (const uint8_t *)&type, 1);
	put32(b, mode);
	crypto_hash_sha256_update(&s, b, 4);
	put32(b, 0); /* uid */
	crypto_hash_sha256_update(&s, b, 4);
	put32(b, 0); /* gid */
	crypto_hash_sha256_update(&s, b, 4);
	put32(b, (uint32_t)(size >> 32));
	put32(b + 4, (uint32_t)size);
	crypto_hash_sha256_update(&s, b, 8);
	crypto_hash_sha256_update(&s, content, 32);
	put32(b, xname ? 1 : 0);
	crypto_hash_sha256_update(&s, b, 4);
	if (xname) {
		put32(b, (uint32_t)strlen(xname));
		crypto_hash_sha256_update(&s, b, 4);
		crypto_hash_sha256_update(&s, (const uint8_t *)xname, strlen(xname));
		put32(b, (uint32_t)strlen(xval));
		crypto_hash_sha256_update(&s, b, 4);
		crypto_hash_sha256_update(&s, (const uint8_t *)xval, strlen(xval));
	}
	crypto_hash_sha256_final(&s, out);
}

static void exact_encoding(void **state)
{
	struct tree *t = *state;
	struct hash_result r;
	uint8_t content[32], want[32], zero[32] = { 0 };
	char path[128];

	write_file(t->fd, "f", "hello", 5);
	crypto_hash_sha256(content, (const uint8_t *)"hello", 5);
	hash_name(t->fd, "f", &r);
	assert_memory_equal(r.content, content, 32);
	expected_hash('f', 0644, 5, content, NULL, NULL, want);
	assert_memory_equal(r.hash, want, 32);
	assert_int_equal(r.st.st_size, 5);
	assert_true(S_ISREG(r.st.st_mode));

	snprintf(path, sizeof(path), "%s/f", t->dir);
	assert_int_equal(setxattr(path, "user.k", "vv", 2, 0), 0);
	assert_int_equal(setxattr(path, "user.dfsr.skip", "x", 1, 0), 0);
	hash_name(t->fd, "f", &r);
	expected_hash('f', 0644, 5, content, "user.k", "vv", want);
	assert_memory_equal(r.hash, want, 32);

	assert_int_equal(mkdirat(t->fd, "d", 0755), 0);
	assert_int_equal(fchmodat(t->fd, "d", 0755, 0), 0);
	hash_name(t->fd, "d", &r);
	assert_memory_equal(r.content, zero, 32);
	expected_hash('d', 0755, 0, zero, NULL, NULL, want);
	assert_memory_equal(r.hash, want, 32);

	assert_int_equal(symlinkat("some/target", t->fd, "l"), 0);
	hash_name(t->fd, "l", &r);
	crypto_hash_sha256(content, (const uint8_t *)"some/target", 11);
	assert_memory_equal(r.content, content, 32);
	expected_hash('l', 0777, 11, content, NULL, NULL, want);
	assert_memory_equal(r.hash, want, 32);
	assert_true(S_ISLNK(r.st.st_mode));
}

static void xattr_order_is_by_name(void **state)
{
	struct tree *t = *state;
	struct hash_result a, b;
	char pa[128], pb[128];

	write_file(t->fd, "a", "x", 1);
	write_file(t->fd, "b", "x", 1);
	snprintf(pa, sizeof(pa), "%s/a", t->dir);
	snprintf(pb, sizeof(pb), "%s/b", t->dir);
	assert_int_equal(setxattr(pa, "user.zz", "1", 1, 0), 0);
	assert_int_equal(setxattr(pa, "user.aa", "2", 1, 0), 0);
	assert_int_equal(setxattr(pb, "user.aa", "2", 1, 0), 0);
	assert_int_equal(setxattr(pb, "user.zz", "1", 1, 0), 0);
	hash_name(t->fd, "a", &a);
	hash_name(t->fd, "b", &b);
	assert_memory_equal(a.hash, b.hash, HASH_LEN);
	/* an empty value is still an attribute */
	assert_int_equal(setxattr(pb, "user.e", "", 0, 0), 0);
	hash_name(t->fd, "b", &b);
	assert_memory_not_equal(a.hash, b.hash, HASH_LEN);
}

/* A list of attribute names longer than the first listing buffer takes the size query;
 * a plain descriptor and an O_PATH one (by its /proc path) read the same attributes. */
static void long_xattr_lists(void **state)
{
	struct tree *t = *state;
	struct hash_result a, b, byfd;
	char pa[128], pb[128], name[64];
	const int n = 60; /* ~1.6 KiB of names */
	int fd;

	write_file(t->fd, "a", "x", 1);
	write_file(t->fd, "b", "x", 1);
	snprintf(pa, sizeof(pa), "%s/a", t->dir);
	snprintf(pb, sizeof(pb), "%s/b", t->dir);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "user.a-rather-long-attribute-%02d", i);
		assert_int_equal(setxattr(pa, name, "v", 1, 0), 0);
		snprintf(name, sizeof(name), "user.a-rather-long-attribute-%02d", n - 1 - i);
		assert_int_equal(setxattr(pb, name, "v", 1, 0), 0);
	}
	assert_true(listxattr(pa, NULL, 0) > 1024);
	hash_name(t->fd, "a", &a);
	hash_name(t->fd, "b", &b);
	assert_memory_equal(a.hash, b.hash, HASH_LEN);
	fd = openat(t->fd, "a", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(hash_fd(fd, NULL, &byfd), 0);
	close(fd);
	assert_memory_equal(a.hash, byfd.hash, HASH_LEN);
	assert_int_equal(removexattr(pb, "user.a-rather-long-attribute-07"), 0);
	hash_name(t->fd, "b", &b);
	assert_memory_not_equal(a.hash, b.hash, HASH_LEN);
}

static void large_file_and_content_reuse(void **state)
{
	struct tree *t = *state;
	size_t len = 3 * 1024 * 1024 + 5;
	uint8_t *data = malloc(len), content[32];
	struct hash_result full, reused, viafd;
	int fd, wfd;
	off_t pos;

	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 7 + i / 4096);
	write_file(t->fd, "big", data, len);
	crypto_hash_sha256(content, data, len);
	hash_name(t->fd, "big", &full);
	assert_memory_equal(full.content, content, 32);
	assert_int_equal(full.st.st_size, (off_t)len);
	/* around the size read through a buffer on the stack (64 KiB) and past it */
	for (size_t n = 65535; n <= 65537; n++) {
		uint8_t edge[32];

		write_file(t->fd, "edge", data, n);
		crypto_hash_sha256(edge, data, n);
		hash_name(t->fd, "edge", &viafd);
		assert_memory_equal(viafd.content, edge, 32);
	}

	/* reuse: the same hash without reading; works on an O_PATH descriptor too */
	fd = openat(t->fd, "big", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(hash_fd(fd, full.content, &reused), 0);
	assert_memory_equal(reused.hash, full.hash, HASH_LEN);
	assert_memory_equal(reused.content, full.content, HASH_LEN);
	close(fd);

	/* a read descriptor: same hash, and its file offset is left alone */
	fd = openat(t->fd, "big", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(lseek(fd, 17, SEEK_SET), 17);
	assert_int_equal(hash_fd(fd, NULL, &viafd), 0);
	pos = lseek(fd, 0, SEEK_CUR);
	assert_int_equal(pos, 17);
	assert_memory_equal(viafd.hash, full.hash, HASH_LEN);
	close(fd);

	/* a write-only descriptor is reopened for reading */
	wfd = openat(t->fd, "big", O_WRONLY | O_CLOEXEC);
	assert_true(wfd >= 0);
	assert_int_equal(hash_fd(wfd, NULL, &viafd), 0);
	assert_memory_equal(viafd.hash, full.hash, HASH_LEN);

	/* a metadata change with the stored content gives the same as a full re-read */
	assert_int_equal(fchmod(wfd, 0600), 0);
	close(wfd);
	hash_name(t->fd, "big", &full);
	fd = openat(t->fd, "big", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	assert_int_equal(hash_fd(fd, content, &reused), 0);
	close(fd);
	assert_memory_equal(reused.hash, full.hash, HASH_LEN);
	free(data);
}

/* hash_fd_stat(): the caller's stat stands for the first one; a stale one is caught. */
static void caller_stat(void **state)
{
	static const char one[] = "one version\n", two[] = "the second, longer version\n";
	struct tree *t = *state;
	struct hash_result ref, got;
	struct stat st;
	uint8_t want[32];
	int fd, rw;

	write_file(t->fd, "f", one, sizeof(one) - 1);
	hash_name(t->fd, "f", &ref);
	/* a stat by name and an O_PATH descriptor (read through a reopen) */
	assert_int_equal(fstatat(t->fd, "f", &st, AT_SYMLINK_NOFOLLOW), 0);
	fd = openat(t->fd, "f", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(hash_fd_stat(fd, &st, NULL, &got), 0);
	assert_memory_equal(got.hash, ref.hash, HASH_LEN);
	assert_int_equal(got.st.st_size, (off_t)(sizeof(one) - 1));

	/* the data changed after the caller's stat: the read disagrees with it, so it is
	 * read again and the result describes the new version only */
	rw = openat(t->fd, "f", O_RDWR | O_CLOEXEC);
	assert_true(rw >= 0);
	assert_int_equal(pwrite(rw, two, sizeof(two) - 1, 0), (ssize_t)(sizeof(two) - 1));
	assert_int_equal(hash_fd_stat(rw, &st, NULL, &got), 0);
	crypto_hash_sha256(want, (const unsigned char *)two, sizeof(two) - 1);
	assert_memory_equal(got.content, want, 32);
	assert_int_equal(got.st.st_size, (off_t)(sizeof(two) - 1));
	hash_name(t->fd, "f", &ref);
	assert_memory_equal(got.hash, ref.hash, HASH_LEN);

	/* emptied after the caller's stat: the same */
	assert_int_equal(ftruncate(rw, 0), 0);
	assert_int_equal(hash_fd_stat(fd, &got.st, NULL, &got), 0);
	crypto_hash_sha256(want, (const unsigned char *)"", 0);
	assert_memory_equal(got.content, want, 32);
	assert_int_equal(got.st.st_size, 0);
	close(rw);
	close(fd);
}

static void symlinks_and_directories_by_fd(void **state)
{
	struct tree *t = *state;
	struct hash_result a, b;
	char path[128];
	int fd;

	make_tree(t->fd);
	fd = openat(t->fd, "link", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(hash_fd(fd, NULL, &a), 0);
	close(fd);
	hash_name(t->fd, "link", &b);
	assert_memory_equal(a.hash, b.hash, HASH_LEN);
	/* the link's hash is not its target's */
	hash_name(t->fd, "a.txt", &b);
	assert_memory_not_equal(a.hash, b.hash, HASH_LEN);
	/* an xattr on the target does not leak into the link's hash */
	snprintf(path, sizeof(path), "%s/a.txt", t->dir);
	assert_int_equal(setxattr(path, "user.t", "1", 1, 0), 0);
	hash_name(t->fd, "link", &b);
	assert_memory_equal(a.hash, b.hash, HASH_LEN);
	/* a trusted xattr on the link itself does */
	snprintf(path, sizeof(path), "%s/link", t->dir);
	assert_int_equal(lsetxattr(path, "trusted.t", "1", 1, 0), 0);
	hash_name(t->fd, "link", &b);
	assert_memory_not_equal(a.hash, b.hash, HASH_LEN);

	/* directory: O_PATH, O_RDONLY and "" all agree */
	hash_name(t->fd, "sub", &a);
	fd = openat(t->fd, "sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(hash_fd(fd, NULL, &b), 0);
	assert_memory_equal(a.hash, b.hash, HASH_LEN);
	assert_int_equal(hash_at(fd, "", &b), 0);
	assert_memory_equal(a.hash, b.hash, HASH_LEN);
	assert_true(S_ISDIR(b.st.st_mode));
	close(fd);
}

static void errors(void **state)
{
	struct tree *t = *state;
	struct hash_result r;
	char hex[HASH_HEX_LEN];
	uint8_t h[HASH_LEN];

	assert_int_equal(hash_at(t->fd, "missing", &r), -ENOENT);
	assert_int_equal(mkfifoat(t->fd, "fifo", 0600), 0);
	assert_int_equal(hash_at(t->fd, "fifo", &r), -ENOTSUP);
	/* stat says 0 bytes but reads return data: never consistent, so -EAGAIN after retries */
	assert_int_equal(hash_at(AT_FDCWD, "/proc/self/stat", &r), -EAGAIN);
	for (int i = 0; i < HASH_LEN; i++)
		h[i] = (uint8_t)(i * 17);
	hash_hex(h, hex);
	assert_int_equal(strlen(hex), 64);
	assert_memory_equal(hex, "00112233", 8);
	assert_string_equal(hex + 56, "dcedfe0f");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(same_after_cp_a, setup, teardown),
		cmocka_unit_test_setup_teardown(long_xattr_lists, setup, teardown),
		cmocka_unit_test_setup_teardown(changes_that_matter, setup, teardown),
		cmocka_unit_test_setup_teardown(changes_that_do_not_matter, setup, teardown),
		cmocka_unit_test(excluded_names),
		cmocka_unit_test_setup_teardown(exact_encoding, setup, teardown),
		cmocka_unit_test_setup_teardown(xattr_order_is_by_name, setup, teardown),
		cmocka_unit_test_setup_teardown(large_file_and_content_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(caller_stat, setup, teardown),
		cmocka_unit_test_setup_teardown(symlinks_and_directories_by_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(errors, setup, teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_hash needs root (chown, trusted.* xattrs); skipped\n");
		return 77;
	}
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
