/*
 * test_outbound.c - core/outbound.c on real RocksDB and real files: a tree made through the
 * journal's change API (files with xattrs, a symbolic link, nested directories, a rename,
 * deletes), then the full walk (order: parents before children, tombstones last by seq;
 * empty, full and partial partner vectors; xattrs and link targets as on disk; objects
 * vanished behind the journal's back skipped), following the journal (each object once,
 * its current record, next_seq), the backlog count and list, and staging (current, stale,
 * changed since journaled).
 */
#include <sys/xattr.h>

#include "core/outbound.h"
#include "core/stage.h"
#include "journal_fixture.h"

#define MAX_UPDATES 64

struct got {
	size_t n;
	size_t stop_after; /* return 1 from the callback after this many (0 = never) */

	struct {
		struct dfsr_uid uid, parent;
		char name[RECORD_NAME_MAX + 1];
		char type;
		bool tombstone;
		uint64_t seq, counter;
		size_t nxattrs;
		char xname[4][32];
		char xval[4][32];
		char link[64];
		bool has_link;
	} u[MAX_UPDATES];
};

static int collect(void *arg, const struct replica_update *u)
{
	struct got *g = arg;

	if (g->n == MAX_UPDATES)
		return -E2BIG;
	assert_int_equal(replica_update_check(u), 0); /* what a receiver would accept */
	g->u[g->n].uid = u->rec.uid;
	g->u[g->n].parent = u->rec.parent;
	snprintf(g->u[g->n].name, sizeof(g->u[0].name), "%s", u->rec.name);
	g->u[g->n].type = u->rec.type;
	g->u[g->n].tombstone = u->rec.tombstone;
	g->u[g->n].seq = u->rec.seq;
	g->u[g->n].counter = u->rec.gvsn.counter;
	g->u[g->n].nxattrs = u->nxattrs;
	for (size_t i = 0; i < u->nxattrs && i < 4; i++) {
		snprintf(g->u[g->n].xname[i], 32, "%s", u->xattrs[i].name);
		snprintf(g->u[g->n].xval[i], 32, "%.*s", (int)u->xattrs[i].len,
			 (const char *)u->xattrs[i].value);
	}
	g->u[g->n].has_link = u->link_target != NULL;
	if (u->link_target)
		snprintf(g->u[g->n].link, sizeof(g->u[0].link), "%s", u->link_target);
	g->n++;
	return g->stop_after && g->n == g->stop_after ? 1 : 0;
}

static ssize_t find(const struct got *g, const struct dfsr_uid *uid)
{
	for (size_t i = 0; i < g->n; i++)
		if (dfsr_uid_equal(&g->u[i].uid, uid))
			return (ssize_t)i;
	return -1;
}

struct tree {
	struct dfsr_uid d1, d2, f3, f1, ln, f2, gone, d3, g;
	uint64_t mid_counter; /* the database's counter after the first half of the tree */
	uint64_t records;     /* live and tombstones */
	uint64_t tombstones;
};

static void note_change_data(struct fx *f, const char *rel, const struct dfsr_uid *uid)
{
	int fd = fx_opath(f, rel);

	assert_int_equal(journal_note_change(f->j, uid, fd, JOURNAL_DATA), 0);
	close(fd);
}

static void note_rename(struct fx *f, const struct dfsr_uid *op, const char *on,
			const struct dfsr_uid *np, const char *nn, const char *new_rel)
{
	struct dfsr_uid out;
	int fd = fx_opath(f, new_rel);

	assert_int_equal(journal_note_rename(f->j,
					     &(struct journal_rename){ .old_parent = op,
								       .old_name = on,
								       .new_parent = np,
								       .new_name = nn,
								       .fd = fd,
								       .other_fd = -1 },
					     &out, NULL),
			 0);
	close(fd);
}

static uint64_t last_counter(struct fx *f)
{
	struct entries es;

	fx_entries(f, 1, &es);
	assert_true(es.n > 0);
	return es.e[es.n - 1].counter;
}

/*
 * d1/            d1/d2/f3       f1 (user.a, user.b, user.dfsr.own)     ln -> f1
 * d1/f2 renamed to f2 at the root; gone (deleted); d3/g (deleted with d3)
 */
static void make_tree(struct fx *f, struct tree *t)
{
	const struct dfsr_uid *root = journal_root_uid(f->j);

	fx_mkdir(f, "d1");
	t->d1 = fx_new(f, "", "d1");
	fx_mkdir(f, "d1/d2");
	t->d2 = fx_new(f, "d1", "d2");
	fx_write(f, "d1/d2/f3", "three");
	t->f3 = fx_new(f, "d1/d2", "f3");
	fx_write(f, "f1", "one");
	{
		char p[128];

		snprintf(p, sizeof(p), "%s/f1", f->dir);
		assert_int_equal(setxattr(p, "user.b", "22", 2, 0), 0);
		assert_int_equal(setxattr(p, "user.a", "1", 1, 0), 0);
		assert_int_equal(setxattr(p, "user.dfsr.own", "no", 2, 0), 0);
	}
	t->f1 = fx_new(f, "", "f1");
	t->mid_counter = last_counter(f);
	assert_int_equal(symlinkat("f1", f->root_fd, "ln"), 0);
	t->ln = fx_new(f, "", "ln");
	fx_write(f, "d1/f2", "two");
	t->f2 = fx_new(f, "d1", "f2");
	assert_int_equal(renameat(f->root_fd, "d1/f2", f->root_fd, "f2"), 0);
	note_rename(f, &t->d1, "f2", root, "f2", "f2");
	fx_write(f, "gone", "x");
	t->gone = fx_new(f, "", "gone");
	assert_int_equal(unlinkat(f->root_fd, "gone", 0), 0);
	assert_int_equal(journal_note_remove(f->j, root, "gone"), 0);
	fx_mkdir(f, "d3");
	t->d3 = fx_new(f, "", "d3");
	fx_write(f, "d3/g", "g");
	t->g = fx_new(f, "d3", "g");
	assert_int_equal(unlinkat(f->root_fd, "d3/g", 0), 0);
	assert_int_equal(unlinkat(f->root_fd, "d3", AT_REMOVEDIR), 0);
	assert_int_equal(journal_note_remove(f->j, root, "d3"), 0);
	t->records = 9;
	t->tombstones = 3;
}

struct ofx {
	struct fx *f;
	struct tree t;
	struct stage *stage;
};

static int setup(void **state)
{
	struct ofx *o = calloc(1, sizeof(*o));
	void *fs = NULL;
	int dfd;

	if (!o || fx_setup_opts(&fs, true, "skip*") < 0)
		return -1;
	o->f = fs;
	make_tree(o->f, &o->t);
	if (mkdirat(o->f->root_fd, LAYOUT_PRIVATE "/Staging", 0700) < 0)
		return -1;
	dfd = openat(o->f->root_fd, LAYOUT_PRIVATE "/Staging", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || stage_open(&(struct stage_opts){ .dir_fd = dfd }, &o->stage) < 0)
		return -1;
	close(dfd);
	*state = o;
	return 0;
}

static int teardown(void **state)
{
	struct ofx *o = *state;
	void *fs;

	if (!o)
		return 0;
	stage_close(o->stage);
	fs = o->f;
	free(o);
	return fx_teardown(&fs);
}

/* Live records come parents first, tombstones last in seq order; @g holds them all. */
static void assert_order(struct ofx *o, const struct got *g)
{
	const struct dfsr_uid *root = journal_root_uid(o->f->j);
	bool in_tombs = false;
	uint64_t last_seq = 0;

	for (size_t i = 0; i < g->n; i++) {
		if (g->u[i].tombstone) {
			in_tombs = true;
			assert_true(g->u[i].seq > last_seq);
			last_seq = g->u[i].seq;
			assert_int_equal(g->u[i].nxattrs, 0);
			assert_false(g->u[i].has_link);
			continue;
		}
		assert_false(in_tombs); /* no live record after a tombstone */
		if (!dfsr_uid_equal(&g->u[i].parent, root)) {
			ssize_t p = find(g, &g->u[i].parent);

			assert_true(p >= 0 && (size_t)p < i);
		}
	}
}

static void missing_empty_partner(void **state)
{
	struct ofx *o = *state;
	struct version_vector empty;
	struct got *g = calloc(1, sizeof(*g));
	uint64_t next = 0;
	ssize_t i;

	assert_non_null(g);
	version_vector_init(&empty);
	assert_int_equal(outbound_missing(o->f->j, &empty, &next, NULL, collect, g), 0);
	assert_int_equal(next, fx_next_seq(o->f));
	assert_int_equal(g->n, o->t.records);
	assert_order(o, g);
	/* tombstones: gone, then d3's subtree (g before d3: children are tombstoned first) */
	assert_true(g->u[g->n - 3].tombstone);
	assert_memory_equal(g->u[g->n - 3].uid.b, o->t.gone.b, DFSR_UID_LEN);
	/* xattrs sorted, dfsr's own left out */
	i = find(g, &o->t.f1);
	assert_true(i >= 0);
	assert_int_equal(g->u[i].nxattrs, 2);
	assert_string_equal(g->u[i].xname[0], "user.a");
	assert_string_equal(g->u[i].xval[0], "1");
	assert_string_equal(g->u[i].xname[1], "user.b");
	assert_string_equal(g->u[i].xval[1], "22");
	assert_false(g->u[i].has_link);
	/* the link's target */
	i = find(g, &o->t.ln);
	assert_true(i >= 0);
	assert_int_equal(g->u[i].type, RECORD_LINK);
	assert_true(g->u[i].has_link);
	assert_string_equal(g->u[i].link, "f1");
	/* the renamed file is sent at its new place */
	i = find(g, &o->t.f2);
	assert_true(i >= 0);
	assert_memory_equal(g->u[i].parent.b, journal_root_uid(o->f->j)->b, DFSR_UID_LEN);
	/* f3 is after d2, which is after d1 */
	assert_true(find(g, &o->t.d1) < find(g, &o->t.d2));
	assert_true(find(g, &o->t.d2) < find(g, &o->t.f3));

	/* the callback's value stops the walk */
	memset(g, 0, sizeof(*g));
	g->stop_after = 2;
	assert_int_equal(outbound_missing(o->f->j, &empty, &next, NULL, collect, g), 1);
	assert_int_equal(g->n, 2);
	version_vector_release(&empty);
	free(g);
}

/* Large files are sent right after the directories, before every small file. */
static void missing_large_files_early(void **state)
{
	struct ofx *o = *state;
	struct version_vector empty;
	struct got *g = calloc(1, sizeof(*g));
	struct dfsr_uid big;
	uint64_t next = 0;
	int fd;

	assert_non_null(g);
	fx_write(o->f, "d1/d2/big", "x");
	big = fx_new(o->f, "d1/d2", "big");
	fd = openat(o->f->root_fd, "d1/d2/big", O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, OUTBOUND_EARLY), 0);
	close(fd);
	note_change_data(o->f, "d1/d2/big", &big);
	version_vector_init(&empty);
	assert_int_equal(outbound_missing(o->f->j, &empty, &next, NULL, collect, g), 0);
	assert_int_equal(g->n, o->t.records + 1);
	assert_order(o, g);
	/* d1, d2 (and d1's other children that are directories) come before it; then it,
	 * before every small file, even f1 at the root */
	assert_true(find(g, &o->t.d2) < find(g, &big));
	assert_true(find(g, &big) < find(g, &o->t.f1));
	assert_true(find(g, &big) < find(g, &o->t.ln));
	assert_true(find(g, &big) < find(g, &o->t.f3));
	version_vector_release(&empty);
	free(g);
}

static void missing_full_and_partial(void **state)
{
	struct ofx *o = *state;
	struct version_vector vv;
	struct got *all = calloc(1, sizeof(*all)), *g = calloc(1, sizeof(*g));
	uint64_t next = 0;
	size_t expect = 0;
	struct dfsr_uid f4;

	assert_non_null(all);
	assert_non_null(g);
	version_vector_init(&vv);
	assert_int_equal(journal__knowledge(o->f->j, &vv), 0);
	assert_int_equal(outbound_missing(o->f->j, &vv, &next, NULL, collect, g), 0);
	assert_int_equal(g->n, 0);
	assert_int_equal(next, fx_next_seq(o->f));

	/* a partner that has seen the first half; a new file deep inside known directories */
	fx_write(o->f, "d1/d2/f4", "four");
	f4 = fx_new(o->f, "d1/d2", "f4");
	version_vector_release(&vv);
	assert_int_equal(version_vector_raise(&vv, journal_db_id(o->f->j), o->t.mid_counter), 0);
	assert_int_equal(outbound_missing(o->f->j, NULL, &next, NULL, collect, all), 0);
	assert_int_equal(outbound_missing(o->f->j, &vv, &next, NULL, collect, g), 0);
	for (size_t i = 0; i < all->n; i++) {
		bool want = all->u[i].counter > o->t.mid_counter;

		expect += want;
		assert_int_equal(find(g, &all->u[i].uid) >= 0, want);
	}
	assert_true(expect > 0 && expect < all->n);
	assert_int_equal(g->n, expect);
	/* d1, d2, f3 are not resent, yet known directories are walked into */
	assert_true(find(g, &o->t.d1) < 0);
	assert_true(find(g, &o->t.f3) < 0);
	assert_true(find(g, &o->t.ln) >= 0);
	assert_true(find(g, &f4) >= 0);
	version_vector_release(&vv);
	free(all);
	free(g);
}

/* An object removed behind the journal's back is skipped and reported, the rest still
 * sent; offered again, it goes out once it is back. */
static void missing_skips_vanished(void **state)
{
	struct ofx *o = *state;
	struct got *g = calloc(1, sizeof(*g));
	struct outbound_skips sk;
	struct dfsr_uid again[2];
	uint64_t next = 0;
	ssize_t i;

	assert_non_null(g);
	outbound_skips_init(&sk);
	assert_int_equal(renameat(o->f->root_fd, "d1/d2/f3", o->f->root_fd, "away"), 0);
	assert_int_equal(outbound_missing(o->f->j, NULL, &next, &sk, collect, g), 0);
	assert_int_equal(g->n, o->t.records - 1);
	assert_true(find(g, &o->t.f3) < 0);
	assert_true(find(g, &o->t.d2) >= 0);
	assert_int_equal(sk.n, 1);
	assert_memory_equal(sk.uid[0].b, o->t.f3.b, DFSR_UID_LEN);
	/* still away: skipped again; back: sent (with the ancestors the partner lacks) */
	again[0] = sk.uid[0];
	again[1] = o->t.f1;
	memset(g, 0, sizeof(*g));
	outbound_skips_release(&sk);
	assert_int_equal(outbound_again(o->f->j, again, 2, NULL, &sk, collect, g), 0);
	assert_int_equal(sk.n, 1);
	assert_int_equal(g->n, 3); /* d1 and d2 (f3's ancestors, which a NULL partner lacks), f1 */
	assert_true(find(g, &o->t.f1) >= 0);
	assert_true(find(g, &o->t.f3) < 0);
	assert_int_equal(renameat(o->f->root_fd, "away", o->f->root_fd, "d1/d2/f3"), 0);
	memset(g, 0, sizeof(*g));
	outbound_skips_release(&sk);
	assert_int_equal(outbound_again(o->f->j, again, 1, NULL, &sk, collect, g), 0);
	assert_int_equal(sk.n, 0);
	assert_int_equal(g->n, 3);
	assert_order(o, g);
	i = find(g, &o->t.f3);
	assert_int_equal(i, 2);
	outbound_skips_release(&sk);
	assert_int_equal(unlinkat(o->f->root_fd, "d1/d2/f3", 0), 0);
	/* a directory replaced by a file of the same name is not sent as the directory */
	assert_int_equal(unlinkat(o->f->root_fd, "d1/d2", AT_REMOVEDIR), 0);
	fx_write(o->f, "d1/d2", "not a dir");
	memset(g, 0, sizeof(*g));
	assert_int_equal(outbound_missing(o->f->j, NULL, &next, NULL, collect, g), 0);
	assert_true(find(g, &o->t.d2) < 0);
	assert_true(find(g, &o->t.d1) >= 0);
	free(g);
}

static void changes_each_once(void **state)
{
	struct ofx *o = *state;
	struct fx *f = o->f;
	const struct dfsr_uid *root = journal_root_uid(f->j);
	struct got *g = calloc(1, sizeof(*g));
	struct version_vector vv, before;
	uint64_t from = fx_next_seq(f), next = 0;
	ssize_t i;

	assert_non_null(g);
	/* the partner has everything up to @from */
	version_vector_init(&before);
	assert_int_equal(journal__knowledge(f->j, &before), 0);
	fx_write(f, "f1", "one, edited");
	note_change_data(f, "f1", &o->t.f1);
	fx_write(f, "f1", "one, edited again");
	note_change_data(f, "f1", &o->t.f1);
	assert_int_equal(renameat(f->root_fd, "f2", f->root_fd, "d1/f2b"), 0);
	note_rename(f, root, "f2", &o->t.d1, "f2b", "d1/f2b");
	fx_write(f, "d1/d2/f3", "three, edited");
	note_change_data(f, "d1/d2/f3", &o->t.f3);
	assert_int_equal(fx_next_seq(f), from + 4);

	assert_int_equal(outbound_changes(f->j, from, 0, &before, &next, NULL, collect, g), 0);
	assert_int_equal(next, from + 4);
	assert_int_equal(g->n, 3);
	i = find(g, &o->t.f1);
	assert_true(i >= 0);
	assert_int_equal(g->u[i].seq, from + 1); /* the current record, sent once */
	assert_int_equal(g->u[i].nxattrs, 2);
	i = find(g, &o->t.f2);
	assert_true(i >= 0);
	assert_string_equal(g->u[i].name, "f2b");
	assert_memory_equal(g->u[i].parent.b, o->t.d1.b, DFSR_UID_LEN);
	assert_true(find(g, &o->t.f3) >= 0);

	/* a partner that has nothing gets the directories above them first */
	memset(g, 0, sizeof(*g));
	assert_int_equal(outbound_changes(f->j, from, 0, NULL, &next, NULL, collect, g), 0);
	assert_int_equal(g->n, 5);
	assert_true(find(g, &o->t.f1) == 0);
	assert_true(find(g, &o->t.d1) == 1);
	assert_true(find(g, &o->t.f2) == 2);
	assert_true(find(g, &o->t.d2) == 3);
	assert_true(find(g, &o->t.f3) == 4);

	/* at most one entry: the first entry's object, next_seq right after it */
	memset(g, 0, sizeof(*g));
	assert_int_equal(outbound_changes(f->j, from, 1, &before, &next, NULL, collect, g), 0);
	assert_int_equal(next, from + 1);
	assert_int_equal(g->n, 1);
	assert_memory_equal(g->u[0].uid.b, o->t.f1.b, DFSR_UID_LEN);
	/* the second entry names f1 again; a new call sends it again (once per call) */
	memset(g, 0, sizeof(*g));
	assert_int_equal(outbound_changes(f->j, next, 1, &before, &next, NULL, collect, g), 0);
	assert_int_equal(next, from + 2);
	assert_int_equal(g->n, 1);
	assert_memory_equal(g->u[0].uid.b, o->t.f1.b, DFSR_UID_LEN);

	/* at the end: nothing, next_seq unchanged */
	memset(g, 0, sizeof(*g));
	assert_int_equal(outbound_changes(f->j, from + 4, 0, NULL, &next, NULL, collect, g), 0);
	assert_int_equal(g->n, 0);
	assert_int_equal(next, from + 4);

	/* a partner that has everything gets nothing */
	version_vector_init(&vv);
	assert_int_equal(journal__knowledge(f->j, &vv), 0);
	memset(g, 0, sizeof(*g));
	assert_int_equal(outbound_changes(f->j, 1, 0, &vv, &next, NULL, collect, g), 0);
	assert_int_equal(g->n, 0);
	assert_int_equal(next, from + 4);
	version_vector_release(&vv);

	/* from the start: every record once (the tombstones included) */
	memset(g, 0, sizeof(*g));
	assert_int_equal(outbound_changes(f->j, 1, 0, NULL, &next, NULL, collect, g), 0);
	assert_int_equal(g->n, o->t.records);
	version_vector_release(&before);
	free(g);
}

/* The journal names a file before the directory it was later moved into. */
static void changes_parents_first(void **state)
{
	struct ofx *o = *state;
	struct fx *f = o->f;
	const struct dfsr_uid *root = journal_root_uid(f->j);
	struct got *g = calloc(1, sizeof(*g));
	struct version_vector before;
	struct dfsr_uid h, dir;
	uint64_t from = fx_next_seq(f), next = 0;

	assert_non_null(g);
	version_vector_init(&before);
	assert_int_equal(journal__knowledge(f->j, &before), 0);
	fx_write(f, "h", "h");
	h = fx_new(f, "", "h");
	fx_mkdir(f, "D");
	dir = fx_new(f, "", "D");
	assert_int_equal(renameat(f->root_fd, "h", f->root_fd, "D/h"), 0);
	note_rename(f, root, "h", &dir, "h", "D/h");
	assert_int_equal(outbound_changes(f->j, from, 0, &before, &next, NULL, collect, g), 0);
	assert_int_equal(next, from + 3);
	assert_int_equal(g->n, 2);
	assert_memory_equal(g->u[0].uid.b, dir.b, DFSR_UID_LEN);
	assert_memory_equal(g->u[1].uid.b, h.b, DFSR_UID_LEN);
	assert_memory_equal(g->u[1].parent.b, dir.b, DFSR_UID_LEN);
	version_vector_release(&before);
	free(g);
}

/* outbound_backlog() lists records (nothing read from disk). */
static int collect_record(void *arg, const struct record *r)
{
	struct got *g = arg;

	if (g->n == MAX_UPDATES)
		return -E2BIG;
	g->u[g->n].uid = r->uid;
	snprintf(g->u[g->n].name, sizeof(g->u[0].name), "%s", r->name);
	g->u[g->n].counter = r->gvsn.counter;
	g->n++;
	return 0;
}

static void backlog_count_and_list(void **state)
{
	struct ofx *o = *state;
	struct got *g = calloc(1, sizeof(*g));
	struct version_vector vv;
	uint64_t count = 0;

	assert_non_null(g);
	assert_int_equal(outbound_backlog(o->f->j, NULL, &count, 0, NULL, NULL), 0);
	assert_int_equal(count, o->t.records);
	assert_int_equal(outbound_backlog(o->f->j, NULL, &count, 4, collect_record, g), 0);
	assert_int_equal(count, o->t.records);
	assert_int_equal(g->n, 4);

	version_vector_init(&vv);
	assert_int_equal(version_vector_raise(&vv, journal_db_id(o->f->j), o->t.mid_counter), 0);
	memset(g, 0, sizeof(*g));
	assert_int_equal(outbound_backlog(o->f->j, &vv, &count, 100, collect_record, g), 0);
	assert_int_equal(count, o->t.records - 4); /* d1, d2, f3, f1 are known */
	assert_int_equal(g->n, count);
	version_vector_release(&vv);
	assert_int_equal(journal__knowledge(o->f->j, &vv), 0);
	assert_int_equal(outbound_backlog(o->f->j, &vv, &count, 100, collect_record, g), 0);
	assert_int_equal(count, 0);
	version_vector_release(&vv);
	free(g);
}

/* outbound_serve() with @mem_max, the version closed again. */
static int serve(struct ofx *o, const struct dfsr_uid *uid, const struct version_gvsn *gvsn,
		 uint64_t mem_max)
{
	struct stage_version *v = NULL;
	int rc = outbound_serve(o->f->j, o->stage, uid, gvsn, mem_max, &v);

	assert_true(rc == 0 ? v != NULL : v == NULL);
	stage_version_close(v);
	return rc;
}

static void stage_current_stale_changed(void **state)
{
	struct ofx *o = *state;
	struct fx *f = o->f;
	struct record r;
	struct version_gvsn old;
	struct stage_key k;

	fx_record(f, &o->t.f1, &r);
	k.uid = r.uid;
	k.gvsn = r.gvsn;
	assert_false(stage_has(o->stage, &k));
	/* small enough: read into memory, nothing staged */
	{
		struct stage_version *v;
		uint32_t len;
		uint8_t codec;

		assert_int_equal(outbound_serve(f->j, o->stage, &r.uid, &r.gvsn, 1u << 20, &v), 0);
		assert_non_null(stage_version_stored(v, 0, &len, &codec));
		assert_int_equal(stage_version_list(v)->size, r.size);
		stage_version_close(v);
		assert_false(stage_has(o->stage, &k));
	}
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), 0);
	assert_true(stage_has(o->stage, &k));
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), 0); /* again: at once */
	assert_int_equal(stage_count(o->stage), 1);
	old = r.gvsn;
	record_release(&r);

	/* a newer version makes the old one stale */
	fx_write(f, "f1", "one, v2");
	note_change_data(f, "f1", &o->t.f1);
	assert_int_equal(serve(o, &o->t.f1, &old, 0), -ESTALE);
	/* a directory, a link, a tombstone, an unknown uid: stale */
	fx_record(f, &o->t.d1, &r);
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), -ESTALE);
	record_release(&r);
	fx_record(f, &o->t.ln, &r);
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), -ESTALE);
	record_release(&r);
	fx_record(f, &o->t.gone, &r);
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), -ESTALE);
	record_release(&r);
	{
		struct dfsr_uid unknown;

		dfsr_uid_random(&unknown);
		assert_int_equal(serve(o, &unknown, &old, 0), -ESTALE);
	}

	/* written after it was journaled: not staged, try again later */
	fx_record(f, &o->t.f3, &r);
	fx_write(f, "d1/d2/f3", "three, but not journaled yet");
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), -EAGAIN);
	k.uid = r.uid;
	k.gvsn = r.gvsn;
	assert_false(stage_has(o->stage, &k));
	/* once journaled, the old version is stale and the new one stages */
	note_change_data(f, "d1/d2/f3", &o->t.f3);
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), -ESTALE);
	record_release(&r);
	fx_record(f, &o->t.f3, &r);
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), 0);
	record_release(&r);
	/* vanished behind the journal's back: not stale yet, so try again later */
	fx_record(f, &o->t.f2, &r);
	assert_int_equal(unlinkat(f->root_fd, "f2", 0), 0);
	assert_int_equal(serve(o, &r.uid, &r.gvsn, 0), -EAGAIN);
	record_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(missing_empty_partner, setup, teardown),
		cmocka_unit_test_setup_teardown(missing_full_and_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(missing_skips_vanished, setup, teardown),
		cmocka_unit_test_setup_teardown(changes_each_once, setup, teardown),
		cmocka_unit_test_setup_teardown(changes_parents_first, setup, teardown),
		cmocka_unit_test_setup_teardown(missing_large_files_early, setup, teardown),
		cmocka_unit_test_setup_teardown(backlog_count_and_list, setup, teardown),
		cmocka_unit_test_setup_teardown(stage_current_stale_changed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
