/*
 * test_journal.c - core/journal.c on real RocksDB and real files: open/close and unclean
 * detection (a forked child that exits without closing), locking, every change call and
 * the exact journal entry and record it produces, filters, subtree tombstones, status
 * counters across reopen, the event log and paths.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>

#include "journal_fixture.h"

static int setup(void **state)
{
	return fx_setup_opts(state, true, "skip*");
}

static void open_creates_ids(void **state)
{
	struct fx *f = *state;
	static const char msg[] = "dfsr-root\0share";
	uint8_t md[32];
	unsigned int mdlen = 0;
	struct dfsr_uid db1;
	struct journal_status s;

	assert_false(dfsr_uid_is_zero(journal_db_id(f->j)));
	assert_int_equal(EVP_Digest(msg, sizeof(msg) - 1, md, &mdlen, EVP_sha256(), NULL), 1);
	assert_memory_equal(journal_root_uid(f->j)->b, md, DFSR_UID_LEN);
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_INITIAL_BUILD);
	assert_string_equal(journal_state_name(journal_state(f->j)), "initial-build");
	assert_false(journal_was_unclean(f->j));
	journal_get_status(f->j, &s);
	assert_int_equal(s.files + s.folders + s.bytes + s.tombstones + s.journal, 0);
	assert_int_equal(s.next_seq, 1);
	db1 = *journal_db_id(f->j);
	fx_reopen(f);
	assert_memory_equal(journal_db_id(f->j)->b, db1.b, DFSR_UID_LEN);
	assert_false(journal_was_unclean(f->j));
	assert_int_equal(journal_set_state(f->j, JOURNAL_STATE_NORMAL), 0);
	fx_reopen(f);
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_NORMAL);
}

static void locked_and_read_only(void **state)
{
	struct fx *f = *state;
	struct journal *other = NULL;
	char err[JOURNAL_ERR_LEN];
	struct journal_opts o = { .folder = &f->folder, .root_fd = f->root_fd };
	pid_t pid;
	int status;

	assert_int_equal(journal_open(&o, &other, err), -EBUSY); /* same process */
	assert_non_null(strstr(err, "locked"));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fx_open_journal(f, false, &other) == -EBUSY ? 0 : 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* read-only opens while the writer runs */
	assert_int_equal(fx_open_journal(f, true, &other), 0);
	assert_memory_equal(journal_db_id(other)->b, journal_db_id(f->j)->b, DFSR_UID_LEN);
	journal_close(other);
	/* read-only with no database */
	{
		struct fx g = *f;
		char empty[] = "/tmp/dfsr-h1-empty-XXXXXX";

		assert_non_null(mkdtemp(empty));
		g.root_fd = open(empty, O_PATH | O_DIRECTORY | O_CLOEXEC);
		assert_true(g.root_fd >= 0);
		assert_int_equal(fx_open_journal(&g, true, &other), -ENOENT);
		close(g.root_fd);
		assert_int_equal(rmdir(empty), 0);
	}
}

static void new_change_touch_chmod(void **state)
{
	struct fx *f = *state;
	struct dfsr_uid uid, again;
	struct journal_status s;
	struct entries es;
	struct record r;
	uint64_t seq;
	int fd;

	fx_write(f, "a.txt", "hello");
	uid = fx_new(f, "", "a.txt");
	assert_false(dfsr_uid_is_zero(&uid));
	fx_entries(f, 0, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_CREATE);
	assert_string_equal(es.e[0].path, "a.txt");
	assert_memory_equal(es.e[0].uid.b, uid.b, DFSR_UID_LEN);
	assert_int_equal(es.e[0].type, 'f');
	assert_int_equal(es.e[0].counter, 1);
	fx_assert_hash(f, "a.txt");
	journal_get_status(f->j, &s);
	assert_int_equal(s.files, 1);
	assert_int_equal(s.bytes, 5);
	assert_int_equal(s.journal, 1);
	assert_int_equal(fx_lookup(f, "a.txt", &again), 0);
	assert_memory_equal(again.b, uid.b, DFSR_UID_LEN);

	/* data change */
	seq = fx_next_seq(f);
	fx_write(f, "a.txt", "hello, world");
	fd = fx_opath(f, "a.txt");
	assert_int_equal(journal_note_change(f->j, &uid, fd, JOURNAL_DATA), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_MODIFY);
	assert_int_equal(es.e[0].counter, 2);
	fx_assert_hash(f, "a.txt");
	journal_get_status(f->j, &s);
	assert_int_equal(s.bytes, 12);

	/* touch: no new version, but the stored mtime follows */
	seq = fx_next_seq(f);
	assert_int_equal(
		utimensat(f->root_fd, "a.txt", (struct timespec[2]){ { 1000, 0 }, { 1000, 5 } }, 0),
		0);
	assert_int_equal(journal_note_change(f->j, &uid, fd, 0), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 0);
	fx_record(f, &uid, &r);
	assert_true(r.mtime_ns == 1000000000005);
	assert_int_equal(r.gvsn.counter, 2);
	record_release(&r);

	/* chmod: a meta version */
	assert_int_equal(fchmodat(f->root_fd, "a.txt", 0600, 0), 0);
	assert_int_equal(journal_note_change(f->j, &uid, fd, 0), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_META);
	fx_record(f, &uid, &r);
	assert_int_equal(r.mode, 0600);
	assert_int_equal(r.gvsn.counter, 3);
	assert_memory_equal(r.gvsn.db.b, journal_db_id(f->j)->b, DFSR_UID_LEN);
	assert_int_equal(version_vector_get(&r.vv, journal_db_id(f->j)), 3);
	record_release(&r);
	close(fd);

	/* zero / unknown uids are no-ops */
	memset(&again, 0, sizeof(again));
	fd = fx_opath(f, "a.txt");
	assert_int_equal(journal_note_change(f->j, &again, fd, JOURNAL_DATA), 0);
	again.b[3] = 9;
	assert_int_equal(journal_note_change(f->j, &again, fd, JOURNAL_DATA), 0);
	close(fd);
	fx_entries(f, seq + 1, &es);
	assert_int_equal(es.n, 0);
}

/* Rename @from to @to, both at the root, and journal it; @out: the UID the rename names. */
static void rename_at_root(struct fx *f, const char *from, const char *to, struct dfsr_uid *out)
{
	const struct dfsr_uid *root = journal_root_uid(f->j);
	int fd;

	assert_int_equal(renameat(f->root_fd, from, f->root_fd, to), 0);
	fd = fx_opath(f, to);
	assert_int_equal(journal_note_rename(f->j,
					     &(struct journal_rename){ .old_parent = root,
								       .old_name = from,
								       .new_parent = root,
								       .new_name = to,
								       .fd = fd,
								       .other_fd = -1 },
					     out, NULL),
			 0);
	close(fd);
}

static void remove_and_rename(void **state)
{
	struct fx *f = *state;
	const struct dfsr_uid *root = journal_root_uid(f->j);
	struct dfsr_uid a, b, out, other;
	struct journal_status s;
	struct entries es;
	uint64_t seq;
	int fd, fd2;

	fx_write(f, "a", "A");
	fx_write(f, "b", "BB");
	a = fx_new(f, "", "a");
	b = fx_new(f, "", "b");

	/* plain rename keeps the uid */
	seq = fx_next_seq(f);
	rename_at_root(f, "a", "c", &out);
	assert_memory_equal(out.b, a.b, DFSR_UID_LEN);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_RENAME);
	assert_string_equal(es.e[0].path, "c");
	assert_int_equal(fx_lookup(f, "a", &out), -ENOENT);
	assert_int_equal(fx_lookup(f, "c", &out), 0);
	assert_memory_equal(out.b, a.b, DFSR_UID_LEN);

	/* exchange */
	seq = fx_next_seq(f);
	assert_int_equal(renameat2(f->root_fd, "b", f->root_fd, "c", RENAME_EXCHANGE), 0);
	fd = fx_opath(f, "c");
	fd2 = fx_opath(f, "b");
	assert_int_equal(journal_note_rename(f->j,
					     &(struct journal_rename){ .old_parent = root,
								       .old_name = "b",
								       .new_parent = root,
								       .new_name = "c",
								       .exchange = true,
								       .fd = fd,
								       .other_fd = fd2 },
					     &out, &other),
			 0);
	close(fd);
	close(fd2);
	assert_memory_equal(out.b, b.b, DFSR_UID_LEN);
	assert_memory_equal(other.b, a.b, DFSR_UID_LEN);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 2);
	assert_int_equal(es.e[0].op, JOURNAL_OP_RENAME);
	assert_int_equal(es.e[1].op, JOURNAL_OP_RENAME);
	assert_int_equal(fx_lookup(f, "c", &out), 0);
	assert_memory_equal(out.b, b.b, DFSR_UID_LEN);
	assert_int_equal(fx_lookup(f, "b", &out), 0);
	assert_memory_equal(out.b, a.b, DFSR_UID_LEN);
	fx_assert_hash(f, "b");
	fx_assert_hash(f, "c");

	/* rename over a tracked target: target becomes a tombstone */
	seq = fx_next_seq(f);
	rename_at_root(f, "b", "c", &out);
	assert_memory_equal(out.b, a.b, DFSR_UID_LEN);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 2);
	assert_int_equal(es.e[0].op, JOURNAL_OP_DELETE);
	assert_memory_equal(es.e[0].uid.b, b.b, DFSR_UID_LEN);
	assert_int_equal(es.e[1].op, JOURNAL_OP_RENAME);

	/* remove */
	seq = fx_next_seq(f);
	assert_int_equal(unlinkat(f->root_fd, "c", 0), 0);
	assert_int_equal(journal_note_remove(f->j, root, "c"), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_DELETE);
	assert_string_equal(es.e[0].path, "c");
	assert_int_equal(journal_note_remove(f->j, root, "c"), 0); /* nothing there: no-op */
	assert_int_equal(fx_next_seq(f), seq + 1);
	journal_get_status(f->j, &s);
	assert_int_equal(s.files, 0);
	assert_int_equal(s.bytes, 0);
	assert_int_equal(s.tombstones, 2);
}

/* Paths and parents come from the directories' cache: every change of a directory record
 * must show in the next entry made below it. */
static void directory_changes_show_below(void **state)
{
	struct fx *f = *state;
	struct dfsr_uid top, sub, out;
	struct entries es;
	uint64_t seq;
	int fd;

	fx_mkdir(f, "top");
	fx_mkdir(f, "top/sub");
	top = fx_new(f, "", "top");
	sub = fx_new(f, "top", "sub");
	fx_write(f, "top/sub/f1", "1");
	seq = fx_next_seq(f);
	fx_new(f, "top/sub", "f1"); /* reads top and sub: cached */
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_string_equal(es.e[0].path, "top/sub/f1");

	/* the grandparent renamed: the next path below it has the new name */
	rename_at_root(f, "top", "moved", &out);
	assert_memory_equal(out.b, top.b, DFSR_UID_LEN);
	fx_write(f, "moved/sub/f2", "2");
	seq = fx_next_seq(f);
	fx_new(f, "moved/sub", "f2");
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_string_equal(es.e[0].path, "moved/sub/f2");
	/* and a removal below it too */
	seq = fx_next_seq(f);
	assert_int_equal(unlinkat(f->root_fd, "moved/sub/f1", 0), 0);
	assert_int_equal(journal_note_remove(f->j, &sub, "f1"), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_DELETE);
	assert_string_equal(es.e[0].path, "moved/sub/f1");

	/* the parent (read as live before) deleted: a new name in it is no longer tracked */
	assert_int_equal(system("rm -rf -- \"$DFSR_T/moved/sub\""), 0);
	assert_int_equal(journal_note_remove(f->j, &top, "sub"), 0);
	fx_write(f, "moved/late", "3");
	fd = fx_opath(f, "moved/late");
	assert_int_equal(journal_note_new(f->j, &sub, "late", fd, &out), 0);
	close(fd);
	assert_true(dfsr_uid_is_zero(&out));
	assert_int_equal(journal_lookup(f->j, &sub, "late", &out), 0);
	assert_true(dfsr_uid_is_zero(&out));
}

/* More directories than the cache keeps (JOURNAL_DIRS_MAX, 4096): it starts afresh and
 * every path stays right. */
static void many_directories(void **state)
{
	struct fx *f = *state;
	char d[32], rel[64];
	struct dfsr_uid dir, uid;
	struct entries es;
	uint64_t seq;
	int fd;

	for (int i = 0; i < 4200; i++) {
		snprintf(d, sizeof(d), "d%04d", i);
		fx_mkdir(f, d);
		dir = fx_new(f, "", d);
		snprintf(rel, sizeof(rel), "%s/x", d);
		fx_write(f, rel, "x");
		fd = fx_opath(f, rel);
		assert_int_equal(journal_note_new(f->j, &dir, "x", fd, &uid), 0);
		close(fd);
		assert_false(dfsr_uid_is_zero(&uid));
	}
	/* the first ones again, after the cache was emptied and filled past them */
	for (int i = 0; i < 3; i++) {
		snprintf(d, sizeof(d), "d%04d", i);
		snprintf(rel, sizeof(rel), "%s/y", d);
		fx_write(f, rel, "y");
		seq = fx_next_seq(f);
		fx_new(f, d, "y");
		fx_entries(f, seq, &es);
		assert_int_equal(es.n, 1);
		assert_string_equal(es.e[0].path, rel);
	}
}

static void filters_and_tmp_renames(void **state)
{
	struct fx *f = *state;
	const struct dfsr_uid *root = journal_root_uid(f->j);
	struct dfsr_uid uid, zero, out;
	struct entries es;
	uint64_t seq;
	int fd;

	memset(&zero, 0, sizeof(zero));
	fx_write(f, "x.tmp", "tmp");
	fx_write(f, "~lock", "l");
	seq = fx_next_seq(f);
	uid = fx_new(f, "", "x.tmp");
	assert_true(dfsr_uid_is_zero(&uid));
	uid = fx_new(f, "", "~lock");
	assert_true(dfsr_uid_is_zero(&uid));
	fd = fx_opath(f, "~lock");
	assert_int_equal(journal_note_new(f->j, &zero, "y", fd, &uid), 0); /* zero parent */
	assert_true(dfsr_uid_is_zero(&uid));
	assert_int_equal(journal_lookup(f->j, &zero, "y", &uid), 0);
	close(fd);
	assert_int_equal(journal_lookup(f->j, root, "x.tmp", &uid), 0);
	assert_true(dfsr_uid_is_zero(&uid));
	assert_int_equal(journal_lookup(f->j, root, LAYOUT_PRIVATE, &uid), 0);
	assert_true(dfsr_uid_is_zero(&uid));
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 0);

	/* *.tmp -> real name: a new record */
	rename_at_root(f, "x.tmp", "doc.txt", &out);
	assert_false(dfsr_uid_is_zero(&out));
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_CREATE);
	assert_string_equal(es.e[0].path, "doc.txt");
	fx_assert_hash(f, "doc.txt");
	uid = out;

	/* save pattern: new content written to doc.tmp, renamed over doc.txt: same uid */
	seq = fx_next_seq(f);
	fx_write(f, "doc.tmp", "new content");
	rename_at_root(f, "doc.tmp", "doc.txt", &out);
	assert_memory_equal(out.b, uid.b, DFSR_UID_LEN);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_MODIFY);
	fx_assert_hash(f, "doc.txt");

	/* real -> *.bak: tombstone */
	seq = fx_next_seq(f);
	rename_at_root(f, "doc.txt", "doc.bak", &out);
	assert_true(dfsr_uid_is_zero(&out));
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_int_equal(es.e[0].op, JOURNAL_OP_DELETE);
	assert_memory_equal(es.e[0].uid.b, uid.b, DFSR_UID_LEN);
	assert_int_equal(journal_lookup(f->j, root, "doc.bak", &out), 0);
	assert_true(dfsr_uid_is_zero(&out));
	assert_int_equal(fx_lookup(f, "doc.txt", &out), -ENOENT);
}

static void make_tree(struct fx *f, const char *d)
{
	char p[128];

	fx_mkdir(f, d);
	snprintf(p, sizeof(p), "%s/e", d);
	fx_mkdir(f, p);
	snprintf(p, sizeof(p), "%s/f1", d);
	fx_write(f, p, "one");
	snprintf(p, sizeof(p), "%s/e/f2", d);
	fx_write(f, p, "two2");
	snprintf(p, sizeof(p), "%s/e/skip.tmp", d);
	fx_write(f, p, "filtered");
	snprintf(p, sizeof(p), "%s/e/link", d);
	assert_int_equal(symlinkat("f2", f->root_fd, p), 0);
}

static void subtrees(void **state)
{
	struct fx *f = *state;
	const struct dfsr_uid *root = journal_root_uid(f->j);
	struct dfsr_uid d, out;
	struct journal_status s;
	struct entries es;
	struct dfsr_buf path;
	uint64_t seq;

	/* a non-empty directory appearing at once is recorded with everything below */
	make_tree(f, "d");
	seq = fx_next_seq(f);
	d = fx_new(f, "", "d");
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 5); /* d, d/e, d/e/f2, d/e/link, d/f1 */
	for (size_t i = 0; i < es.n; i++)
		assert_int_equal(es.e[i].op, JOURNAL_OP_CREATE);
	assert_string_equal(es.e[0].path, "d");
	fx_assert_hash(f, "d/e/f2");
	fx_assert_hash(f, "d/e/link");
	assert_int_equal(fx_lookup(f, "d/e/skip.tmp", &out), 0);
	assert_true(dfsr_uid_is_zero(&out));
	assert_int_equal(fx_lookup(f, "d/e/f2", &out), 0);
	dfsr_buf_init(&path);
	assert_int_equal(journal_path(f->j, &out, &path), 0);
	assert_string_equal(path.p, "d/e/f2");
	assert_int_equal(journal_path(f->j, root, &path), 0);
	assert_string_equal(path.p, "");
	dfsr_buf_release(&path);
	journal_get_status(f->j, &s);
	assert_int_equal(s.files, 3);
	assert_int_equal(s.folders, 2);
	assert_int_equal(s.bytes, 3 + 4 + 2);

	/* moving it under an untracked name (subfolder filter "skip*") tombstones all */
	seq = fx_next_seq(f);
	rename_at_root(f, "d", "skipme", &out);
	assert_true(dfsr_uid_is_zero(&out));
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 5);
	for (size_t i = 0; i < es.n; i++)
		assert_int_equal(es.e[i].op, JOURNAL_OP_DELETE);
	assert_memory_equal(es.e[4].uid.b, d.b, DFSR_UID_LEN); /* children first */
	journal_get_status(f->j, &s);
	assert_int_equal(s.files + s.folders + s.bytes, 0);
	assert_int_equal(s.tombstones, 5);

	/* and back out of it: recorded anew, with new uids */
	seq = fx_next_seq(f);
	rename_at_root(f, "skipme", "d", &out);
	assert_false(dfsr_uid_is_zero(&out));
	assert_memory_not_equal(out.b, d.b, DFSR_UID_LEN);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 5);
	fx_assert_hash(f, "d/f1");

	/* rm -rf d, reported as one remove of d */
	seq = fx_next_seq(f);
	assert_int_equal(system("rm -rf -- \"$DFSR_T/d\""), 0);
	assert_int_equal(journal_note_remove(f->j, root, "d"), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 5);
	for (size_t i = 0; i < es.n; i++)
		assert_int_equal(es.e[i].op, JOURNAL_OP_DELETE);
	journal_get_status(f->j, &s);
	assert_int_equal(s.files + s.folders + s.bytes, 0);
	assert_int_equal(s.tombstones, 10);
	assert_int_equal(s.journal, 20);
	fx_reopen(f);
	journal_get_status(f->j, &s);
	assert_int_equal(s.tombstones, 10);
	assert_int_equal(s.journal, 20);
	assert_int_equal(s.next_seq, 21);
}

static int setup_env(void **state)
{
	int rc = setup(state);

	if (rc == 0)
		setenv("DFSR_T", ((struct fx *)*state)->dir, 1);
	return rc;
}

/*
 * Close the journal, run @fn on it opened again in a child process that exits without
 * closing it (a crash: nothing written at close), then open it again here. @fn returns 0,
 * or an exit code that fails the test.
 */
static void fx_crash_after(struct fx *f, int (*fn)(struct fx *f, struct journal *cj, void *arg),
			   void *arg)
{
	int status;
	pid_t pid;

	journal_close(f->j);
	f->j = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct journal *cj;

		if (fx_open_journal(f, false, &cj) < 0)
			_exit(2);
		_exit(fn(f, cj, arg)); /* no journal_close */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(fx_open_journal(f, false, &f->j), 0);
}

static int note_crash_file(struct fx *f, struct journal *cj, void *arg)
{
	struct dfsr_uid u;
	int fd = openat(f->root_fd, "crash.txt", O_PATH | O_NOFOLLOW | O_CLOEXEC);

	(void)arg;
	if (fd < 0 || journal_note_new(cj, journal_root_uid(cj), "crash.txt", fd, &u) < 0)
		return 3;
	return 0;
}

static void unclean_stop(void **state)
{
	struct fx *f = *state;
	struct journal_status s;
	struct dfsr_uid uid;
	struct entries es;

	fx_write(f, "crash.txt", "survives");
	fx_crash_after(f, note_crash_file, NULL);
	assert_true(journal_was_unclean(f->j));
	assert_int_equal(fx_lookup(f, "crash.txt", &uid), 0);
	assert_false(dfsr_uid_is_zero(&uid));
	fx_assert_hash(f, "crash.txt");
	fx_entries(f, 0, &es);
	assert_int_equal(es.n, 1);
	journal_get_status(f->j, &s);
	assert_int_equal(s.files, 1);
	assert_int_equal(s.bytes, 8);
	fx_reopen(f); /* a clean close in between */
	assert_false(journal_was_unclean(f->j));
}

struct seen_events {
	int n;
	int found;
};

static int ev_collect(void *arg, const struct journal_event_info *e)
{
	struct seen_events *s = arg;

	s->n++;
	if (e->id == EV_SCAN_DONE && strstr(e->message, "marker=42") &&
	    strcmp(e->folder, "share") == 0 && e->time_ns > 0)
		s->found++;
	return 0;
}

static void events(void **state)
{
	struct fx *f = *state;
	struct seen_events s = { 0 };
	int64_t t0 = dfsr_now_ns();

	journal_event(f->j, EV_SCAN_DONE, "marker=%d", 42);
	journal_event(f->j, EV_HASH_FAILED, NULL);
	assert_int_equal(journal_list_events(f->j, 0, ev_collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.found, 1);
	fx_reopen(f);
	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_list_events(f->j, t0, ev_collect, &s), 0);
	assert_int_equal(s.n, 2);
	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_list_events(f->j, dfsr_now_ns() + 1000000000, ev_collect, &s), 0);
	assert_int_equal(s.n, 0);
}

#define THREADS    4
#define PER_THREAD 25

struct worker {
	struct fx *f;
	int id;
	int failures;
};

/* Each thread creates, changes and removes its own files through the shared journal. */
/* §12: tombstones past the lifetime are purged; a folder whose last sync is older than
 * the lifetime turns stale (initial sync, asking for everything); the marks survive a
 * reopen. */
static void tombstones_and_freshness(void **state)
{
	struct fx *f = *state;
	const struct dfsr_uid *root = journal_root_uid(f->j);
	struct version_vector kv;
	struct journal_status s;
	struct record r;
	struct dfsr_uid a, b;
	uint64_t purged, counter;
	int64_t now = dfsr_now_ns(), day = 86400 * 1000000000LL, t0;
	bool stale;

	fx_write(f, "a", "A");
	fx_write(f, "b", "B");
	a = fx_new(f, "", "a");
	b = fx_new(f, "", "b");
	assert_int_equal(unlinkat(f->root_fd, "a", 0), 0);
	assert_int_equal(journal_note_remove(f->j, root, "a"), 0);
	fx_record(f, &a, &r);
	assert_true(r.tombstone);
	t0 = r.change_time_ns;
	record_release(&r);
	/* not older than the cutoff: kept */
	assert_int_equal(journal_purge_tombstones(f->j, t0, &purged), 0);
	assert_int_equal(purged, 0);
	assert_int_equal(journal_purge_tombstones(f->j, t0 + 1, &purged), 0);
	assert_int_equal(purged, 1);
	record_init(&r);
	assert_int_equal(journal__get(f->j, &a, &r), -ENOENT);
	fx_record(f, &b, &r); /* the live one stays */
	assert_false(r.tombstone);
	record_release(&r);
	journal_get_status(f->j, &s);
	assert_int_equal(s.tombstones, 0);

	/* never synced: the lifetime counts from the first check */
	assert_int_equal(journal_set_state(f->j, JOURNAL_STATE_NORMAL), 0);
	assert_int_equal(journal_last_sync(f->j), 0);
	assert_int_equal(journal_freshness(f->j, day, now, &stale), 0);
	assert_false(stale);
	assert_int_equal(journal_last_sync(f->j), now);
	assert_int_equal(journal_freshness(f->j, day, now + day, &stale), 0);
	assert_false(stale); /* exactly the lifetime: still fresh */
	assert_false(journal_stale(f->j, NULL));
	assert_int_equal(journal_freshness(f->j, day, now + day + 1, &stale), 0);
	assert_true(stale);
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_INITIAL_SYNC);
	assert_true(journal_stale(f->j, &counter));
	fx_reopen(f);
	assert_true(journal_stale(f->j, &counter));
	assert_int_equal(journal_last_sync(f->j), now);
	/* asks for everything: only our own versions in the Hello knowledge */
	version_vector_init(&kv);
	assert_int_equal(journal__revert_knowledge(f->j, &kv), 0);
	assert_int_equal(kv.n, 1);
	assert_memory_equal(kv.v[0].db.b, journal_db_id(f->j)->b, DFSR_UID_LEN);
	assert_int_equal(kv.v[0].counter, counter);
	version_vector_release(&kv);
	/* not stale twice; then done */
	assert_int_equal(journal_freshness(f->j, day, now + 3 * day, &stale), 0);
	assert_false(stale);
	assert_int_equal(journal_stale_done(f->j), 0);
	assert_false(journal_stale(f->j, NULL));
	/* a partner's Ack counts as a sync */
	journal_note_contact(f->j);
	assert_true(journal_last_sync(f->j) >= now);
}

/* §12: contact noted in memory (journal_note_contact()) is written by the hourly
 * journal_freshness() when nothing else writes the meta: a quiet member that crashes (no
 * journal_close() to write it) is not stale when it starts again. */
static int contact_then_check(struct fx *f, struct journal *cj, void *arg)
{
	int64_t now = *(const int64_t *)arg, day = 86400 * 1000000000LL;
	bool stale;

	(void)f;
	if (journal_freshness(cj, day, now, &stale) < 0) /* never synced: written as now */
		return 3;
	journal_note_contact(cj);
	if (journal_last_sync(cj) <= now)
		return 4;
	if (journal_freshness(cj, day, dfsr_now_ns(), &stale) < 0 || stale)
		return 5;
	return 0;
}

static void contact_written_by_the_freshness_check(void **state)
{
	struct fx *f = *state;
	int64_t now = dfsr_now_ns();

	assert_int_equal(journal_set_state(f->j, JOURNAL_STATE_NORMAL), 0);
	fx_crash_after(f, contact_then_check, &now);
	assert_true(journal_last_sync(f->j) > now);
}

/* §12, the way out: a stale folder goes back to normal once the tombstone lifetime is raised
 * past the time since its last sync *when it turned stale*; syncs noted since do not
 * count. Kept across a reopen. */
static void stale_lifted_by_a_longer_lifetime(void **state)
{
	struct fx *f = *state;
	int64_t now = dfsr_now_ns(), day = 86400 * 1000000000LL;
	bool stale, lifted;

	assert_int_equal(journal_set_state(f->j, JOURNAL_STATE_NORMAL), 0);
	assert_int_equal(journal_stale_lift(f->j, day, now, &lifted), 0);
	assert_false(lifted); /* not stale: nothing to lift */
	assert_int_equal(journal_freshness(f->j, day, now - 3 * day, &stale), 0);
	assert_int_equal(journal_freshness(f->j, day, now, &stale), 0);
	assert_true(stale);
	journal_note_contact(f->j); /* an Ack while stale: last_sync is now */
	assert_int_equal(journal_stale_lift(f->j, day, now, &lifted), 0);
	assert_false(lifted);
	assert_int_equal(journal_stale_lift(f->j, 3 * day - 1, now, &lifted), 0);
	assert_false(lifted);
	fx_reopen(f);
	assert_true(journal_stale(f->j, NULL));
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_INITIAL_SYNC);
	assert_int_equal(journal_stale_lift(f->j, 3 * day, now, &lifted), 0);
	assert_true(lifted);
	assert_false(journal_stale(f->j, NULL));
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_NORMAL);
	fx_reopen(f);
	assert_false(journal_stale(f->j, NULL));
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_NORMAL);
	assert_int_equal(journal_stale_lift(f->j, 3 * day, now, &lifted), 0);
	assert_false(lifted);
	/* fresh by the longer lifetime from its recent sync */
	assert_int_equal(journal_freshness(f->j, 3 * day, now, &stale), 0);
	assert_false(stale);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	const struct dfsr_uid *root = journal_root_uid(w->f->j);

	for (int i = 0; i < PER_THREAD; i++) {
		char name[32];
		struct dfsr_uid uid;
		int fd;

		snprintf(name, sizeof(name), "t%d-%d", w->id, i);
		fd = openat(w->f->root_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, name, strlen(name)) < 0) {
			w->failures++;
			continue;
		}
		close(fd);
		fd = openat(w->f->root_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (journal_note_new(w->f->j, root, name, fd, &uid) < 0 ||
		    fchmodat(w->f->root_fd, name, 0600, 0) < 0 ||
		    journal_note_change(w->f->j, &uid, fd, 0) < 0)
			w->failures++;
		close(fd);
		if (i % 5 == 0 && (unlinkat(w->f->root_fd, name, 0) < 0 ||
				   journal_note_remove(w->f->j, root, name) < 0))
			w->failures++;
	}
	return NULL;
}

static int check_seq(void *arg, const struct journal_entry_info *e)
{
	uint64_t *expect = arg;

	if (e->seq != *expect || e->gvsn_counter != *expect)
		return -EINVAL;
	(*expect)++;
	return 0;
}

static void concurrent_changes(void **state)
{
	struct fx *f = *state;
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct journal_status s;
	uint64_t expect = 1;

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .f = f, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	/* per file: create + meta, and a delete for every fifth */
	journal_get_status(f->j, &s);
	assert_int_equal(s.journal, THREADS * (PER_THREAD * 2 + PER_THREAD / 5));
	assert_int_equal(s.files, THREADS * (PER_THREAD - PER_THREAD / 5));
	assert_int_equal(s.tombstones, THREADS * (PER_THREAD / 5));
	/* sequence numbers and counters dense and in step */
	assert_int_equal(journal_list(f->j, 0, 0, check_seq, &expect), 0);
	assert_int_equal(expect, s.journal + 1);
}

/* The map of hard links: names registered by changes, by journal_link_note() and by the
 * scan after a restart; a name that now resolves to another object is dropped. */
static void hard_links(void **state)
{
	struct fx *f = *state;
	struct dfsr_uid a, b, c, got[4];
	struct stat st;

	fx_write(f, "a", "one");
	a = fx_new(f, "", "a"); /* st_nlink 1 then: not registered */
	assert_int_equal(linkat(f->root_fd, "a", f->root_fd, "b", 0), 0);
	b = fx_new(f, "", "b"); /* st_nlink 2: registered */
	assert_int_equal(fstatat(f->root_fd, "b", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(journal_link_others(f->j, &st, &a, 1, got, 4), 1);
	assert_memory_equal(got[0].b, b.b, DFSR_UID_LEN);
	assert_int_equal(journal_link_others(f->j, &st, &b, 1, got, 4), 0); /* a unknown */
	journal_link_note(f->j, &st, &a);
	assert_int_equal(journal_link_others(f->j, &st, &b, 1, got, 4), 1);
	assert_memory_equal(got[0].b, a.b, DFSR_UID_LEN);
	assert_int_equal(journal_link_others(f->j, &st, (struct dfsr_uid[]){ a, b }, 2, got, 4), 0);

	/* a restart forgets everything; the scan at start registers both names again */
	fx_reopen(f);
	assert_int_equal(journal_link_others(f->j, &st, &a, 1, got, 4), 0);
	assert_int_equal(scan_folder(f->j, NULL), 0);
	assert_int_equal(journal_link_others(f->j, &st, &a, 1, got, 4), 1);
	assert_memory_equal(got[0].b, b.b, DFSR_UID_LEN);

	/* "a" replaced behind the journal by another object: its entry fails verification and
	 * is dropped, so that it stays dropped once "a" is this object again */
	assert_int_equal(linkat(f->root_fd, "b", f->root_fd, "c", 0), 0);
	c = fx_new(f, "", "c");
	assert_int_equal(unlinkat(f->root_fd, "a", 0), 0);
	fx_write(f, "a", "another file");
	assert_int_equal(fstatat(f->root_fd, "b", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(journal_link_others(f->j, &st, &b, 1, got, 4), 1);
	assert_memory_equal(got[0].b, c.b, DFSR_UID_LEN);
	assert_int_equal(unlinkat(f->root_fd, "a", 0), 0);
	assert_int_equal(linkat(f->root_fd, "b", f->root_fd, "a", 0), 0);
	assert_int_equal(fstatat(f->root_fd, "b", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(journal_link_others(f->j, &st, (struct dfsr_uid[]){ b, c }, 2, got, 4), 0);

	/* a tombstone is never a name: "c" removed */
	assert_int_equal(unlinkat(f->root_fd, "c", 0), 0);
	assert_int_equal(journal_note_remove(f->j, journal_root_uid(f->j), "c"), 0);
	journal_link_note(f->j, &st, &c); /* even registered again */
	assert_int_equal(journal_link_others(f->j, &st, &b, 1, got, 4), 0);
}

/* A name of a hard-linked object given to another object (a save-by-rename, a partner's
 * install) no longer takes the changes made through the other names. */
static void hard_link_name_replaced(void **state)
{
	struct fx *f = *state;
	struct dfsr_uid a, b;
	struct entries es;
	struct record r;
	uint64_t seq;
	int fd;

	fx_write(f, "a", "one");
	assert_int_equal(linkat(f->root_fd, "a", f->root_fd, "b", 0), 0);
	a = fx_new(f, "", "a");
	b = fx_new(f, "", "b");
	fx_write(f, "x.tmp", "the saved file");
	assert_int_equal(renameat(f->root_fd, "x.tmp", f->root_fd, "a"), 0); /* unjournaled */
	fx_write(f, "b", "two, longer"); /* the old object, through its other name */
	fd = fx_opath(f, "b");
	seq = fx_next_seq(f);
	assert_int_equal(journal_note_change(f->j, &b, fd, JOURNAL_DATA), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1);
	assert_memory_equal(es.e[0].uid.b, b.b, DFSR_UID_LEN);
	fx_assert_hash(f, "b");
	/* still st_nlink 2: "a" went, the saved file's temporary name linked to it instead */
	assert_int_equal(linkat(f->root_fd, "b", f->root_fd, "c.tmp", 0), 0);
	assert_int_equal(journal_note_change(f->j, &a, fd, JOURNAL_DATA), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1); /* nothing for a */
	fx_record(f, &a, &r);
	assert_int_equal(r.size, 3); /* "one": a's record was not given b's data */
	record_release(&r);
	close(fd);
}

/* The same with the object down to a single link: "b" replaced (a partner's install), the
 * change made through "a" reaches the journal for both names the node knew (JOURNAL_NAMES);
 * only a takes it, b's record keeps the data of the file now at b. */
static void hard_link_down_to_one_name(void **state)
{
	struct fx *f = *state;
	struct dfsr_uid a, b;
	struct entries es;
	struct record r;
	uint64_t seq;
	int fd;

	fx_write(f, "a", "one");
	assert_int_equal(linkat(f->root_fd, "a", f->root_fd, "b", 0), 0);
	a = fx_new(f, "", "a");
	b = fx_new(f, "", "b");
	fx_write(f, "x.tmp", "b's new file");
	assert_int_equal(renameat(f->root_fd, "x.tmp", f->root_fd, "b"), 0); /* unjournaled */
	fx_write(f, "a", "two, longer");                                     /* st_nlink 1 now */
	fd = fx_opath(f, "a");
	seq = fx_next_seq(f);
	assert_int_equal(journal_note_change(f->j, &a, fd, JOURNAL_DATA | JOURNAL_NAMES), 0);
	assert_int_equal(journal_note_change(f->j, &b, fd, JOURNAL_DATA | JOURNAL_NAMES), 0);
	fx_entries(f, seq, &es);
	assert_int_equal(es.n, 1); /* nothing for b */
	assert_memory_equal(es.e[0].uid.b, a.b, DFSR_UID_LEN);
	fx_assert_hash(f, "a");
	fx_record(f, &b, &r);
	assert_int_equal(r.size, 3); /* "one": b's record was not given a's data */
	record_release(&r);
	close(fd);
}

/*
 * A full disk: the journal on a 16 MiB tmpfs, the rest of the disk filled behind its back,
 * then metadata changes until the database refuses one. The change reports the error, the
 * folder's state reads "error" while the database takes no change, and the record still
 * holds the last change that was written.
 */
static void full_disk_shows_error(void **state)
{
	struct fx *f = *state;
	struct journal *saved_j = f->j, *j;
	int saved_root = f->root_fd, root, fd, fill, rc = 0;
	struct journal_status s;
	char dir[96], buf[65536];
	struct dfsr_uid uid;
	unsigned n = 0;

	if (geteuid() != 0)
		skip(); /* mounts a tmpfs */
	snprintf(dir, sizeof(dir), "%s/small", f->dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(mount("dfsr-test-journal", dir, "tmpfs", 0, "size=16m"), 0);
	root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(root >= 0);
	assert_int_equal(mkdirat(root, LAYOUT_PRIVATE, 0700), 0);
	f->root_fd = root;
	assert_int_equal(fx_open_journal(f, false, &j), 0);
	f->j = j;
	fx_write(f, "a.txt", "hello");
	uid = fx_new(f, "", "a.txt");
	journal_get_status(j, &s);
	assert_int_equal(s.state, journal_state(j));

	/* the rest of the disk, behind the journal's back */
	memset(buf, 'x', sizeof(buf));
	fill = openat(root, "fill", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fill >= 0);
	while (write(fill, buf, sizeof(buf)) > 0)
		;
	assert_int_equal(errno, ENOSPC);
	fd = fx_opath(f, "a.txt");
	while (n < 200000) {
		assert_int_equal(fchmodat(root, "a.txt", n % 2 ? 0600 : 0644, 0), 0);
		rc = journal_note_change(j, &uid, fd, 0);
		if (rc < 0)
			break;
		n++;
	}
	assert_int_equal(rc, -ENOSPC);
	journal_get_status(j, &s);
	assert_int_equal(s.state, JOURNAL_STATE_ERROR);
	assert_int_not_equal(journal_state(j), JOURNAL_STATE_ERROR); /* the state underneath */
	/* the next change fails the same way, and nothing aborts */
	assert_int_equal(fchmodat(root, "a.txt", 0640, 0), 0);
	assert_true(journal_note_change(j, &uid, fd, 0) < 0);
	journal_get_status(j, &s);
	assert_int_equal(s.state, JOURNAL_STATE_ERROR);
	close(fd);
	close(fill);

	journal_close(j);
	f->j = saved_j;
	f->root_fd = saved_root;
	close(root);
	assert_int_equal(umount2(dir, MNT_DETACH), 0);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(open_creates_ids, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(locked_and_read_only, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(new_change_touch_chmod, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(remove_and_rename, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(filters_and_tmp_renames, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(subtrees, setup_env, fx_teardown),
		cmocka_unit_test_setup_teardown(directory_changes_show_below, setup_env,
						fx_teardown),
		cmocka_unit_test_setup_teardown(many_directories, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(unclean_stop, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(events, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(concurrent_changes, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(tombstones_and_freshness, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(stale_lifted_by_a_longer_lifetime, setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(contact_written_by_the_freshness_check, setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(hard_links, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(hard_link_name_replaced, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(hard_link_down_to_one_name, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(full_disk_shows_error, setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
