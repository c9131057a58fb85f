/*
 * journal_fixture.h - shared by test_journal.c and test_scan.c: a real local path in a
 * temporary directory under /tmp with DfsrPrivate, a hand-built folder config (no config
 * file needed), an open journal on real RocksDB, and helpers to make files, look records
 * up by path and collect journal entries.
 */
#ifndef DFSR_TESTS_JOURNAL_FIXTURE_H
#define DFSR_TESTS_JOURNAL_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>

#include "core/filter.h"
#include "core/internal.h"
#include "core/journal.h"
#include "core/layout.h"
#include "tests/unit/tmpdir.h"

struct fx {
	char dir[64];
	int root_fd; /* O_PATH|O_DIRECTORY */
	struct config_folder folder;
	struct journal *j;
	char name[16], ffilter[64], sfilter[64];
};

#define MAX_ENTRIES 256

struct entries {
	size_t n;

	struct {
		uint64_t seq;
		enum journal_op op;
		struct dfsr_uid uid;
		char type;
		uint64_t counter;
		char path[512];
	} e[MAX_ENTRIES];
};

static DFSR_UNUSED int fx_collect(void *arg, const struct journal_entry_info *e)
{
	struct entries *es = arg;

	if (es->n == MAX_ENTRIES)
		return -E2BIG;
	es->e[es->n].seq = e->seq;
	es->e[es->n].op = e->op;
	es->e[es->n].uid = e->uid;
	es->e[es->n].type = e->type;
	es->e[es->n].counter = e->gvsn_counter;
	snprintf(es->e[es->n].path, sizeof(es->e[0].path), "%s", e->path);
	es->n++;
	return 0;
}

/* Entries with seq >= @from. */
static DFSR_UNUSED void fx_entries(struct fx *f, uint64_t from, struct entries *out)
{
	out->n = 0;
	assert_int_equal(journal_list(f->j, from, 0, fx_collect, out), 0);
}

static DFSR_UNUSED uint64_t fx_next_seq(struct fx *f)
{
	struct journal_status s;

	journal_get_status(f->j, &s);
	return s.next_seq;
}

static DFSR_UNUSED int fx_open_journal(struct fx *f, bool ro, struct journal **out)
{
	char err[JOURNAL_ERR_LEN];
	struct journal_opts o = {
		.cfg = NULL, .folder = &f->folder, .root_fd = f->root_fd, .read_only = ro
	};

	return journal_open(&o, out, err);
}

static DFSR_UNUSED void fx_reopen(struct fx *f)
{
	journal_close(f->j);
	f->j = NULL;
	assert_int_equal(fx_open_journal(f, false, &f->j), 0);
}

static DFSR_UNUSED int fx_setup_opts(void **state, bool primary, const char *subfolder_filter)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || sodium_init() < 0)
		return -1;
	strcpy(f->dir, "/tmp/dfsr-h1-test-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->root_fd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (f->root_fd < 0 || mkdirat(f->root_fd, LAYOUT_PRIVATE, 0700) < 0)
		return -1;
	snprintf(f->name, sizeof(f->name), "share");
	snprintf(f->ffilter, sizeof(f->ffilter), "~*, *.bak, *.tmp");
	snprintf(f->sfilter, sizeof(f->sfilter), "%s", subfolder_filter);
	f->folder.name = f->name;
	f->folder.path = f->dir;
	f->folder.mount = f->dir;
	f->folder.primary = primary;
	f->folder.file_filter_text = f->ffilter;
	f->folder.subfolder_filter_text = f->sfilter;
	if (filter_build(&f->folder.file_filter, f->folder.file_filter_text) < 0 ||
	    filter_build(&f->folder.subfolder_filter, subfolder_filter) < 0)
		return -1;
	if (fx_open_journal(f, false, &f->j) < 0)
		return -1;
	*state = f;
	return 0;
}

static DFSR_UNUSED int fx_teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0;
	journal_close(f->j);
	filter_release(&f->folder.file_filter);
	filter_release(&f->folder.subfolder_filter);
	close(f->root_fd);
	test_tmpdir_remove(f->dir);
	free(f);
	return 0;
}

static DFSR_UNUSED void fx_write(struct fx *f, const char *rel, const char *data)
{
	int fd = openat(f->root_fd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static DFSR_UNUSED void fx_mkdir(struct fx *f, const char *rel)
{
	assert_int_equal(mkdirat(f->root_fd, rel, 0755), 0);
}

/* O_PATH descriptor of @rel (caller closes). */
static DFSR_UNUSED int fx_opath(struct fx *f, const char *rel)
{
	int fd = openat(f->root_fd, rel, O_PATH | O_NOFOLLOW | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* UID of @rel through journal_lookup, component by component; zero if any is untracked. */
static DFSR_UNUSED int fx_lookup(struct fx *f, const char *rel, struct dfsr_uid *out)
{
	char buf[512], *save = NULL, *c;
	struct dfsr_uid cur = *journal_root_uid(f->j);
	int rc = 0;

	snprintf(buf, sizeof(buf), "%s", rel);
	for (c = strtok_r(buf, "/", &save); c && rc == 0; c = strtok_r(NULL, "/", &save)) {
		struct dfsr_uid next;

		rc = journal_lookup(f->j, &cur, c, &next);
		cur = next;
	}
	*out = cur;
	return rc;
}

/* Report (@parent_rel, @name) as new and return its UID. */
static DFSR_UNUSED struct dfsr_uid fx_new(struct fx *f, const char *parent_rel, const char *name)
{
	struct dfsr_uid parent, uid;
	char rel[512];
	int fd;

	if (parent_rel && *parent_rel) {
		assert_int_equal(fx_lookup(f, parent_rel, &parent), 0);
		snprintf(rel, sizeof(rel), "%s/%s", parent_rel, name);
	} else {
		parent = *journal_root_uid(f->j);
		snprintf(rel, sizeof(rel), "%s", name);
	}
	fd = fx_opath(f, rel);
	assert_int_equal(journal_note_new(f->j, &parent, name, fd, &uid), 0);
	close(fd);
	return uid;
}

static DFSR_UNUSED void fx_record(struct fx *f, const struct dfsr_uid *uid, struct record *r)
{
	assert_int_equal(journal__get(f->j, uid, r), 0);
}

/* The record's hash equals the hash of the file at @rel now. */
static DFSR_UNUSED void fx_assert_hash(struct fx *f, const char *rel)
{
	struct hash_result h;
	struct dfsr_uid uid;
	struct record r;

	assert_int_equal(fx_lookup(f, rel, &uid), 0);
	assert_false(dfsr_uid_is_zero(&uid));
	fx_record(f, &uid, &r);
	assert_int_equal(hash_at(f->root_fd, rel, &h), 0);
	assert_memory_equal(r.hash, h.hash, HASH_LEN);
	assert_false(r.tombstone);
	record_release(&r);
}

#endif
