/*
 * tmpdir.h - a scratch directory per unit test: made under /tmp with mkdtemp(), reached
 * through an O_PATH descriptor (as the code under test reaches the local path), and removed
 * with everything in it by nftw() (no shell). Shared by the unit tests that need real files.
 */
#ifndef DFSR_TESTS_TMPDIR_H
#define DFSR_TESTS_TMPDIR_H

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* $DFSR_TEST_TMPDIR is used only with this much free: RocksDB preallocates its log files
 * (fallocate, which tmpfs backs with memory), and unit.session's databases take about
 * 100 MiB at once there. A container's /dev/shm is 64 MiB by default (Docker): full, the
 * tests time out waiting for files that could not be written. */
#define TEST_TMPDIR_MIN_FREE (512ull << 20)

/* The directory scratch directories are made in: $DFSR_TEST_TMPDIR when that is set and has
 * TEST_TMPDIR_MIN_FREE bytes free, else /tmp. */
static inline const char *test_tmpdir_base(void)
{
	const char *base = getenv("DFSR_TEST_TMPDIR");
	struct statvfs sv;

	if (!base || !*base || statvfs(base, &sv) < 0 ||
	    (unsigned long long)sv.f_bavail * sv.f_frsize < TEST_TMPDIR_MIN_FREE)
		return "/tmp";
	return base;
}

/* Make /tmp/dfsr-test-<tag>-XXXXXX into @dir (size @len) and open it O_PATH into *@fd; under
 * $DFSR_TEST_TMPDIR instead of /tmp when that is set and roomy enough (test_tmpdir_base();
 * CMakeLists.txt: /dev/shm for the tests that wait on many fsyncs of RocksDB opens and
 * commits, which a loaded disk makes slow). Return: 0, or -1 (the cmocka setup convention). */
static inline int test_tmpdir_make(char *dir, size_t len, const char *tag, int *fd)
{
	snprintf(dir, len, "%s/dfsr-test-%s-XXXXXX", test_tmpdir_base(), tag);
	if (!mkdtemp(dir))
		return -1;
	*fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return *fd < 0 ? -1 : 0;
}

static inline int test_tmpdir_rm_one(const char *p, const struct stat *st, int flag,
				     struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* Remove @dir and everything below it. Return: 0 or -1. */
static inline int test_tmpdir_remove(const char *dir)
{
	return nftw(dir, test_tmpdir_rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

#endif
