/*
 * test_db.c - core/db.c on a full disk: the database lives on a small tmpfs, writes go on
 * until the disk is full, then keep failing with -ENOSPC: the process does not abort
 * (Debian's librocksdb 7.8 asserts when its own text log is written again after a failed
 * write), what was committed stays readable, and event 1101 is logged once for the many
 * identical failures, not once per write.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/db.h"
#include "core/event.h"
#include "core/util.h"

#define VAL_LEN 4096

struct fx {
	char dir[64];
	char dbdir[96];
	char log[96];
	bool mounted;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/dfsr-test-db.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	if (mount("dfsr-test-db", f->dir, "tmpfs", 0, "size=12m") < 0) {
		rmdir(f->dir);
		free(f);
		return -1;
	}
	f->mounted = true;
	snprintf(f->dbdir, sizeof(f->dbdir), "%s/db", f->dir);
	snprintf(f->log, sizeof(f->log), "%s.log", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->mounted)
		umount2(f->dir, MNT_DETACH);
	rmdir(f->dir);
	unlink(f->log);
	free(f);
	return 0;
}

static void key_of(uint64_t i, uint8_t key[8])
{
	db_put_be64(key, i);
}

static int put_one(struct db *db, uint64_t i)
{
	struct db_batch *b = db_batch_new(db);
	uint8_t key[8], val[VAL_LEN];
	int rc;

	assert_non_null(b);
	key_of(i, key);
	randombytes_buf(val, sizeof(val)); /* incompressible: fills the disk as fast as it can */
	db_batch_put(b, DB_CF_EVENTS, key, sizeof(key), val, sizeof(val));
	rc = db_batch_commit(b, false);
	db_batch_free(b);
	return rc;
}

/* Lines of @path that hold @needle. */
static int count_lines(const char *path, const char *needle)
{
	char line[2048];
	FILE *fp = fopen(path, "r");
	int n = 0;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp))
		n += strstr(line, needle) != NULL;
	fclose(fp);
	return n;
}

static void full_disk_fails_every_write_cleanly(void **state)
{
	struct fx *f = *state;
	char err[DB_ERR_LEN];
	struct dfsr_buf val;
	struct db *db;
	uint64_t n = 0;
	int rc = 0, saved, logfd;

	assert_int_equal(db_open(f->dbdir, false, &db, err), 0);
	/* 1101 lines go to stderr (event_init(..., true)): into a file for counting */
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	logfd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(saved >= 0 && logfd >= 0);
	assert_true(dup2(logfd, STDERR_FILENO) >= 0);
	close(logfd);
	while (n < 100000 && (rc = put_one(db, n)) == 0)
		n++;
	/* full: every later write fails the same way, and nothing aborts */
	for (int i = 0; i < 200; i++)
		assert_int_equal(put_one(db, n + 1 + (uint64_t)i), -ENOSPC);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);

	assert_int_equal(rc, -ENOSPC);
	assert_true(n > 100); /* the disk held some first */
	/* what was committed stays readable */
	dfsr_buf_init(&val);
	for (uint64_t i = 0; i < n; i += n / 10 + 1) {
		uint8_t key[8];

		key_of(i, key);
		assert_int_equal(db_get(db, NULL, DB_CF_EVENTS, key, sizeof(key), &val), 0);
		assert_int_equal(val.len, VAL_LEN);
	}
	dfsr_buf_release(&val);
	/* 201 failed writes, one or two messages (the first failure may differ from the
	 * stored error that the others return), not 201 */
	int lines = count_lines(f->log, "1101");

	print_message("%" PRIu64 " writes fit; 201 failed; 1101 logged %d times\n", n, lines);
	assert_true(lines >= 1 && lines <= 2);
	db_close(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(full_disk_fails_every_write_cleanly, setup,
						teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_db needs root (mounts a small tmpfs); skipped\n");
		return 77;
	}
	if (sodium_init() < 0)
		return 1;
	event_init("test_db", true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
