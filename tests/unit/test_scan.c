/*
 * test_scan.c - core/scan.c on real trees: the initial build records everything (hashes
 * equal hash_at(), DfsrPrivate and filtered names skipped, state moves on), and a
 * consistency scan after out-of-band edits makes exactly the expected versions,
 * tombstones and records; an unchanged tree makes none. A read-only folder moves new
 * objects aside and records changes to its own versions (the reverts of received
 * versions are tested with a partner in test_replica.c).
 */
#include <sys/time.h>
#include <time.h>

#include "journal_fixture.h"

static int setup_primary(void **state)
{
	int rc = fx_setup_opts(state, true, "build*");

	if (rc == 0)
		setenv("DFSR_T", ((struct fx *)*state)->dir, 1);
	return rc;
}

static int setup_secondary(void **state)
{
	return fx_setup_opts(state, false, "");
}

static void base_tree(struct fx *f)
{
	fx_write(f, "top.txt", "top");
	fx_mkdir(f, "docs");
	fx_write(f, "docs/a.txt", "alpha");
	fx_write(f, "docs/b.txt", "bravo!");
	fx_write(f, "docs/~$lock.docx", "lock"); /* file filter */
	fx_write(f, "docs/old.bak", "bak");      /* file filter */
	fx_mkdir(f, "docs/deep");
	fx_mkdir(f, "docs/deep/er");
	fx_write(f, "docs/deep/er/c.txt", "charlie");
	assert_int_equal(symlinkat("../a.txt", f->root_fd, "docs/deep/ln"), 0);
	fx_mkdir(f, "build-out"); /* subfolder filter "build*" */
	fx_write(f, "build-out/x.o", "obj");
	fx_write(f, "DfsrPrivate/not-me", "private");
	fx_write(f, "empty", "");
}

static const char *const tracked[] = {
	"top.txt",   "docs",         "docs/a.txt",         "docs/b.txt",
	"docs/deep", "docs/deep/er", "docs/deep/er/c.txt", "docs/deep/ln",
	"empty",
};

static void initial_build(void **state)
{
	struct fx *f = *state;
	struct scan_result r;
	struct journal_status s;
	struct dfsr_uid uid;
	struct entries es;

	base_tree(f);
	assert_int_equal(scan_folder(f->j, &r), 0);
	assert_int_equal(r.created, DFSR_ARRAY_SIZE(tracked));
	assert_int_equal(r.changed + r.removed + r.skipped, 0);
	for (size_t i = 0; i < DFSR_ARRAY_SIZE(tracked); i++)
		fx_assert_hash(f, tracked[i]);
	assert_int_equal(fx_lookup(f, "docs/old.bak", &uid), 0);
	assert_true(dfsr_uid_is_zero(&uid));
	assert_int_equal(fx_lookup(f, "build-out/x.o", &uid), 0);
	assert_true(dfsr_uid_is_zero(&uid));
	assert_int_equal(fx_lookup(f, "DfsrPrivate", &uid), 0);
	assert_true(dfsr_uid_is_zero(&uid));
	fx_entries(f, 0, &es);
	assert_int_equal(es.n, DFSR_ARRAY_SIZE(tracked));
	for (size_t i = 0; i < es.n; i++) {
		assert_int_equal(es.e[i].op, JOURNAL_OP_CREATE);
		assert_null(strstr(es.e[i].path, "DfsrPrivate"));
		assert_null(strstr(es.e[i].path, "build"));
	}
	journal_get_status(f->j, &s);
	assert_int_equal(s.state, JOURNAL_STATE_NORMAL); /* primary */
	assert_int_equal(s.files, 6);
	assert_int_equal(s.folders, 3);
	assert_int_equal(s.bytes, 3 + 5 + 6 + 7 + 8 + 0); /* the link's target is 8 bytes */
	assert_false(s.scanning);
	assert_int_equal(s.scan_files_done, DFSR_ARRAY_SIZE(tracked));
	assert_int_equal(s.scan_files_total, DFSR_ARRAY_SIZE(tracked));
	assert_int_equal(s.scan_bytes_done, s.scan_bytes_total);
}

static void secondary_goes_to_initial_sync(void **state)
{
	struct fx *f = *state;

	fx_write(f, "one", "1");
	assert_int_equal(scan_folder(f->j, NULL), 0);
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_INITIAL_SYNC);
	assert_string_equal(journal_state_name(journal_state(f->j)), "initial-sync");
}

/* Find the one entry for @path after @seq. */
static const char *op_of(const struct entries *es, const char *path, int *count)
{
	const char *name = NULL;

	*count = 0;
	for (size_t i = 0; i < es->n; i++) {
		if (strcmp(es->e[i].path, path) == 0) {
			name = journal_op_name(es->e[i].op);
			(*count)++;
		}
	}
	return name ? name : "none";
}

static void expect_op(const struct entries *es, const char *path, const char *op)
{
	int n;
	const char *got = op_of(es, path, &n);

	if (strcmp(got, op) != 0 || (strcmp(op, "none") != 0 && n != 1))
		fail_msg("%s: expected %s, got %s (%d entries)", path, op, got, n);
}

static void out_of_band_edits(void **state)
{
	struct fx *f = *state;
	struct dfsr_uid before_b, after_b;
	struct scan_result r;
	struct journal_status s;
	struct entries es;
	struct record rec;
	uint64_t seq;

	base_tree(f);
	assert_int_equal(scan_folder(f->j, NULL), 0);
	assert_int_equal(fx_lookup(f, "docs/b.txt", &before_b), 0);

	/* an unchanged tree: nothing */
	seq = fx_next_seq(f);
	assert_int_equal(scan_folder(f->j, &r), 0);
	assert_int_equal(r.created + r.changed + r.removed + r.skipped, 0);
	assert_int_equal(r.files, DFSR_ARRAY_SIZE(tracked));
	assert_int_equal(fx_next_seq(f), seq);

	/* edits behind dfsr's back */
	fx_write(f, "docs/a.txt", "alpha, modified");
	assert_int_equal(fchmodat(f->root_fd, "docs/b.txt", 0600, 0), 0);
	assert_int_equal(unlinkat(f->root_fd, "top.txt", 0), 0);
	fx_write(f, "new.txt", "brand new");
	fx_mkdir(f, "newdir");
	fx_mkdir(f, "newdir/sub");
	fx_write(f, "newdir/sub/n1", "n1");
	fx_write(f, "newdir/n2", "n2");
	fx_write(f, "newdir/n3.tmp", "filtered");
	assert_int_equal(utimensat(f->root_fd, "docs/deep/er/c.txt",
				   (struct timespec[2]){ { 5, 0 }, { 5, 0 } }, 0),
			 0); /* touch only */
	assert_int_equal(system("rm -rf -- \"$DFSR_T/docs/deep/er\""), 0);
	fx_mkdir(f, "docs/deep/er"); /* same name, new directory, empty */

	seq = fx_next_seq(f);
	assert_int_equal(scan_folder(f->j, &r), 0);
	fx_entries(f, seq, &es);
	expect_op(&es, "docs/a.txt", "modify");
	expect_op(&es, "docs/b.txt", "meta");
	expect_op(&es, "top.txt", "delete");
	expect_op(&es, "new.txt", "create");
	expect_op(&es, "newdir", "create");
	expect_op(&es, "newdir/sub", "create");
	expect_op(&es, "newdir/sub/n1", "create");
	expect_op(&es, "newdir/n2", "create");
	expect_op(&es, "newdir/n3.tmp", "none");
	expect_op(&es, "docs/deep/er/c.txt", "delete"); /* removed with its directory */
	expect_op(&es, "docs/deep/ln", "none");
	expect_op(&es, "empty", "none");
	expect_op(&es, "docs", "none");
	/* docs/deep/er: the old directory was deleted and the new one is checked as the same
	 * record (same name, same type, same hash): no new version for it */
	expect_op(&es, "docs/deep/er", "none");
	assert_int_equal(es.n, 9);
	assert_int_equal(r.created, 5);
	assert_int_equal(r.changed, 2);
	assert_int_equal(r.removed, 2);
	fx_assert_hash(f, "docs/a.txt");
	fx_assert_hash(f, "docs/b.txt");
	fx_assert_hash(f, "newdir/sub/n1");
	assert_int_equal(fx_lookup(f, "docs/b.txt", &after_b), 0);
	assert_memory_equal(before_b.b, after_b.b, DFSR_UID_LEN);
	journal_get_status(f->j, &s);
	assert_int_equal(s.files, 7);
	assert_int_equal(s.folders, 5);
	assert_int_equal(s.tombstones, 2);

	/* a touch of a recorded file: no version, stored times follow */
	assert_int_equal(
		utimensat(f->root_fd, "docs/b.txt", (struct timespec[2]){ { 7, 0 }, { 7, 0 } }, 0),
		0);
	seq = fx_next_seq(f);
	assert_int_equal(scan_folder(f->j, &r), 0);
	assert_int_equal(fx_next_seq(f), seq);
	assert_int_equal(r.changed, 0);
	fx_record(f, &after_b, &rec);
	assert_true(rec.mtime_ns == 7000000000);
	record_release(&rec);

	/* a file replaced by a directory of the same name */
	assert_int_equal(unlinkat(f->root_fd, "new.txt", 0), 0);
	fx_mkdir(f, "new.txt");
	seq = fx_next_seq(f);
	assert_int_equal(scan_folder(f->j, &r), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 2);
	assert_int_equal(es.e[0].op, JOURNAL_OP_DELETE);
	assert_int_equal(es.e[1].op, JOURNAL_OP_CREATE);
	assert_int_equal(es.e[1].type, 'd');
}

static void many_files(void **state)
{
	struct fx *f = *state;
	struct journal_status s;
	struct scan_result r;
	char name[64];

	fx_mkdir(f, "big");
	for (int i = 0; i < 1500; i++) {
		snprintf(name, sizeof(name), "big/f%04d", i);
		fx_write(f, name, name);
	}
	assert_int_equal(scan_folder(f->j, &r), 0);
	assert_int_equal(r.created, 1501);
	journal_get_status(f->j, &s);
	assert_int_equal(s.files, 1500);
	for (int i = 0; i < 1500; i += 100) {
		snprintf(name, sizeof(name), "big/f%04d", i);
		assert_int_equal(unlinkat(f->root_fd, name, 0), 0);
	}
	assert_int_equal(scan_folder(f->j, &r), 0);
	assert_int_equal(r.removed, 15);
	assert_int_equal(r.created + r.changed, 0);
	journal_get_status(f->j, &s);
	assert_int_equal(s.files, 1485);
	assert_int_equal(s.tombstones, 15);
}

struct preserved {
	size_t n;
	enum manifest_type type[8];
	char path[8][64];
};

static int note_preserved(void *arg, const struct manifest_entry *e)
{
	struct preserved *p = arg;

	if (p->n < 8) {
		p->type[p->n] = e->type;
		snprintf(p->path[p->n], sizeof(p->path[0]), "%s", e->path);
	}
	p->n++;
	return 0;
}

/*
 * A read-only folder (docs/conflicts.md §11) whose records are all its own versions (a
 * primary's initial build): nobody can send them again, so their changes are recorded as
 * on a writable folder; a new object is still moved aside and never recorded.
 */
static void read_only_own_versions(void **state)
{
	struct fx *f = *state;
	char err[LAYOUT_ERR_LEN];
	struct preserved p = { 0 };
	struct scan_result r;
	struct entries es;
	uint64_t seq;
	int pfd;

	assert_int_equal(layout_prepare(f->root_fd, err), 0);
	base_tree(f);
	assert_int_equal(scan_folder(f->j, NULL), 0);
	f->folder.read_only = true;
	fx_write(f, "docs/a.txt", "alpha, modified");
	assert_int_equal(unlinkat(f->root_fd, "top.txt", 0), 0);
	fx_write(f, "new.txt", "brand new");
	fx_mkdir(f, "newdir");
	fx_write(f, "newdir/n", "n");
	seq = fx_next_seq(f);
	assert_int_equal(scan_folder(f->j, &r), 0);
	fx_entries(f, seq, &es);
	expect_op(&es, "docs/a.txt", "modify");
	expect_op(&es, "top.txt", "delete");
	expect_op(&es, "new.txt", "none");
	expect_op(&es, "newdir", "none");
	assert_int_equal(es.n, 2);
	assert_int_equal(r.created, 0);
	assert_int_equal(r.changed, 1);
	assert_int_equal(r.removed, 1);
	assert_int_equal(r.reverted, 2);
	assert_int_equal(journal__revert_pending(f->j), 0);
	assert_int_equal(faccessat(f->root_fd, "new.txt", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	assert_int_equal(faccessat(f->root_fd, "newdir", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	pfd = openat(f->root_fd, LAYOUT_PRIVATE, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(pfd >= 0);
	assert_int_equal(manifest_list(pfd, MANIFEST_CONFLICT, note_preserved, &p), 0);
	close(pfd);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.path[0], "new.txt");
	assert_string_equal(p.path[1], "newdir");
	assert_int_equal(p.type[0], MANIFEST_TYPE_DELETED);
	assert_int_equal(p.type[1], MANIFEST_TYPE_DELETED);

	/* a second scan: nothing left to revert */
	assert_int_equal(scan_folder(f->j, &r), 0);
	assert_int_equal(r.created + r.changed + r.removed + r.reverted, 0);
}

/* In initial sync a read-only folder records new objects: §10 decides them. */
static void read_only_initial_sync(void **state)
{
	struct fx *f = *state;
	struct scan_result r;

	base_tree(f);
	assert_int_equal(scan_folder(f->j, NULL), 0);
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_INITIAL_SYNC);
	f->folder.read_only = true;
	fx_write(f, "new.txt", "brand new");
	assert_int_equal(scan_folder(f->j, &r), 0);
	assert_int_equal(r.created, 1);
	assert_int_equal(r.reverted, 0);
	fx_assert_hash(f, "new.txt");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(initial_build, setup_primary, fx_teardown),
		cmocka_unit_test_setup_teardown(secondary_goes_to_initial_sync, setup_secondary,
						fx_teardown),
		cmocka_unit_test_setup_teardown(out_of_band_edits, setup_primary, fx_teardown),
		cmocka_unit_test_setup_teardown(read_only_own_versions, setup_primary, fx_teardown),
		cmocka_unit_test_setup_teardown(read_only_initial_sync, setup_secondary,
						fx_teardown),
		cmocka_unit_test_setup_teardown(many_files, setup_primary, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
