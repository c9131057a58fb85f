/*
 * test_space.c - core/space.c: the database's reserve on a tmpfs of known size: its size
 * (1/64 of the filesystem within [32 MiB, 128 MiB]), takes allowed while the reserve stays
 * free, refused with -ENOSPC once a write would eat into it (measured afresh, even right
 * after a measurement that allowed it) and told to the owner once, allowed again once room
 * comes back, and a NULL guard that allows everything.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/space.h"

#define MIB (1ull << 20)

struct fx {
	char dir[64];
	int fd;
};

static int mount_tmpfs(void **state, const char *opts)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/dfsr-test-space.XXXXXX");
	if (!mkdtemp(f->dir) || mount("dfsr-test-space", f->dir, "tmpfs", 0, opts) < 0) {
		rmdir(f->dir);
		free(f);
		return -1;
	}
	f->fd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	*state = f;
	return f->fd >= 0 ? 0 : -1;
}

static int setup_64m(void **state)
{
	return mount_tmpfs(state, "size=64m");
}

static int teardown(void **state)
{
	struct fx *f = *state;

	close(f->fd);
	umount2(f->dir, MNT_DETACH);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* A file of @mib MiB in the tmpfs (really allocated). */
static void fill(struct fx *f, const char *name, unsigned mib)
{
	static char buf[MIB];
	int fd = openat(f->fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	for (unsigned i = 0; i < mib; i++)
		assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
}

static void reserve_size_follows_the_filesystem(void **state)
{
	const struct {
		const char *opts;
		uint64_t reserve;
	} cases[] = {
		{ "size=64m", 32 * MIB },  /* 1 MiB by the ratio: the minimum */
		{ "size=4g", 64 * MIB },   /* 1/64 */
		{ "size=64g", 128 * MIB }, /* 1 GiB by the ratio: the maximum */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *st = NULL;
		struct fx *f;
		struct space *sp;

		assert_int_equal(mount_tmpfs(&st, cases[i].opts), 0);
		f = st;
		assert_int_equal(space_new(f->fd, &sp), 0);
		assert_int_equal(space_reserve(sp), cases[i].reserve);
		space_free(sp);
		teardown(&st);
	}
}

struct told {
	unsigned n;
	uint64_t free_bytes, reserve;
};

static void refused(void *arg, uint64_t free_bytes, uint64_t reserve)
{
	struct told *t = arg;

	t->n++;
	t->free_bytes = free_bytes;
	t->reserve = reserve;
}

static void takes_stop_at_the_reserve(void **state)
{
	struct fx *f = *state;
	struct told told = { 0 };
	struct space *sp;

	assert_int_equal(space_new(f->fd, &sp), 0);
	space_set_notify(sp, refused, &told);
	assert_int_equal(space_reserve(sp), 32 * MIB);
	/* 64 MiB free: 16 MiB leaves more than the reserve */
	assert_int_equal(space_take(sp, 16 * MIB), 0);
	/* 30 MiB used behind the guard's back: 34 MiB free; 1 MiB is fine, 3 MiB is not */
	fill(f, "a", 30);
	assert_int_equal(space_take(sp, 1 * MIB), 0);
	assert_int_equal(told.n, 0);
	assert_int_equal(space_take(sp, 3 * MIB), -ENOSPC);
	assert_int_equal(space_take(sp, 3 * MIB), -ENOSPC);
	/* told once (at most once a minute), with what was free */
	assert_int_equal(told.n, 1);
	assert_int_equal(told.reserve, 32 * MIB);
	assert_true(told.free_bytes >= 33 * MIB && told.free_bytes <= 34 * MIB);
	/* room again */
	assert_int_equal(unlinkat(f->fd, "a", 0), 0);
	assert_int_equal(space_take(sp, 3 * MIB), 0);
	/* a refusal always measures: the estimate alone never refuses */
	assert_int_equal(space_take(sp, 40 * MIB), -ENOSPC);
	assert_int_equal(space_take(sp, 0), 0);
	space_free(sp);
	assert_int_equal(space_take(NULL, UINT64_MAX), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reserve_size_follows_the_filesystem),
		cmocka_unit_test_setup_teardown(takes_stop_at_the_reserve, setup_64m, teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_space needs root (mounts tmpfs); skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
