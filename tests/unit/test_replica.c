/*
 * test_replica.c - the downstream side of replication (core/replica.c) between two real
 * folders: each a temporary local path with DfsrPrivate (layout_prepare), its own RocksDB
 * journal (different database ids, same folder name, so the same root UID), its own
 * staging area and a struct replica. Changes are made on one side with real files and the
 * journal's change API; updates are built from that side's records (plus xattrs and link
 * targets read from disk), file data travels through real staging and assembly
 * (stage_file -> stage_version_read_stored -> stage_asm_put_stored -> stage_asm_finish),
 * and the other side offers and installs them. Every test asserts the receiving tree, its
 * records and the preserved copies with their manifests.
 */
#include <dirent.h>
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
#include <sys/xattr.h>
#include <unistd.h>

/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/chunk.h"
#include "core/db.h"
#include "core/layout.h"
#include "core/outbound.h"
#include "core/replica.h"
#include "core/scan.h"
#include "core/stage.h"
#include "tests/unit/journal_fixture.h"

struct side {
	struct fx *f;
	struct stage *stage;
	struct replica *r;
	ino_t busy_ino; /* the busy callback says this inode is open for writing */
	int invals;
	ino_t preserved_ino; /* the last inode the preserved callback was told of */
	int npreserved;
	ino_t told[8]; /* the first inodes the preserved callback was told of */
	/* the last adoption told: the inode, its record before and after */
	ino_t adopted_ino;
	struct dfsr_uid adopted_old, adopted_new;
	int nadopted;
};

struct pair {
	struct side a, b;
};

static void on_inval(void *arg, const struct stat *parent, const char *name, const struct stat *obj)
{
	struct side *s = arg;

	(void)obj;
	assert_non_null(parent);
	assert_non_null(name);
	s->invals++;
}

static bool on_busy(void *arg, const struct stat *st)
{
	struct side *s = arg;

	return s->busy_ino && st->st_ino == s->busy_ino;
}

static void on_preserved(void *arg, const struct stat *st)
{
	struct side *s = arg;

	assert_true(S_ISREG(st->st_mode));
	s->preserved_ino = st->st_ino;
	if (s->npreserved < 8)
		s->told[s->npreserved] = st->st_ino;
	s->npreserved++;
}

static void on_adopted(void *arg, const struct stat *st, const struct dfsr_uid *old,
		       const struct dfsr_uid *uid)
{
	struct side *s = arg;

	s->adopted_ino = st->st_ino;
	s->adopted_old = *old;
	s->adopted_new = *uid;
	s->nadopted++;
}

static int side_open(struct side *s, enum journal_state state)
{
	struct stage_opts so = { 0 };
	char err[LAYOUT_ERR_LEN];
	void *st = NULL;
	int dfd, rc;

	memset(s, 0, sizeof(*s));
	if (fx_setup_opts(&st, true, "skip*") < 0)
		return -1;
	s->f = st;
	if (layout_prepare(s->f->root_fd, err) < 0 || journal_set_state(s->f->j, state) < 0)
		return -1;
	dfd = openat(s->f->root_fd, LAYOUT_PRIVATE "/" LAYOUT_STAGING,
		     O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	so.dir_fd = dfd;
	rc = stage_open(&so, &s->stage);
	close(dfd);
	if (rc < 0)
		return -1;
	struct replica_opts ro = {
		.j = s->f->j,
		.stage = s->stage,
		.invalidate = on_inval,
		.busy = on_busy,
		.preserved = on_preserved,
		.adopted = on_adopted,
		.arg = s,
	};
	return replica_new(&ro, &s->r) < 0 ? -1 : 0;
}

static void side_close(struct side *s)
{
	replica_free(s->r);
	stage_close(s->stage);
	void *st = s->f;
	fx_teardown(&st);
}

static int setup(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));

	if (!p || side_open(&p->a, JOURNAL_STATE_NORMAL) < 0 ||
	    side_open(&p->b, JOURNAL_STATE_NORMAL) < 0)
		return -1;
	*state = p;
	return 0;
}

/* B is a non-primary member in initial sync (its local files recorded by its own build). */
static int setup_initial(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));

	if (!p || side_open(&p->a, JOURNAL_STATE_NORMAL) < 0 ||
	    side_open(&p->b, JOURNAL_STATE_INITIAL_BUILD) < 0)
		return -1;
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	struct pair *p = *state;

	side_close(&p->a);
	side_close(&p->b);
	free(p);
	return 0;
}

/* ---- helpers ---------------------------------------------------------------------- */

static const struct dfsr_uid *root(struct side *s)
{
	return journal_root_uid(s->f->j);
}

/* Make a file with @data and mode 0644 at @rel and record it. */
static struct dfsr_uid mk_file(struct side *s, const char *parent_rel, const char *name,
			       const char *data)
{
	char rel[512];

	snprintf(rel, sizeof(rel), "%s%s%s", parent_rel ? parent_rel : "", parent_rel ? "/" : "",
		 name);
	fx_write(s->f, rel, data);
	assert_int_equal(fchmodat(s->f->root_fd, rel, 0644, 0), 0);
	return fx_new(s->f, parent_rel, name);
}

static struct dfsr_uid mk_dir(struct side *s, const char *parent_rel, const char *name)
{
	char rel[512];

	snprintf(rel, sizeof(rel), "%s%s%s", parent_rel ? parent_rel : "", parent_rel ? "/" : "",
		 name);
	fx_mkdir(s->f, rel);
	assert_int_equal(fchmodat(s->f->root_fd, rel, 0755, 0), 0);
	return fx_new(s->f, parent_rel, name);
}

/* Rewrite the file @rel (recorded as @uid) with @data. */
static void modify(struct side *s, const char *rel, const struct dfsr_uid *uid, const char *data)
{
	int fd;

	fx_write(s->f, rel, data);
	fd = fx_opath(s->f, rel);
	assert_int_equal(journal_note_change(s->f->j, uid, fd, JOURNAL_DATA), 0);
	close(fd);
}

static int cmp_xattr(const void *x, const void *y)
{
	return strcmp(((const struct replica_xattr *)x)->name,
		      ((const struct replica_xattr *)y)->name);
}

/* The update a partner would send for @uid: its record, xattrs and link target. */
static void mk_update(struct side *s, const struct dfsr_uid *uid, struct replica_update *u)
{
	char full[1024], list[4096];
	struct dfsr_buf rel;
	ssize_t len;

	replica_update_init(u);
	assert_int_equal(journal__get(s->f->j, uid, &u->rec), 0);
	if (u->rec.tombstone)
		return;
	dfsr_buf_init(&rel);
	assert_int_equal(journal_path(s->f->j, uid, &rel), 0);
	snprintf(full, sizeof(full), "%s/%s", s->f->dir, rel.p);
	dfsr_buf_release(&rel);
	if (u->rec.type == RECORD_LINK) {
		char target[REPLICA_LINK_MAX + 1];
		ssize_t n = readlink(full, target, sizeof(target) - 1);

		assert_true(n > 0);
		target[n] = '\0';
		u->link_target = strdup(target);
	}
	len = llistxattr(full, list, sizeof(list));
	assert_true(len >= 0);
	for (ssize_t off = 0; off < len; off += (ssize_t)strlen(list + off) + 1) {
		struct replica_xattr *x;
		ssize_t vl;

		if (hash_xattr_excluded(list + off))
			continue;
		u->xattrs = realloc(u->xattrs, (u->nxattrs + 1) * sizeof(*u->xattrs));
		assert_non_null(u->xattrs);
		x = &u->xattrs[u->nxattrs++];
		x->name = strdup(list + off);
		vl = lgetxattr(full, x->name, NULL, 0);
		assert_true(vl >= 0);
		x->len = (size_t)vl;
		x->value = malloc(x->len + 1);
		assert_int_equal(lgetxattr(full, x->name, x->value, x->len), vl);
	}
	if (u->nxattrs)
		qsort(u->xattrs, u->nxattrs, sizeof(*u->xattrs), cmp_xattr);
	assert_int_equal(replica_update_check(u), 0);
}

/* Stage @u's data on @src, assemble it in @dst's Installing; returns the fd. */
static int fetch(struct side *src, struct side *dst, const struct replica_update *u)
{
	struct stage_key k = { .uid = u->rec.uid, .gvsn = u->rec.gvsn };
	uint8_t *buf = malloc(STAGE_STORED_MAX);
	struct stage_version *ver;
	struct dfsr_buf rel;
	struct stage_asm *a;
	int fd, out = -1;

	assert_non_null(buf);
	dfsr_buf_init(&rel);
	assert_int_equal(journal_path(src->f->j, &u->rec.uid, &rel), 0);
	fd = openat(src->f->root_fd, rel.p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	assert_true(fd >= 0);
	dfsr_buf_release(&rel);
	assert_int_equal(stage_file(src->stage, &k, fd, u->rec.content), 0);
	close(fd);
	assert_int_equal(stage_version_open(src->stage, &k, &ver), 0);
	assert_int_equal(
		stage_asm_open(replica_installing_fd(dst->r), &k, stage_version_list(ver), &a), 0);
	for (size_t i = 0; i < stage_version_list(ver)->n; i++) {
		uint32_t len;
		uint8_t codec;

		assert_int_equal(stage_version_read_stored(ver, i, buf, &len, &codec), 0);
		assert_int_equal(stage_asm_put_stored(a, i, codec, buf, len), 0);
	}
	assert_int_equal(stage_asm_finish(a, &out), 0);
	stage_asm_free(a);
	stage_version_close(ver);
	free(buf);
	return out;
}

static int print_event(void *arg, const struct journal_event_info *e)
{
	(void)arg;
	if (e->id == 1301 || e->id == 1302)
		print_error("event %d %s\n", e->id, e->message);
	return 0;
}

/* Offer @u to @dst; fetch from @src and install when asked. */
static enum replica_verdict deliver(struct side *src, struct side *dst,
				    const struct replica_update *u)
{
	enum replica_verdict v;
	int fd, rc;

	rc = replica_offer(dst->r, u, &v);
	if (rc < 0)
		(void)journal_list_events(dst->f->j, 0, print_event, NULL);
	assert_int_equal(rc, 0);
	if (v != REPLICA_FETCH)
		return v;
	fd = fetch(src, dst, u);
	assert_int_equal(replica_install(dst->r, u, fd, &v), 0);
	close(fd);
	return v;
}

static enum replica_verdict sync_uid(struct side *src, struct side *dst, const struct dfsr_uid *uid)
{
	struct replica_update u;
	enum replica_verdict v;

	mk_update(src, uid, &u);
	v = deliver(src, dst, &u);
	replica_update_release(&u);
	return v;
}

static void assert_content(struct side *s, const char *rel, const char *data)
{
	char buf[4096];
	int fd = openat(s->f->root_fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, data);
}

static bool exists(struct side *s, const char *rel)
{
	struct stat st;

	return fstatat(s->f->root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void rm_tree(struct side *s, const char *rel)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s/%s'", s->f->dir, rel);
	assert_int_equal(system(cmd), 0);
}

/* @uid has the same version on both sides, and @b's disk matches its record at @rel. */
static void assert_same(struct side *a, struct side *b, const struct dfsr_uid *uid, const char *rel)
{
	struct record ra, rb;

	fx_record(a->f, uid, &ra);
	fx_record(b->f, uid, &rb);
	assert_int_equal(ra.tombstone, rb.tombstone);
	assert_int_equal(version_gvsn_cmp(&ra.gvsn, &rb.gvsn), 0);
	assert_int_equal(version_vector_compare(&ra.vv, &rb.vv), VERSION_EQUAL);
	assert_memory_equal(ra.hash, rb.hash, HASH_LEN);
	assert_string_equal(ra.name, rb.name);
	assert_memory_equal(ra.parent.b, rb.parent.b, DFSR_UID_LEN);
	if (rel) {
		struct hash_result h;
		struct dfsr_uid found;

		assert_int_equal(hash_at(b->f->root_fd, rel, &h), 0);
		assert_memory_equal(h.hash, rb.hash, HASH_LEN);
		/* the stat fields are the local ones: the next scan sees no change (a
		 * directory's ctime moves with its entries, as for local changes) */
		if (rb.type != RECORD_DIR)
			assert_int_equal(rb.ctime_ns, (int64_t)h.st.st_ctim.tv_sec * 1000000000 +
							      h.st.st_ctim.tv_nsec);
		assert_int_equal(fx_lookup(b->f, rel, &found), 0);
		assert_memory_equal(found.b, uid->b, DFSR_UID_LEN);
	}
	record_release(&ra);
	record_release(&rb);
}

struct mf {
	size_t n;
	enum manifest_type type[16];
	char preserved[16][300];
	char path[16][300];
};

static int mf_visit(void *arg, const struct manifest_entry *e)
{
	struct mf *m = arg;

	if (m->n < 16) {
		m->type[m->n] = e->type;
		snprintf(m->preserved[m->n], sizeof(m->preserved[0]), "%s", e->preserved);
		snprintf(m->path[m->n], sizeof(m->path[0]), "%s", e->path);
	}
	m->n++;
	return 0;
}

static void manifest(struct side *s, enum manifest_kind kind, struct mf *m)
{
	int pfd = openat(s->f->root_fd, LAYOUT_PRIVATE, O_PATH | O_DIRECTORY | O_CLOEXEC);

	memset(m, 0, sizeof(*m));
	assert_true(pfd >= 0);
	assert_int_equal(manifest_list(pfd, kind, mf_visit, m), 0);
	close(pfd);
}

/* "<name>-{GUID}-v<counter>" of the version of @uid that @s holds now. */
static void preserved_rel(struct side *s, const char *dir, const struct dfsr_uid *uid, char *out,
			  size_t len)
{
	char guid[DFSR_UID_GUID_LEN];
	struct record r;

	fx_record(s->f, uid, &r);
	dfsr_uid_guid(uid, guid);
	snprintf(out, len, "%s/%s/%s-{%s}-v%llu", LAYOUT_PRIVATE, dir, r.name, guid,
		 (unsigned long long)r.gvsn.counter);
	record_release(&r);
}

struct evcount {
	int id;
	int n;
};

static int ev_visit(void *arg, const struct journal_event_info *e)
{
	struct evcount *c = arg;

	if (e->id == c->id)
		c->n++;
	return 0;
}

static int events(struct side *s, int id)
{
	struct evcount c = { .id = id };

	assert_int_equal(journal_list_events(s->f->j, 0, ev_visit, &c), 0);
	return c.n;
}

static size_t count_dir(struct side *s, const char *rel)
{
	int fd = openat(s->f->root_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	size_t n = 0;

	assert_true(fd >= 0);
	d = fdopendir(fd);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* A consistency scan of @s finds nothing new: installs look like what they are. */
static void assert_scan_quiet(struct side *s)
{
	struct scan_result res;
	uint64_t seq = fx_next_seq(s->f);

	assert_int_equal(scan_folder(s->f->j, &res), 0);
	assert_int_equal(res.created, 0);
	assert_int_equal(res.changed, 0);
	assert_int_equal(res.removed, 0);
	assert_int_equal(fx_next_seq(s->f), seq);
}

struct upd_list {
	struct replica_update v[512];
	size_t n;
};

static int collect_update(void *arg, const struct replica_update *u)
{
	struct upd_list *l = arg;
	struct replica_update *c;

	assert_true(l->n < DFSR_ARRAY_SIZE(l->v));
	c = &l->v[l->n++];
	replica_update_init(c);
	assert_int_equal(record_copy(&c->rec, &u->rec), 0);
	if (u->link_target)
		c->link_target = strdup(u->link_target);
	if (u->nxattrs) {
		c->xattrs = calloc(u->nxattrs, sizeof(*c->xattrs));
		assert_non_null(c->xattrs);
		for (size_t i = 0; i < u->nxattrs; i++) {
			c->xattrs[i].name = strdup(u->xattrs[i].name);
			c->xattrs[i].len = u->xattrs[i].len;
			c->xattrs[i].value = malloc(u->xattrs[i].len + 1);
			if (u->xattrs[i].len)
				memcpy(c->xattrs[i].value, u->xattrs[i].value, u->xattrs[i].len);
		}
		c->nxattrs = u->nxattrs;
	}
	return 0;
}

/*
 * What a session does: every update @dst lacks (outbound_missing() on @src against its
 * Hello knowledge), offered in order, the waiting ones again until nothing moves, then the
 * Done merged unless some still wait (a session holds them; a later sync sends them again).
 * Return: how many still wait.
 */
static size_t sync_some(struct side *src, struct side *dst)
{
	size_t waiting = 0;

	static struct upd_list l;
	struct version_vector kv;
	uint64_t seq;
	bool again = true;

	l.n = 0;
	version_vector_init(&kv);
	assert_int_equal(replica_hello_knowledge(dst->r, &kv), 0);
	assert_int_equal(outbound_missing(src->f->j, &kv, &seq, NULL, collect_update, &l), 0);
	version_vector_release(&kv);
	bool *done = calloc(l.n + 1, sizeof(*done));

	assert_non_null(done);
	while (again) {
		again = false;
		for (size_t i = 0; i < l.n; i++) {
			enum replica_verdict v;

			if (done[i])
				continue;
			v = deliver(src, dst, &l.v[i]);
			if (v != REPLICA_DONE && v != REPLICA_WAIT) {
				print_error("update %s verdict %d\n", l.v[i].rec.name, (int)v);
				(void)journal_list_events(dst->f->j, 0, print_event, NULL);
			}
			assert_true(v == REPLICA_DONE || v == REPLICA_WAIT);
			if (v == REPLICA_DONE)
				done[i] = again = true;
		}
	}
	for (size_t i = 0; i < l.n; i++) {
		if (!done[i])
			waiting++;
		replica_update_release(&l.v[i]);
	}
	free(done);
	if (waiting)
		return waiting;
	version_vector_init(&kv);
	assert_int_equal(replica_knowledge(src->r, &kv), 0);
	assert_int_equal(
		replica_merge(dst->r, &kv, journal_state(src->f->j) == JOURNAL_STATE_NORMAL), 0);
	version_vector_release(&kv);
	return 0;
}

/* sync_some(), and nothing may be left waiting. */
static void sync_all(struct side *src, struct side *dst)
{
	size_t waiting = sync_some(src, dst);

	if (waiting)
		print_error("%zu updates still waiting\n", waiting);
	assert_int_equal(waiting, 0);
}

struct rec_list {
	struct record v[512];
	size_t n;
};

/* Every record of @s (live and tombstones), through the database. */
static void all_records(struct side *s, struct rec_list *out)
{
	struct db_iter *it = db_iter_new(journal__db(s->f->j), NULL, DB_CF_RECORDS);

	out->n = 0;
	assert_non_null(it);
	for (db_iter_seek_first(it); db_iter_valid(it); db_iter_next(it)) {
		size_t vlen;
		const uint8_t *v = db_iter_value(it, &vlen);

		assert_true(out->n < DFSR_ARRAY_SIZE(out->v));
		assert_int_equal(record_decode(&out->v[out->n++], v, vlen), 0);
	}
	db_iter_free(it);
}

static void release_records(struct rec_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		record_release(&l->v[i]);
	l->n = 0;
}

/* §13: both sides hold the same live records (UID, GVSN, parent, name, hash) and the same
 * tombstones, and every live one matches the disk. */
static void assert_converged(struct side *a, struct side *b)
{
	static struct rec_list la, lb;

	all_records(a, &la);
	all_records(b, &lb);
	for (size_t i = 0, k = 0; i < la.n || k < lb.n;) {
		int d = i == la.n ? 1 : k == lb.n ? -1 : dfsr_uid_cmp(&la.v[i].uid, &lb.v[k].uid);

		if (d)
			print_error("only on %s: %c %s uid=%02x%02x t=%d g=%02x:%llu\n",
				    d < 0 ? "first" : "second", d < 0 ? la.v[i].type : lb.v[k].type,
				    d < 0 ? la.v[i].name : lb.v[k].name,
				    d < 0 ? la.v[i].uid.b[0] : lb.v[k].uid.b[0],
				    d < 0 ? la.v[i].uid.b[1] : lb.v[k].uid.b[1],
				    d < 0 ? la.v[i].tombstone : lb.v[k].tombstone,
				    d < 0 ? la.v[i].gvsn.db.b[0] : lb.v[k].gvsn.db.b[0],
				    (unsigned long long)(d < 0 ? la.v[i].gvsn.counter
							       : lb.v[k].gvsn.counter));
		if (d <= 0)
			i++;
		if (d >= 0)
			k++;
	}
	assert_int_equal(la.n, lb.n);
	for (size_t i = 0; i < la.n; i++) {
		const struct record *x = &la.v[i], *y = &lb.v[i];

		assert_memory_equal(x->uid.b, y->uid.b, DFSR_UID_LEN);
		if (x->tombstone != y->tombstone || version_gvsn_cmp(&x->gvsn, &y->gvsn))
			print_error("diverged: %c %s/%s t=%d g=%02x:%llu vs %c %s t=%d g=%02x:%llu "
				    "vv %d\n",
				    x->type, "", x->name, x->tombstone, x->gvsn.db.b[0],
				    (unsigned long long)x->gvsn.counter, y->type, y->name,
				    y->tombstone, y->gvsn.db.b[0],
				    (unsigned long long)y->gvsn.counter,
				    (int)version_vector_compare(&x->vv, &y->vv));
		assert_int_equal(x->tombstone, y->tombstone);
		assert_int_equal(version_gvsn_cmp(&x->gvsn, &y->gvsn), 0);
		if (x->tombstone)
			continue;
		if (!dfsr_uid_equal(&x->parent, &y->parent))
			print_error(
				"moved: %c %s uid=%02x%02x g=%02x:%llu parent %02x%02x vs %02x%02x\n",
				x->type, x->name, x->uid.b[0], x->uid.b[1], x->gvsn.db.b[0],
				(unsigned long long)x->gvsn.counter, x->parent.b[0], x->parent.b[1],
				y->parent.b[0], y->parent.b[1]);
		assert_memory_equal(x->parent.b, y->parent.b, DFSR_UID_LEN);
		assert_string_equal(x->name, y->name);
		assert_memory_equal(x->hash, y->hash, HASH_LEN);
		{
			struct dfsr_buf rel;
			struct hash_result h;

			dfsr_buf_init(&rel);
			assert_int_equal(journal_path(b->f->j, &y->uid, &rel), 0);
			assert_int_equal(hash_at(b->f->root_fd, rel.p, &h), 0);
			assert_memory_equal(h.hash, y->hash, HASH_LEN);
			dfsr_buf_release(&rel);
		}
	}
	release_records(&la);
	release_records(&lb);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_create_file_dir_link(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid d, f, l;
	char target[64];
	struct stat st;
	ssize_t n;

	d = mk_dir(&p->a, NULL, "d");
	fx_write(p->a.f, "d/f", "hello world");
	assert_int_equal(fchmodat(p->a.f->root_fd, "d/f", 0640, 0), 0);
	assert_int_equal(setxattr("/dev/null", "user.x", "1", 1, 0) == 0 || errno != 0, 1);
	{
		char full[512];

		snprintf(full, sizeof(full), "%s/d/f", p->a.f->dir);
		assert_int_equal(setxattr(full, "user.color", "blue", 4, 0), 0);
	}
	f = fx_new(p->a.f, "d", "f");
	assert_int_equal(symlinkat("f", p->a.f->root_fd, "d/l"), 0);
	l = fx_new(p->a.f, "d", "l");

	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &l), REPLICA_DONE);

	assert_content(&p->b, "d/f", "hello world");
	assert_int_equal(fstatat(p->b.f->root_fd, "d/f", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	{
		char full[512], v[16] = { 0 };

		snprintf(full, sizeof(full), "%s/d/f", p->b.f->dir);
		assert_int_equal(getxattr(full, "user.color", v, sizeof(v)), 4);
		assert_string_equal(v, "blue");
	}
	n = readlinkat(p->b.f->root_fd, "d/l", target, sizeof(target) - 1);
	assert_int_equal(n, 1);
	target[n] = '\0';
	assert_string_equal(target, "f");
	assert_same(&p->a, &p->b, &d, "d");
	assert_same(&p->a, &p->b, &f, "d/f");
	assert_same(&p->a, &p->b, &l, "d/l");
	/* installs are journaled (forwarded to third members) with the upstream's GVSN */
	{
		struct entries es;
		struct record ra;

		fx_entries(p->b.f, 0, &es);
		assert_int_equal(es.n, 3);
		fx_record(p->a.f, &f, &ra);
		assert_memory_equal(es.e[1].uid.b, f.b, DFSR_UID_LEN);
		assert_int_equal(es.e[1].counter, ra.gvsn.counter);
		assert_int_equal(es.e[1].op, JOURNAL_OP_CREATE);
		record_release(&ra);
	}
	/* nothing left in Installing; the mount was told */
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_INSTALLING), 0);
	assert_true(p->b.invals >= 3);
	assert_scan_quiet(&p->b);
	/* the same update again is ignored (§2.1) */
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	{
		struct entries es;

		fx_entries(p->b.f, 0, &es);
		assert_int_equal(es.n, 3);
	}
}

static void test_modify_rename_delete(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid d, f;
	struct replica_update u;
	enum replica_verdict v;
	char pres[512];
	struct mf m;

	d = mk_dir(&p->a, NULL, "d");
	f = mk_file(&p->a, "d", "f", "one");
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);

	/* modify: data fetched */
	modify(&p->a, "d/f", &f, "two, longer");
	mk_update(&p->a, &f, &u);
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_FETCH);
	replica_update_release(&u);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_content(&p->b, "d/f", "two, longer");
	assert_same(&p->a, &p->b, &f, "d/f");

	/* rename + chmod: no data fetched */
	{
		struct journal_rename rn = { .old_parent = &d,
					     .old_name = "f",
					     .new_parent = root(&p->a),
					     .new_name = "g",
					     .other_fd = -1 };
		struct dfsr_uid out;

		assert_int_equal(renameat(p->a.f->root_fd, "d/f", p->a.f->root_fd, "g"), 0);
		assert_int_equal(fchmodat(p->a.f->root_fd, "g", 0600, 0), 0);
		rn.fd = fx_opath(p->a.f, "g");
		assert_int_equal(journal_note_rename(p->a.f->j, &rn, &out, NULL), 0);
		close(rn.fd);
	}
	mk_update(&p->a, &f, &u);
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	replica_update_release(&u);
	assert_false(exists(&p->b, "d/f"));
	assert_content(&p->b, "g", "two, longer");
	assert_same(&p->a, &p->b, &f, "g");

	/* delete: preserved in ConflictAndDeleted with a manifest entry */
	preserved_rel(&p->b, LAYOUT_CONFLICT, &f, pres, sizeof(pres));
	assert_int_equal(unlinkat(p->a.f->root_fd, "g", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "g"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_false(exists(&p->b, "g"));
	assert_content(&p->b, pres, "two, longer");
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.type[0], MANIFEST_TYPE_DELETED);
	assert_string_equal(m.path[0], "g");
	assert_same(&p->a, &p->b, &f, NULL);

	/* deleting a directory with what the deleter saw moves it whole */
	assert_int_equal(unlinkat(p->a.f->root_fd, "d", AT_REMOVEDIR), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "d"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_false(exists(&p->b, "d"));
	assert_same(&p->a, &p->b, &d, NULL);
	assert_scan_quiet(&p->b);
}

static void test_update_conflict(void **state)
{
	struct pair *p = *state;
	struct replica_update ua, ub;
	enum replica_verdict v;
	char pres[512];
	struct dfsr_uid f;
	struct mf m;

	f = mk_file(&p->a, NULL, "f", "base");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	modify(&p->a, "f", &f, "from A");
	modify(&p->b, "f", &f, "from B, later"); /* the later change wins (§3) */
	mk_update(&p->a, &f, &ua);
	mk_update(&p->b, &f, &ub);
	preserved_rel(&p->a, LAYOUT_CONFLICT, &f, pres, sizeof(pres));

	/* B receives the loser: nothing downloaded, its file stays */
	assert_int_equal(replica_offer(p->b.r, &ua, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	assert_content(&p->b, "f", "from B, later");
	/* A receives the winner: its own version is preserved */
	assert_int_equal(deliver(&p->b, &p->a, &ub), REPLICA_DONE);
	assert_content(&p->a, "f", "from B, later");
	assert_content(&p->a, pres, "from A");
	manifest(&p->a, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.type[0], MANIFEST_TYPE_CONFLICT);
	assert_int_equal(events(&p->a, 4412), 1);
	/* both converge on the same record, vectors merged, and never conflict again */
	assert_same(&p->b, &p->a, &f, "f");
	assert_int_equal(replica_offer(p->a.r, &ua, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	assert_int_equal(replica_offer(p->b.r, &ub, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->b, &p->a, &f), REPLICA_DONE);
	assert_same(&p->b, &p->a, &f, "f");
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 0);
	replica_update_release(&ua);
	replica_update_release(&ub);
}

/*
 * §3 resolved elsewhere: A's loser reaches B first, B keeps its later version and merges
 * A's vector into it. What then comes back to A dominates A's version: A must still see
 * that its live version lost (it is not in the winner's origin) and preserve it.
 */
static void test_update_conflict_resolved_elsewhere(void **state)
{
	struct pair *p = *state;
	struct replica_update ua;
	enum replica_verdict v;
	char pres[512];
	struct dfsr_uid f;
	struct record r;
	struct mf m;

	f = mk_file(&p->a, NULL, "f", "base");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	modify(&p->a, "f", &f, "from A");
	modify(&p->b, "f", &f, "from B, later");
	mk_update(&p->a, &f, &ua);
	preserved_rel(&p->a, LAYOUT_CONFLICT, &f, pres, sizeof(pres));

	assert_int_equal(replica_offer(p->b.r, &ua, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	assert_content(&p->b, "f", "from B, later");
	assert_int_equal(journal__get(p->b.f->j, &f, &r), 0);
	assert_true(r.origin.n > 0); /* B's own vector, before A's was merged in */
	assert_false(version_vector_contains(&r.origin, &ua.rec.gvsn));
	assert_true(version_vector_contains(&r.vv, &ua.rec.gvsn));
	record_release(&r);

	/* the resolved record dominates A's version, and A still keeps its loser */
	assert_int_equal(sync_uid(&p->b, &p->a, &f), REPLICA_DONE);
	assert_content(&p->a, "f", "from B, later");
	assert_content(&p->a, pres, "from A");
	manifest(&p->a, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.type[0], MANIFEST_TYPE_CONFLICT);
	assert_int_equal(events(&p->a, 4412), 1);
	assert_same(&p->b, &p->a, &f, "f");

	/* a new version made on A from there has seen everything: no origin, no conflict */
	modify(&p->a, "f", &f, "A again");
	assert_int_equal(journal__get(p->a.f->j, &f, &r), 0);
	assert_int_equal(r.origin.n, 0);
	record_release(&r);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_content(&p->b, "f", "A again");
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 0);
	replica_update_release(&ua);
}

static void test_name_conflict(void **state)
{
	struct pair *p = *state;
	struct replica_update ua, ub;
	enum replica_verdict v;
	struct dfsr_uid fa, fb;
	struct record r;
	char pres[512];
	struct mf m;

	fa = mk_file(&p->a, NULL, "n.txt", "made first on A");
	fb = mk_file(&p->b, NULL, "n.txt", "made later on B");
	mk_update(&p->a, &fa, &ua);
	mk_update(&p->b, &fb, &ub);
	preserved_rel(&p->b, LAYOUT_CONFLICT, &fb, pres, sizeof(pres));

	/* A keeps the name (created first); B's update is a tombstone there */
	assert_int_equal(replica_offer(p->a.r, &ub, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	assert_content(&p->a, "n.txt", "made first on A");
	fx_record(p->a.f, &fb, &r);
	assert_true(r.tombstone);
	record_release(&r);
	/* on B, its own file loses the name and is preserved */
	assert_int_equal(deliver(&p->a, &p->b, &ua), REPLICA_DONE);
	assert_content(&p->b, "n.txt", "made first on A");
	assert_content(&p->b, pres, "made later on B");
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.type[0], MANIFEST_TYPE_NAME_CONFLICT);
	fx_record(p->b.f, &fb, &r);
	assert_true(r.tombstone);
	record_release(&r);
	assert_same(&p->a, &p->b, &fa, "n.txt");
	/* each side deleted the loser as a new version (§4): the two deletes meet (§6) */
	sync_all(&p->a, &p->b);
	sync_all(&p->b, &p->a);
	assert_same(&p->a, &p->b, &fb, NULL);
	assert_converged(&p->a, &p->b);
	replica_update_release(&ua);
	replica_update_release(&ub);
}

static void test_delete_vs_update(void **state)
{
	struct pair *p = *state;
	struct replica_update ua, ub;
	enum replica_verdict v;
	struct dfsr_uid f;

	f = mk_file(&p->a, NULL, "f", "base");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_int_equal(unlinkat(p->a.f->root_fd, "f", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "f"), 0);
	modify(&p->b, "f", &f, "changed on B");
	mk_update(&p->a, &f, &ua);
	mk_update(&p->b, &f, &ub);
	assert_true(ua.rec.tombstone);

	/* the update wins whatever the order (§5) */
	assert_int_equal(replica_offer(p->b.r, &ua, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	assert_content(&p->b, "f", "changed on B");
	assert_int_equal(deliver(&p->b, &p->a, &ub), REPLICA_DONE);
	assert_content(&p->a, "f", "changed on B");
	/* B kept its version against the delete as a new version: it reaches A as well */
	assert_int_equal(sync_uid(&p->b, &p->a, &f), REPLICA_DONE);
	assert_same(&p->b, &p->a, &f, "f");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_same(&p->a, &p->b, &f, "f");
	replica_update_release(&ua);
	replica_update_release(&ub);
}

static void test_resurrection(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid d, x, y, nw;
	struct record r;
	char pres[512];

	d = mk_dir(&p->a, NULL, "D");
	x = mk_file(&p->a, "D", "x", "seen by the deleter");
	y = mk_file(&p->a, "D", "y", "also seen");
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &x), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &y), REPLICA_DONE);
	/* A deletes the directory; B adds a file to it meanwhile */
	assert_int_equal(unlinkat(p->a.f->root_fd, "D/x", 0), 0);
	assert_int_equal(unlinkat(p->a.f->root_fd, "D/y", 0), 0);
	assert_int_equal(unlinkat(p->a.f->root_fd, "D", AT_REMOVEDIR), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "D"), 0);
	nw = mk_file(&p->b, "D", "new", "added on B");
	preserved_rel(&p->b, LAYOUT_CONFLICT, &x, pres, sizeof(pres));

	/* B: x's tombstone arrives first (children first) and is applied */
	assert_int_equal(sync_uid(&p->a, &p->b, &x), REPLICA_DONE);
	assert_false(exists(&p->b, "D/x"));
	assert_content(&p->b, pres, "seen by the deleter");
	/* the directory's tombstone: y (seen) goes, D comes back with "new" (§7.1) */
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_true(exists(&p->b, "D/new"));
	assert_false(exists(&p->b, "D/y"));
	fx_record(p->b.f, &d, &r);
	assert_false(r.tombstone);
	assert_memory_equal(r.gvsn.db.b, journal_db_id(p->b.f->j)->b, DFSR_UID_LEN);
	record_release(&r);
	fx_record(p->b.f, &y, &r);
	assert_true(r.tombstone);
	record_release(&r);
	/* the late tombstone of y is then a no-op */
	assert_int_equal(sync_uid(&p->a, &p->b, &y), REPLICA_DONE);

	/* A receives "new" first: its parent is a tombstone, resurrected (§7.2) */
	assert_int_equal(sync_uid(&p->b, &p->a, &nw), REPLICA_DONE);
	assert_content(&p->a, "D/new", "added on B");
	/* then B's resurrection of D and A's resurrection meet (§7.3) */
	assert_int_equal(sync_uid(&p->b, &p->a, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_same(&p->a, &p->b, &d, "D");
	assert_same(&p->b, &p->a, &d, "D");
	assert_same(&p->b, &p->a, &nw, "D/new");
}

static void test_initial_sync(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid d, same, diff, bd, bsame, bdiff, local, sub;
	struct version_vector kv;
	struct replica_update u;
	enum replica_verdict v;
	char pres[512];
	struct record r;
	struct mf m;

	d = mk_dir(&p->a, NULL, "d");
	same = mk_file(&p->a, "d", "same.txt", "preseeded");
	diff = mk_file(&p->a, NULL, "diff.txt", "upstream version");
	/* B's own build: the same tree, one file differs, one is B's alone */
	bd = mk_dir(&p->b, NULL, "d");
	bsame = mk_file(&p->b, "d", "same.txt", "preseeded");
	sub = mk_file(&p->b, "d", "mine.txt", "only on B, under d");
	bdiff = mk_file(&p->b, NULL, "diff.txt", "local version");
	local = mk_file(&p->b, NULL, "local.txt", "only on B");
	assert_int_equal(journal_set_state(p->b.f->j, JOURNAL_STATE_INITIAL_SYNC), 0);
	preserved_rel(&p->b, LAYOUT_PREEXISTING, &bdiff, pres, sizeof(pres));

	/* the directory is adopted; its children move to the upstream UID */
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(journal__get(p->b.f->j, &bd, &r), -ENOENT);
	fx_record(p->b.f, &sub, &r);
	assert_memory_equal(r.parent.b, d.b, DFSR_UID_LEN);
	record_release(&r);
	assert_int_equal(p->b.nadopted, 1); /* the layer above is told (§9) */
	assert_true(dfsr_uid_equal(&p->b.adopted_old, &bd));
	assert_true(dfsr_uid_equal(&p->b.adopted_new, &d));
	/* the same file: adopted, nothing fetched; a node held for it journals on the
	 * upstream's UID from now on (B's own record is dropped) */
	mk_update(&p->a, &same, &u);
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	replica_update_release(&u);
	assert_int_equal(journal__get(p->b.f->j, &bsame, &r), -ENOENT);
	assert_int_equal(p->b.nadopted, 2);
	assert_true(dfsr_uid_equal(&p->b.adopted_old, &bsame));
	assert_true(dfsr_uid_equal(&p->b.adopted_new, &same));
	assert_same(&p->a, &p->b, &same, "d/same.txt");
	/* a different file: the upstream's is installed, the local one goes to PreExisting */
	assert_int_equal(sync_uid(&p->a, &p->b, &diff), REPLICA_DONE);
	assert_content(&p->b, "diff.txt", "upstream version");
	assert_content(&p->b, pres, "local version");
	manifest(&p->b, MANIFEST_PREEXISTING, &m);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.type[0], MANIFEST_TYPE_PREEXISTING);
	assert_string_equal(m.path[0], "diff.txt");
	assert_same(&p->a, &p->b, &diff, "diff.txt");
	/* B's own file stays */
	fx_assert_hash(p->b.f, "local.txt");
	fx_record(p->b.f, &local, &r);
	assert_false(r.tombstone);
	record_release(&r);
	fx_assert_hash(p->b.f, "d/mine.txt");

	/* the upstream's Done: B is normal */
	version_vector_init(&kv);
	assert_int_equal(replica_knowledge(p->a.r, &kv), 0);
	assert_int_equal(replica_merge(p->b.r, &kv, true), 0);
	assert_int_equal(journal_state(p->b.f->j), JOURNAL_STATE_NORMAL);
	assert_int_equal(events(&p->b, 4104), 1);
	version_vector_release(&kv);
	assert_int_equal(replica_knowledge(p->b.r, &kv), 0);
	fx_record(p->a.f, &diff, &r);
	assert_true(version_vector_contains(&kv, &r.gvsn));
	record_release(&r);
	version_vector_release(&kv);
	assert_scan_quiet(&p->b);
}

static void test_hostile(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid f, d;
	struct replica_update u;
	enum replica_verdict v;
	size_t before;
	int refused;

	f = mk_file(&p->a, NULL, "f", "data");
	d = mk_dir(&p->a, NULL, "d");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	before = count_dir(&p->b, ".");
	refused = events(&p->b, 1301);

	static const char *const bad[] = { "DfsrPrivate", "..", ".", "a/b" };

	for (size_t i = 0; i < DFSR_ARRAY_SIZE(bad); i++) {
		mk_update(&p->a, &d, &u);
		snprintf(u.rec.name, sizeof(u.rec.name), "%s", bad[i]);
		assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
		assert_int_equal(v, REPLICA_REFUSED);
		replica_update_release(&u);
	}
	/* the root as an object */
	mk_update(&p->a, &d, &u);
	u.rec.uid = *root(&p->b);
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_REFUSED);
	replica_update_release(&u);
	/* a parent that is a file */
	mk_update(&p->a, &d, &u);
	u.rec.parent = f;
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_REFUSED);
	replica_update_release(&u);
	/* a known file turned into a directory */
	mk_update(&p->a, &d, &u);
	u.rec.uid = f;
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_REFUSED);
	replica_update_release(&u);
	/* a link without a target */
	mk_update(&p->a, &d, &u);
	u.rec.type = RECORD_LINK;
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_REFUSED);
	replica_update_release(&u);
	/* a directory moved below itself, by a member that saw the child there: it waits for
	 * the child's move (§4.1) */
	{
		struct dfsr_uid e = mk_dir(&p->a, "d", "e");

		assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
		assert_int_equal(sync_uid(&p->a, &p->b, &e), REPLICA_DONE);
		before = count_dir(&p->b, ".");
		mk_update(&p->a, &d, &u);
		u.rec.parent = e;
		u.rec.vv.v[0].counter += 10; /* newer than anything known */
		u.rec.gvsn.counter = u.rec.vv.v[0].counter;
		assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
		assert_int_equal(v, REPLICA_WAIT);
		replica_update_release(&u);
		assert_true(exists(&p->b, "d/e"));
	}
	assert_int_equal(events(&p->b, 1301), refused + 8);
	/* a filtered name is ignored, not refused */
	mk_update(&p->a, &d, &u);
	snprintf(u.rec.name, sizeof(u.rec.name), "skipme");
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	replica_update_release(&u);
	assert_int_equal(count_dir(&p->b, "."), before);
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_CONFLICT), 0);
}

static void test_hash_mismatch(void **state)
{
	struct pair *p = *state;
	struct replica_update u;
	enum replica_verdict v;
	struct dfsr_uid f;
	int fd;

	f = mk_file(&p->a, NULL, "f", "genuine data");
	mk_update(&p->a, &f, &u);
	u.rec.hash[0] ^= 1;
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_FETCH);
	fd = fetch(&p->a, &p->b, &u);
	assert_int_equal(replica_install(p->b.r, &u, fd, &v), 0);
	close(fd);
	assert_int_equal(v, REPLICA_REFUSED);
	assert_false(exists(&p->b, "f"));
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_INSTALLING), 0);
	assert_int_equal(journal__get(p->b.f->j, &f, &(struct record){ 0 }), -ENOENT);
	replica_update_release(&u);
}

static void test_wait_parent(void **state)
{
	struct pair *p = *state;
	struct replica_update u;
	enum replica_verdict v;
	struct dfsr_uid d, f;

	d = mk_dir(&p->a, NULL, "d");
	f = mk_file(&p->a, "d", "f", "child");
	mk_update(&p->a, &f, &u);
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_WAIT);
	assert_false(exists(&p->b, "d"));
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(deliver(&p->a, &p->b, &u), REPLICA_DONE);
	assert_content(&p->b, "d/f", "child");
	replica_update_release(&u);
}

static void test_busy(void **state)
{
	struct pair *p = *state;
	struct replica_update u;
	enum replica_verdict v;
	struct dfsr_uid f;
	struct stat st;
	int fd;

	f = mk_file(&p->a, NULL, "f", "v1");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_int_equal(fstatat(p->b.f->root_fd, "f", &st, 0), 0);
	p->b.busy_ino = st.st_ino;

	modify(&p->a, "f", &f, "v2");
	mk_update(&p->a, &f, &u);
	assert_int_equal(replica_offer(p->b.r, &u, &v), 0);
	assert_int_equal(v, REPLICA_FETCH);
	fd = fetch(&p->a, &p->b, &u);
	assert_int_equal(replica_install(p->b.r, &u, fd, &v), 0);
	assert_int_equal(v, REPLICA_BUSY);
	assert_content(&p->b, "f", "v1");
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_INSTALLING), 1);
	p->b.busy_ino = 0;
	assert_int_equal(replica_install(p->b.r, &u, fd, &v), 0);
	assert_int_equal(v, REPLICA_DONE);
	close(fd);
	replica_update_release(&u);
	assert_content(&p->b, "f", "v2");
	assert_same(&p->a, &p->b, &f, "f");

	/* a delete waits for the writer too */
	assert_int_equal(fstatat(p->b.f->root_fd, "f", &st, 0), 0);
	p->b.busy_ino = st.st_ino;
	assert_int_equal(unlinkat(p->a.f->root_fd, "f", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "f"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_BUSY);
	assert_true(exists(&p->b, "f"));
	p->b.busy_ino = 0;
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_false(exists(&p->b, "f"));
	/* event 4302 once for the waits of one file within a minute */
	assert_int_equal(events(&p->b, 4302), 1);
}

/*
 * §9: the layer above is told of every regular file moved into ConflictAndDeleted, by the
 * inode it has there: a conflict loser (whose record stays live, the winner's, so the
 * journal alone cannot tell a write through the loser's old node from a write to the
 * winner) and a file a partner deleted. A file with another name is preserved as a copy:
 * the copy is told of, never the inode the other name keeps.
 */
static void test_preserved_told(void **state)
{
	struct pair *p = *state;
	struct replica_update ub;
	struct dfsr_uid f, g, h;
	struct stat loser, st;
	char pres[512];

	f = mk_file(&p->a, NULL, "f", "base");
	g = mk_file(&p->a, NULL, "g", "g base");
	h = mk_file(&p->a, NULL, "h", "h base");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &g), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &h), REPLICA_DONE);
	assert_int_equal(p->a.npreserved + p->b.npreserved, 0);

	/* A's f loses to B's later change: A is told of the loser's inode */
	modify(&p->a, "f", &f, "from A");
	modify(&p->b, "f", &f, "from B, later");
	assert_int_equal(fstatat(p->a.f->root_fd, "f", &loser, AT_SYMLINK_NOFOLLOW), 0);
	preserved_rel(&p->a, LAYOUT_CONFLICT, &f, pres, sizeof(pres));
	mk_update(&p->b, &f, &ub);
	assert_int_equal(deliver(&p->b, &p->a, &ub), REPLICA_DONE);
	replica_update_release(&ub);
	assert_content(&p->a, pres, "from A");
	assert_int_equal(p->a.npreserved, 1);
	assert_int_equal(p->a.preserved_ino, loser.st_ino);
	assert_int_equal(fstatat(p->a.f->root_fd, "f", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_not_equal(st.st_ino, loser.st_ino); /* the winner is another inode */

	/* A deletes g: B moves its g away and is told */
	assert_int_equal(fstatat(p->b.f->root_fd, "g", &loser, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(unlinkat(p->a.f->root_fd, "g", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "g"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &g), REPLICA_DONE);
	assert_false(exists(&p->b, "g"));
	assert_int_equal(p->b.npreserved, 1);
	assert_int_equal(p->b.preserved_ino, loser.st_ino);

	/* B's h has another name (not replicated): its delete preserves a copy */
	assert_int_equal(linkat(p->b.f->root_fd, "h", p->b.f->root_fd, "h2", 0), 0);
	assert_int_equal(fstatat(p->b.f->root_fd, "h", &loser, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(unlinkat(p->a.f->root_fd, "h", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "h"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &h), REPLICA_DONE);
	assert_false(exists(&p->b, "h"));
	assert_int_equal(p->b.npreserved, 2);
	assert_int_not_equal(p->b.preserved_ino, loser.st_ino);
	assert_int_equal(fstatat(p->b.f->root_fd, "h2", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(st.st_ino, loser.st_ino);
	assert_int_equal(st.st_nlink, 1);
}

/* Whether the preserved callback of @s was told of inode @ino. */
static bool told_of(const struct side *s, ino_t ino)
{
	for (int i = 0; i < s->npreserved && i < 8; i++)
		if (s->told[i] == ino)
			return true;
	return false;
}

/*
 * §9: a directory preserved whole (it lost its name to a file made first, §4) is told of
 * file by file, so that no truncate through a node the layer above still holds for a file
 * inside changes the preserved copy; and an object that takes another record's identity
 * (§4: B's directory, made later, stays on disk as A's) is told of with both UIDs, so that
 * what is made in it through such a node is journaled under the record it is now.
 */
static void test_preserved_dir_and_adopted_told(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid ma, mb, z;
	struct stat q, r, m;

	ma = mk_dir(&p->a, NULL, "m");
	mb = mk_dir(&p->b, NULL, "m"); /* created later: B's m becomes A's (merged) */
	assert_int_equal(fstatat(p->b.f->root_fd, "m", &m, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &ma), REPLICA_DONE);
	assert_int_equal(p->b.nadopted, 1);
	assert_int_equal(p->b.adopted_ino, m.st_ino);
	assert_true(dfsr_uid_equal(&p->b.adopted_old, &mb));
	assert_true(dfsr_uid_equal(&p->b.adopted_new, &ma));

	z = mk_file(&p->a, NULL, "z", "A's file z");
	(void)mk_dir(&p->b, NULL, "z"); /* created later: loses the name, preserved whole */
	(void)mk_file(&p->b, "z", "q.txt", "q");
	(void)mk_dir(&p->b, "z", "sub");
	(void)mk_file(&p->b, "z/sub", "r.txt", "r");
	assert_int_equal(fstatat(p->b.f->root_fd, "z/q.txt", &q, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(fstatat(p->b.f->root_fd, "z/sub/r.txt", &r, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(p->b.npreserved, 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &z), REPLICA_DONE);
	assert_content(&p->b, "z", "A's file z");
	assert_int_equal(p->b.npreserved, 2);
	assert_true(told_of(&p->b, q.st_ino));
	assert_true(told_of(&p->b, r.st_ino));
}

/*
 * A directory deleted on A while B holds a file below it open for writing (§8): the
 * tombstones of the directories wait like the file's own; moved away with its directory,
 * the writer's change would stay on B, in ConflictAndDeleted, and never replicate. Once
 * the writer has changed the file and closed it, the directories come back (§7.1) and the
 * file's tombstone loses to the change (§5). A writer that changed nothing lets the
 * delete through.
 */
static void test_busy_dir(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid d, e, f, g;
	struct record r;
	struct stat st;

	d = mk_dir(&p->a, NULL, "d");
	e = mk_dir(&p->a, "d", "e");
	f = mk_file(&p->a, "d/e", "f", "v1");
	g = mk_dir(&p->a, NULL, "g");
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &e), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &g), REPLICA_DONE);

	/* B's writer opens d/e/f; A deletes d (tombstones of d, e and f) */
	assert_int_equal(fstatat(p->b.f->root_fd, "d/e/f", &st, 0), 0);
	p->b.busy_ino = st.st_ino;
	rm_tree(&p->a, "d");
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "d"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_BUSY);
	assert_int_equal(sync_uid(&p->a, &p->b, &e), REPLICA_BUSY);
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_BUSY);
	assert_content(&p->b, "d/e/f", "v1");
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_CONFLICT), 0);

	/* the writer changes the file and closes it: the directories come back */
	modify(&p->b, "d/e/f", &f, "v2 from the writer");
	p->b.busy_ino = 0;
	assert_int_equal(sync_uid(&p->a, &p->b, &e), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_content(&p->b, "d/e/f", "v2 from the writer");
	fx_record(p->b.f, &d, &r);
	assert_false(r.tombstone);
	record_release(&r);
	fx_record(p->b.f, &e, &r);
	assert_false(r.tombstone);
	record_release(&r);
	/* and A gets them back with the writer's content */
	assert_int_equal(sync_uid(&p->b, &p->a, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->b, &p->a, &e), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->b, &p->a, &f), REPLICA_DONE);
	assert_content(&p->a, "d/e/f", "v2 from the writer");
	assert_same(&p->b, &p->a, &f, "d/e/f");

	/* a file not recorded yet (a create whose handle is still open) holds a delete too */
	fx_write(p->b.f, "g/new", "half written");
	assert_int_equal(fstatat(p->b.f->root_fd, "g/new", &st, 0), 0);
	p->b.busy_ino = st.st_ino;
	rm_tree(&p->a, "g");
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "g"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &g), REPLICA_BUSY);
	assert_content(&p->b, "g/new", "half written");
	/* closed with nothing to replicate (say it was a temporary file): the delete goes on */
	p->b.busy_ino = 0;
	assert_int_equal(sync_uid(&p->a, &p->b, &g), REPLICA_DONE);
	assert_false(exists(&p->b, "g"));
	fx_record(p->b.f, &g, &r);
	assert_true(r.tombstone);
	record_release(&r);
}

/*
 * A preserved file shares no data with a live one: B holds "a" hard-linked as "b", and
 * "d/x" hard-linked as "y"; A deletes "a" and "d". The preserved a and d/x keep what they
 * held when B writes "b" and "y" in place afterwards (§9: nothing lost).
 */
static void test_preserve_hard_link(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid a, d, x;
	char pa[512], pd[512], px[600];
	struct stat st;

	a = mk_file(&p->a, NULL, "a", "a as deleted");
	d = mk_dir(&p->a, NULL, "d");
	x = mk_file(&p->a, "d", "x", "x as deleted");
	assert_int_equal(sync_uid(&p->a, &p->b, &a), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &x), REPLICA_DONE);
	assert_int_equal(linkat(p->b.f->root_fd, "a", p->b.f->root_fd, "b", 0), 0);
	(void)fx_new(p->b.f, NULL, "b");
	assert_int_equal(linkat(p->b.f->root_fd, "d/x", p->b.f->root_fd, "y", 0), 0);
	(void)fx_new(p->b.f, NULL, "y");
	preserved_rel(&p->b, LAYOUT_CONFLICT, &a, pa, sizeof(pa));
	preserved_rel(&p->b, LAYOUT_CONFLICT, &d, pd, sizeof(pd));
	snprintf(px, sizeof(px), "%s/x", pd);

	assert_int_equal(unlinkat(p->a.f->root_fd, "a", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "a"), 0);
	rm_tree(&p->a, "d");
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "d"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &a), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE); /* whole, x inside */
	assert_int_equal(sync_uid(&p->a, &p->b, &x), REPLICA_DONE);
	assert_false(exists(&p->b, "a"));
	assert_false(exists(&p->b, "d"));

	fx_write(p->b.f, "b", "b written in place");
	fx_write(p->b.f, "y", "y written in place");
	assert_content(&p->b, pa, "a as deleted");
	assert_content(&p->b, px, "x as deleted");
	assert_content(&p->b, "b", "b written in place");
	assert_int_equal(fstatat(p->b.f->root_fd, pa, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(count_dir(&p->b, pd), 1); /* no temporary copy left behind */
}

/*
 * New metadata for one name of a hard-linked file is not applied to its other names: B
 * holds "a" hard-linked as "b" (two records); A, where they are two files, changes a's mode
 * and an xattr. B's b keeps its mode and attributes, as on A, and its record still matches
 * its disk (the scan finds nothing).
 */
static void test_meta_hard_link(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid a, b;
	struct hash_result h;
	struct record r;
	char path[600];
	struct stat st;
	int fd;

	a = mk_file(&p->a, NULL, "a", "shared");
	assert_int_equal(sync_uid(&p->a, &p->b, &a), REPLICA_DONE);
	assert_int_equal(linkat(p->b.f->root_fd, "a", p->b.f->root_fd, "b", 0), 0);
	b = fx_new(p->b.f, NULL, "b");
	assert_int_equal(sync_uid(&p->b, &p->a, &b), REPLICA_DONE);

	assert_int_equal(fchmodat(p->a.f->root_fd, "a", 0600, 0), 0);
	fd = openat(p->a.f->root_fd, "a", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fsetxattr(fd, "user.k", "1", 1, 0), 0);
	close(fd);
	fd = fx_opath(p->a.f, "a");
	assert_int_equal(journal_note_change(p->a.f->j, &a, fd, 0), 0);
	close(fd);
	assert_int_equal(sync_uid(&p->a, &p->b, &a), REPLICA_DONE);

	assert_same(&p->a, &p->b, &a, "a");
	/* (b's ctime moved with its link count: its record's stat is not b's now) */
	assert_same(&p->a, &p->b, &b, NULL);
	fx_record(p->b.f, &b, &r);
	assert_int_equal(hash_at(p->b.f->root_fd, "b", &h), 0);
	assert_memory_equal(h.hash, r.hash, HASH_LEN);
	record_release(&r);
	assert_int_equal(fstatat(p->b.f->root_fd, "a", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(fstatat(p->b.f->root_fd, "b", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	snprintf(path, sizeof(path), "%s/b", p->b.f->dir);
	assert_true(getxattr(path, "user.k", NULL, 0) < 0 && errno == ENODATA);
	assert_content(&p->b, "b", "shared");
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_INSTALLING), 0);
	assert_scan_quiet(&p->b);
}

/*
 * Two preserved versions of one UID with the same counter (made by different databases)
 * both stay (§9): B's own f (B,2) loses a conflict to A's (A,2), then A deletes f and B
 * preserves (A,2) too. The second gets "f~1-{UID}-v2" instead of replacing the first.
 */
static void test_preserve_same_counter(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid f, g;
	char first[512], second[512], guid[DFSR_UID_GUID_LEN];
	struct record r;

	f = mk_file(&p->a, NULL, "f", "one");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	g = mk_file(&p->b, NULL, "g", "B's first version"); /* B's counter 1 */
	(void)g;
	modify(&p->b, "f", &f, "B's f, the loser");  /* (B,2) */
	modify(&p->a, "f", &f, "A's f, made later"); /* (A,2) */
	fx_record(p->b.f, &f, &r);
	assert_int_equal(r.gvsn.counter, 2);
	record_release(&r);
	preserved_rel(&p->b, LAYOUT_CONFLICT, &f, first, sizeof(first));
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_content(&p->b, first, "B's f, the loser");
	assert_content(&p->b, "f", "A's f, made later");
	fx_record(p->b.f, &f, &r);
	assert_int_equal(r.gvsn.counter, 2);
	record_release(&r);
	assert_int_equal(sync_uid(&p->b, &p->a, &f), REPLICA_DONE); /* A sees the resolution */

	assert_int_equal(unlinkat(p->a.f->root_fd, "f", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "f"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_false(exists(&p->b, "f"));
	dfsr_uid_guid(&f, guid);
	snprintf(second, sizeof(second), "%s/%s/f~1-{%s}-v2", LAYOUT_PRIVATE, LAYOUT_CONFLICT,
		 guid);
	assert_content(&p->b, first, "B's f, the loser");
	assert_content(&p->b, second, "A's f, made later");
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_CONFLICT), 2);
}

static void test_conflict_quota(void **state)
{
	struct pair *p = *state;
	static const char *const names[] = { "one", "two", "three" };
	char pres[3][512];
	struct dfsr_uid f[3];
	struct mf m;

	p->b.f->folder.conflict_quota = 100;
	for (size_t i = 0; i < 3; i++) {
		f[i] = mk_file(&p->a, NULL, names[i], "forty bytes of data, forty bytes of data");
		assert_int_equal(sync_uid(&p->a, &p->b, &f[i]), REPLICA_DONE);
		preserved_rel(&p->b, LAYOUT_CONFLICT, &f[i], pres[i], sizeof(pres[i]));
	}
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(unlinkat(p->a.f->root_fd, names[i], 0), 0);
		assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), names[i]), 0);
		assert_int_equal(sync_uid(&p->a, &p->b, &f[i]), REPLICA_DONE);
	}
	/* 120 bytes passed 90 % of 100: the oldest went until under 60 % */
	assert_false(exists(&p->b, pres[0]));
	assert_false(exists(&p->b, pres[1]));
	assert_true(exists(&p->b, pres[2]));
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 1);
	assert_string_equal(m.path[0], "three");
	assert_int_equal(events(&p->b, 1303), 1);
}

static void count_changed(void *arg)
{
	(*(int *)arg)++;
}

static void test_changed_hook_called(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid f;
	int n = 0;

	journal_set_changed(p->b.f->j, count_changed, &n);
	f = mk_file(&p->a, NULL, "f", "x");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_int_equal(n, 1);
	(void)mk_file(&p->b, NULL, "g", "local");
	assert_int_equal(n, 2);
	journal_set_changed(p->b.f->j, NULL, NULL);
	(void)mk_file(&p->b, NULL, "h", "local");
	assert_int_equal(n, 2);
}

static void test_update_check(void **state)
{
	char b[] = "user.b", a[] = "user.a", own[] = "user.dfsr.uid", c[] = "user.c", t[] = "t";
	struct replica_xattr x[2] = { { .name = b, .value = NULL, .len = 0 },
				      { .name = a, .value = NULL, .len = 0 } };
	struct replica_update u;

	(void)state;
	replica_update_init(&u);
	u.rec.type = RECORD_FILE;
	assert_int_equal(replica_update_check(&u), 0);
	u.xattrs = x;
	u.nxattrs = 2;
	assert_int_equal(replica_update_check(&u), -EBADMSG); /* not sorted */
	x[1].name = own;
	u.nxattrs = 2;
	assert_int_equal(replica_update_check(&u), -EBADMSG); /* dfsr's own */
	x[1].name = c;
	assert_int_equal(replica_update_check(&u), 0);
	x[0].len = 1; /* a value length without a value */
	assert_int_equal(replica_update_check(&u), -EBADMSG);
	x[0].len = 0;
	u.link_target = t; /* a target on a file */
	assert_int_equal(replica_update_check(&u), -EBADMSG);
	u.rec.type = RECORD_LINK;
	assert_int_equal(replica_update_check(&u), 0);
	u.link_target = NULL;
	assert_int_equal(replica_update_check(&u), -EBADMSG);
	u.xattrs = NULL;
	u.nxattrs = 0;
	replica_update_release(&u);
}

static void test_full_sync(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid a, b, f1, f3, mid;
	char full[512];
	int fd;

	a = mk_dir(&p->a, NULL, "a");
	b = mk_dir(&p->a, "a", "b");
	f1 = mk_file(&p->a, NULL, "top.txt", "top");
	mid = mk_file(&p->a, "a", "mid.txt", "middle");
	f3 = mk_file(&p->a, "a/b", "deep.txt", "deep down");
	(void)mk_file(&p->a, "a/b", "empty", "");
	snprintf(full, sizeof(full), "%s/a/mid.txt", p->a.f->dir);
	assert_int_equal(setxattr(full, "user.k", "v", 1, 0), 0);
	fd = fx_opath(p->a.f, "a/mid.txt");
	assert_int_equal(journal_note_change(p->a.f->j, &mid, fd, 0), 0);
	close(fd);
	assert_int_equal(symlinkat("b/deep.txt", p->a.f->root_fd, "a/ln"), 0);
	(void)fx_new(p->a.f, "a", "ln");
	sync_all(&p->a, &p->b);
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->b);
	assert_content(&p->b, "a/b/deep.txt", "deep down");

	/* a second round: rename a directory, change, delete, create */
	{
		struct journal_rename rn = { .old_parent = &a,
					     .old_name = "b",
					     .new_parent = root(&p->a),
					     .new_name = "c",
					     .other_fd = -1 };
		struct dfsr_uid out;

		assert_int_equal(renameat(p->a.f->root_fd, "a/b", p->a.f->root_fd, "c"), 0);
		rn.fd = fx_opath(p->a.f, "c");
		assert_int_equal(journal_note_rename(p->a.f->j, &rn, &out, NULL), 0);
		close(rn.fd);
		assert_memory_equal(out.b, b.b, DFSR_UID_LEN);
	}
	modify(&p->a, "c/deep.txt", &f3, "deeper now");
	assert_int_equal(unlinkat(p->a.f->root_fd, "top.txt", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "top.txt"), 0);
	(void)mk_file(&p->a, "c", "new.txt", "new");
	/* moved and changed at once: fetched, renamed into the new place, old name gone */
	{
		struct journal_rename rn = { .old_parent = &a,
					     .old_name = "mid.txt",
					     .new_parent = &b,
					     .new_name = "mid2.txt",
					     .other_fd = -1 };
		struct dfsr_uid out;

		assert_int_equal(
			renameat(p->a.f->root_fd, "a/mid.txt", p->a.f->root_fd, "c/mid2.txt"), 0);
		rn.fd = fx_opath(p->a.f, "c/mid2.txt");
		assert_int_equal(journal_note_rename(p->a.f->j, &rn, &out, NULL), 0);
		close(rn.fd);
		modify(&p->a, "c/mid2.txt", &mid, "middle, changed");
	}
	sync_all(&p->a, &p->b);
	assert_false(exists(&p->b, "a/mid.txt"));
	assert_content(&p->b, "c/mid2.txt", "middle, changed");
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->b);
	assert_false(exists(&p->b, "a/b"));
	assert_false(exists(&p->b, "top.txt"));
	assert_content(&p->b, "c/deep.txt", "deeper now");
	assert_content(&p->b, "c/new.txt", "new");
	(void)f1;

	/* and back: B's changes reach A; nothing is sent twice */
	(void)mk_file(&p->b, "a", "fromb.txt", "from B");
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->a);
	assert_content(&p->a, "a/fromb.txt", "from B");
}

static void test_dir_merge(void **state)
{
	struct pair *p = *state;

	(void)mk_dir(&p->a, NULL, "m");
	(void)mk_file(&p->a, "m", "a.txt", "made on A");
	(void)mk_dir(&p->b, NULL, "m"); /* created later: loses the name (§4) */
	(void)mk_file(&p->b, "m", "b.txt", "made on B");
	sync_all(&p->b, &p->a); /* A first sees B's directory lose */
	sync_all(&p->a, &p->b); /* B merges its directory into A's */
	sync_all(&p->b, &p->a);
	assert_content(&p->a, "m/a.txt", "made on A");
	assert_content(&p->a, "m/b.txt", "made on B");
	assert_content(&p->b, "m/a.txt", "made on A");
	assert_content(&p->b, "m/b.txt", "made on B");
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_CONFLICT), 0);
}

static void test_meta_conflict(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid f;
	char pres[512];
	struct stat st;
	int fd;

	f = mk_file(&p->a, NULL, "f", "same data");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_int_equal(fchmodat(p->a.f->root_fd, "f", 0600, 0), 0);
	fd = fx_opath(p->a.f, "f");
	assert_int_equal(journal_note_change(p->a.f->j, &f, fd, 0), 0);
	close(fd);
	assert_int_equal(fchmodat(p->b.f->root_fd, "f", 0640, 0), 0);
	fd = fx_opath(p->b.f, "f");
	assert_int_equal(journal_note_change(p->b.f->j, &f, fd, 0), 0);
	close(fd);
	preserved_rel(&p->a, LAYOUT_CONFLICT, &f, pres, sizeof(pres));

	/* B's change is later: A keeps a copy of its own version, no data moves */
	assert_int_equal(sync_uid(&p->b, &p->a, &f), REPLICA_DONE);
	assert_int_equal(fstatat(p->a.f->root_fd, "f", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_content(&p->a, pres, "same data");
	assert_int_equal(fstatat(p->a.f->root_fd, pres, &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_same(&p->b, &p->a, &f, "f");
	assert_same(&p->a, &p->b, &f, "f");
}

static void test_link_change(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid l, out;
	char target[64];
	ssize_t n;

	assert_int_equal(symlinkat("t1", p->a.f->root_fd, "l"), 0);
	l = fx_new(p->a.f, NULL, "l");
	assert_int_equal(sync_uid(&p->a, &p->b, &l), REPLICA_DONE);
	/* the save pattern: a new link renamed over the old keeps its UID */
	assert_int_equal(symlinkat("target-two", p->a.f->root_fd, "l.tmp"), 0);
	assert_int_equal(renameat(p->a.f->root_fd, "l.tmp", p->a.f->root_fd, "l"), 0);
	{
		struct journal_rename rn = { .old_parent = root(&p->a),
					     .old_name = "l.tmp",
					     .new_parent = root(&p->a),
					     .new_name = "l",
					     .other_fd = -1 };

		rn.fd = fx_opath(p->a.f, "l");
		assert_int_equal(journal_note_rename(p->a.f->j, &rn, &out, NULL), 0);
		close(rn.fd);
	}
	assert_memory_equal(out.b, l.b, DFSR_UID_LEN);
	assert_int_equal(sync_uid(&p->a, &p->b, &l), REPLICA_DONE);
	n = readlinkat(p->b.f->root_fd, "l", target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "target-two");
	assert_same(&p->a, &p->b, &l, "l");
	assert_scan_quiet(&p->b);
}

/* The directory's tombstone arrives before its children's: what the deleter saw is
 * deleted with it, even a file made by another member (its vector covers the children). */
static void test_delete_dir_parent_first(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid d, x;
	char pres[512];
	struct mf m;

	d = mk_dir(&p->a, NULL, "D");
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	x = mk_file(&p->b, "D", "x", "made on B");
	assert_int_equal(sync_uid(&p->b, &p->a, &x), REPLICA_DONE);
	assert_int_equal(unlinkat(p->a.f->root_fd, "D/x", 0), 0);
	assert_int_equal(unlinkat(p->a.f->root_fd, "D", AT_REMOVEDIR), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "D"), 0);
	preserved_rel(&p->b, LAYOUT_CONFLICT, &d, pres, sizeof(pres));

	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_false(exists(&p->b, "D"));
	strcat(pres, "/x");
	assert_content(&p->b, pres, "made on B");
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.type[0], MANIFEST_TYPE_DELETED);
	assert_int_equal(sync_uid(&p->a, &p->b, &x), REPLICA_DONE);
	sync_all(&p->a, &p->b);
	sync_all(&p->b, &p->a);
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->b);
}

/* ---- order independence (§13): random changes on three members, synced in random order */

struct trio {
	struct side s[3];
};

static int setup3(void **state)
{
	struct trio *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	for (int i = 0; i < 3; i++)
		if (side_open(&t->s[i], JOURNAL_STATE_NORMAL) < 0)
			return -1;
	*state = t;
	return 0;
}

static int teardown3(void **state)
{
	struct trio *t = *state;

	for (int i = 0; i < 3; i++)
		side_close(&t->s[i]);
	free(t);
	return 0;
}

static uint32_t rnd(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 16) & 0x7fff;
}

/* A random live record of @s (type @want, or any if 0); false if none. @rel gets its path. */
static bool pick(struct side *s, uint32_t *seed, char want, struct record *out, char *rel,
		 size_t len)
{
	static struct rec_list l;
	size_t live = 0, k;
	bool found = false;

	all_records(s, &l);
	for (size_t i = 0; i < l.n; i++)
		if (!l.v[i].tombstone && (!want || l.v[i].type == want))
			live++;
	if (live) {
		k = rnd(seed) % live;
		for (size_t i = 0; i < l.n && !found; i++) {
			if (l.v[i].tombstone || (want && l.v[i].type != want) || k--)
				continue;
			struct dfsr_buf p;

			dfsr_buf_init(&p);
			assert_int_equal(journal_path(s->f->j, &l.v[i].uid, &p), 0);
			snprintf(rel, len, "%s", p.p);
			dfsr_buf_release(&p);
			assert_int_equal(record_copy(out, &l.v[i]), 0);
			found = true;
		}
	}
	release_records(&l);
	return found;
}

/* A random directory of @s (the root included): its UID and path ("" for the root). */
static void pick_dir(struct side *s, uint32_t *seed, struct dfsr_uid *uid, char *rel, size_t len)
{
	struct record r;

	record_init(&r);
	if (rnd(seed) % 3 == 0 || !pick(s, seed, RECORD_DIR, &r, rel, len)) {
		*uid = *root(s);
		rel[0] = '\0';
		return;
	}
	*uid = r.uid;
	record_release(&r);
}

static void join(char *out, size_t len, const char *dir, const char *name)
{
	snprintf(out, len, "%s%s%s", dir, *dir ? "/" : "", name);
}

static int rm_rf_at(int dfd, const char *name)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
		struct dirent *de;

		assert_non_null(d);
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				rm_rf_at(dirfd(d), de->d_name);
		closedir(d);
		return unlinkat(dfd, name, AT_REMOVEDIR);
	}
	return unlinkat(dfd, name, 0);
}

static bool tracing(void)
{
	return getenv("DFSR_TRACE") != NULL;
}

static void random_change(struct side *s, uint32_t *seed)
{
	char dir[512], rel[1024], name[16], data[64];
	struct dfsr_uid parent;
	struct record r;
	int op = (int)(rnd(seed) % 6);

	record_init(&r);
	snprintf(name, sizeof(name), "%c%u", op == 1 ? 'd' : 'n', (unsigned)(rnd(seed) % 3));
	if (tracing())
		print_message("side %02x op %d name %s\n", journal_db_id(s->f->j)->b[0], op, name);
	snprintf(data, sizeof(data), "data %u", (unsigned)rnd(seed));
	switch (op) {
	case 0: /* create a file */
	case 1: /* create a directory */
		pick_dir(s, seed, &parent, dir, sizeof(dir));
		join(rel, sizeof(rel), dir, name);
		if (exists(s, rel))
			return;
		if (op == 0)
			(void)mk_file(s, *dir ? dir : NULL, name, data);
		else
			(void)mk_dir(s, *dir ? dir : NULL, name);
		return;
	case 2: /* modify */
	case 3:
		if (pick(s, seed, RECORD_FILE, &r, rel, sizeof(rel)))
			modify(s, rel, &r.uid, data);
		break;
	case 4: { /* rename */
		char to[1024];
		struct journal_rename rn = { .other_fd = -1 };
		struct dfsr_uid out;

		if (!pick(s, seed, 0, &r, rel, sizeof(rel)))
			break;
		pick_dir(s, seed, &parent, dir, sizeof(dir));
		/* Directories move anywhere but below themselves: two concurrent moves of
		 * directories into each other make a cycle (§4.1); half of them to the root */
		if (r.type == RECORD_DIR && rnd(seed) % 2) {
			parent = *root(s);
			dir[0] = '\0';
		}
		join(to, sizeof(to), dir, name);
		/* not below itself, not onto a taken name */
		if (exists(s, to) || (strncmp(dir, rel, strlen(rel)) == 0 &&
				      (dir[strlen(rel)] == '\0' || dir[strlen(rel)] == '/')))
			break;
		assert_int_equal(renameat(s->f->root_fd, rel, s->f->root_fd, to), 0);
		rn.old_parent = &r.parent;
		rn.old_name = r.name;
		rn.new_parent = &parent;
		rn.new_name = name;
		rn.fd = fx_opath(s->f, to);
		assert_int_equal(journal_note_rename(s->f->j, &rn, &out, NULL), 0);
		close(rn.fd);
		break;
	}
	case 5: /* delete */
		if (!pick(s, seed, 0, &r, rel, sizeof(rel)))
			break;
		assert_int_equal(rm_rf_at(s->f->root_fd, rel), 0);
		assert_int_equal(journal_note_remove(s->f->j, &r.parent, r.name), 0);
		break;
	}
	record_release(&r);
}

static void test_order_independence(void **state)
{
	struct trio *t = *state;

	for (uint32_t round = 0; round < 10; round++) {
		uint32_t seed = 0x5eed0000u + round * 7919u;

		/* independent changes on two or three members */
		for (int i = 0; i < 15; i++)
			random_change(&t->s[rnd(&seed) % 3], &seed);
		/* partial syncs in a random order */
		for (int i = 0; i < 4; i++) {
			uint32_t a = rnd(&seed) % 3, b = (a + 1 + rnd(&seed) % 2) % 3;

			if (tracing())
				print_message("sync %u -> %u\n", a, b);
			(void)sync_some(&t->s[a], &t->s[b]);
		}
		/* then everyone with everyone until quiet: an update that waits for a version
		 * its maker had seen (§4.1, §4.2) is settled once that version arrives */
		for (int k = 0, waiting = 1; waiting || k < 2; k++) {
			assert_true(k < 8);
			waiting = 0;
			for (uint32_t a = 0; a < 3; a++)
				for (uint32_t b = 0; b < 3; b++)
					if (a != b)
						waiting += (int)sync_some(&t->s[a], &t->s[b]);
		}
		assert_converged(&t->s[0], &t->s[1]);
		assert_converged(&t->s[0], &t->s[2]);
		assert_converged(&t->s[1], &t->s[2]);
		for (int i = 0; i < 3; i++)
			assert_scan_quiet(&t->s[i]);
	}
}

/* A directory renamed onto the name of a directory that loses §4 to it: merged in place. */
static void test_dir_merge_moved(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid k, y;
	struct record r;

	k = mk_dir(&p->a, NULL, "k"); /* made first */
	sync_all(&p->a, &p->b);
	y = mk_dir(&p->b, NULL, "m");
	(void)mk_file(&p->b, "m", "b.txt", "made on B");
	(void)mk_file(&p->a, "k", "a.txt", "made on A");
	{
		struct journal_rename rn = { .old_parent = root(&p->a),
					     .old_name = "k",
					     .new_parent = root(&p->a),
					     .new_name = "m",
					     .other_fd = -1 };
		struct dfsr_uid out;

		assert_int_equal(renameat(p->a.f->root_fd, "k", p->a.f->root_fd, "m"), 0);
		rn.fd = fx_opath(p->a.f, "m");
		assert_int_equal(journal_note_rename(p->a.f->j, &rn, &out, NULL), 0);
		close(rn.fd);
	}
	sync_all(&p->a, &p->b);
	assert_false(exists(&p->b, "k"));
	assert_content(&p->b, "m/a.txt", "made on A");
	assert_content(&p->b, "m/b.txt", "made on B");
	fx_record(p->b.f, &y, &r);
	assert_true(r.tombstone);
	record_release(&r);
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	assert_content(&p->a, "m/b.txt", "made on B");
	assert_converged(&p->a, &p->b);
	assert_same(&p->a, &p->b, &k, "m");
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
}

/* §7 + §4 (as tests/integration/repl_conflict.sh): a directory deleted on A while B edits a
 * file in it, and its name taken on A by another directory renamed there. */
static void test_deleted_and_replaced_dir(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid pp, old, other, e;

	pp = mk_dir(&p->a, NULL, "P");
	old = mk_dir(&p->a, "P", "old");
	e = mk_file(&p->a, "P/old", "edited.txt", "in old");
	(void)mk_file(&p->a, "P/old", "dropped.txt", "dropped with old");
	other = mk_dir(&p->a, "P", "other");
	(void)mk_file(&p->a, "P/other", "moved.txt", "in other");
	sync_all(&p->a, &p->b);
	assert_int_equal(rm_rf_at(p->a.f->root_fd, "P/old"), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, &pp, "old"), 0);
	{
		struct journal_rename rn = { .old_parent = &pp,
					     .old_name = "other",
					     .new_parent = &pp,
					     .new_name = "old",
					     .other_fd = -1 };
		struct dfsr_uid out;

		assert_int_equal(renameat(p->a.f->root_fd, "P/other", p->a.f->root_fd, "P/old"), 0);
		rn.fd = fx_opath(p->a.f, "P/old");
		assert_int_equal(journal_note_rename(p->a.f->j, &rn, &out, NULL), 0);
		close(rn.fd);
	}
	(void)mk_file(&p->a, "P/old", "new.txt", "new in the renamed directory");
	modify(&p->b, "P/old/edited.txt", &e, "edited on bravo");

	sync_all(&p->a, &p->b);
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	for (int i = 0; i < 2; i++) {
		struct side *s = i ? &p->b : &p->a;

		assert_content(s, "P/old/edited.txt", "edited on bravo");
		assert_content(s, "P/old/moved.txt", "in other");
		assert_content(s, "P/old/new.txt", "new in the renamed directory");
		assert_false(exists(s, "P/other"));
		assert_false(exists(s, "P/old/dropped.txt"));
	}
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
	(void)old;
	(void)other;
}

/*
 * §4.2 for an object new to the member: A deletes a file and makes a new one under its name;
 * B, still holding the deleted file, receives the new file before the delete. The new file's
 * maker had seen the holder, so the update waits for the delete instead of losing the name
 * to it (formerly the new file became a tombstone everywhere: it.repl_conflict, flaky).
 */

static size_t conflict_entries(struct side *s);

static void test_new_file_under_deleted_name(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid d, n;
	struct record r;
	struct mf m;

	d = mk_file(&p->a, NULL, "f.txt", "the old file");
	sync_all(&p->a, &p->b);
	assert_int_equal(unlinkat(p->a.f->root_fd, "f.txt", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "f.txt"), 0);
	n = mk_file(&p->a, NULL, "f.txt", "a new file under the old name");

	assert_int_equal(sync_uid(&p->a, &p->b, &n), REPLICA_WAIT);
	assert_content(&p->b, "f.txt", "the old file");
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_false(exists(&p->b, "f.txt"));
	assert_int_equal(sync_uid(&p->a, &p->b, &n), REPLICA_DONE);
	assert_content(&p->b, "f.txt", "a new file under the old name");
	fx_record(p->b.f, &n, &r);
	assert_false(r.tombstone);
	record_release(&r);
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.type[0], MANIFEST_TYPE_DELETED);
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	assert_content(&p->a, "f.txt", "a new file under the old name");
	assert_int_equal(conflict_entries(&p->a), 0);
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
}

/*
 * §7.1: A moves directory D (holding f) out of P into Q, then deletes P. B meets P's
 * tombstone before D's move (sessions send current records, not changes in order; D's move
 * may wait). P's deleter had seen D there and holds a newer version of it, so the tombstone
 * waits for it (formerly D and f were buried with P at versions live on A, and f was never
 * sent again: it.repl_random diverged about once in 40 runs).
 */
static void mv(struct side *s, const struct dfsr_uid *from, const char *old_name,
	       const char *from_rel, const struct dfsr_uid *to, const char *new_name,
	       const char *to_rel);

static void test_moved_out_before_parent_deleted(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid pd, q, d;

	pd = mk_dir(&p->a, NULL, "P");
	q = mk_dir(&p->a, NULL, "Q");
	d = mk_dir(&p->a, "P", "D");
	(void)mk_file(&p->a, "P/D", "f", "in D");
	sync_all(&p->a, &p->b);
	mv(&p->a, &pd, "D", "P/D", &q, "D", "Q/D");
	assert_int_equal(unlinkat(p->a.f->root_fd, "P", AT_REMOVEDIR), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "P"), 0);

	assert_int_equal(sync_uid(&p->a, &p->b, &pd), REPLICA_WAIT);
	assert_content(&p->b, "P/D/f", "in D");
	assert_int_equal(sync_uid(&p->a, &p->b, &d), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, &p->b, &pd), REPLICA_DONE);
	assert_false(exists(&p->b, "P"));
	sync_all(&p->a, &p->b);
	sync_all(&p->b, &p->a);
	assert_content(&p->a, "Q/D/f", "in D");
	assert_content(&p->b, "Q/D/f", "in D");
	assert_int_equal(conflict_entries(&p->a), 0);
	assert_int_equal(conflict_entries(&p->b), 1); /* P, deleted empty */
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
}

/* Rename @from_rel (in @from, named @old_name) to @to_rel (in @to, named @new_name) on @s. */
static void mv(struct side *s, const struct dfsr_uid *from, const char *old_name,
	       const char *from_rel, const struct dfsr_uid *to, const char *new_name,
	       const char *to_rel)
{
	struct journal_rename rn = { .old_parent = from,
				     .old_name = old_name,
				     .new_parent = to,
				     .new_name = new_name,
				     .other_fd = -1 };
	struct dfsr_uid out;

	assert_int_equal(renameat(s->f->root_fd, from_rel, s->f->root_fd, to_rel), 0);
	rn.fd = fx_opath(s->f, to_rel);
	assert_int_equal(journal_note_rename(s->f->j, &rn, &out, NULL), 0);
	close(rn.fd);
}

static size_t conflict_entries(struct side *s)
{
	struct mf m;

	manifest(s, MANIFEST_CONFLICT, &m);
	return m.n;
}

/*
 * §4.2: A moves directory x into y, then y onto the name x. B meets y's move first (parents
 * first): the name is held by x, whose version y's vector contains, so y waits for x's move
 * instead of settling a name conflict that exists on B only (formerly: y merged into x as
 * new versions, then x's move under the dead y made x its own parent; A resurrected y, B
 * deleted it again, forever).
 */
static void test_stale_name_holder(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid x, y;

	x = mk_dir(&p->a, NULL, "x"); /* made first: it would win §4 */
	y = mk_dir(&p->a, NULL, "y");
	(void)mk_file(&p->a, "y", "in-y.txt", "in y");
	(void)mk_file(&p->a, "x", "in-x.txt", "in x");
	sync_all(&p->a, &p->b);
	mv(&p->a, root(&p->a), "x", "x", &y, "x", "y/x");
	mv(&p->a, root(&p->a), "y", "y", root(&p->a), "x", "x");
	sync_all(&p->a, &p->b);
	assert_content(&p->b, "x/in-y.txt", "in y");
	assert_content(&p->b, "x/x/in-x.txt", "in x");
	assert_false(exists(&p->b, "y"));
	assert_same(&p->a, &p->b, &y, "x");
	assert_same(&p->a, &p->b, &x, "x/x");
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	assert_int_equal(conflict_entries(&p->a), 0);
	assert_int_equal(conflict_entries(&p->b), 0);
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
}

/*
 * §4.2, names rotated on A (x and y swap through a third name): each update waits for the
 * other's holder; the second sees the cycle of waits, moves its holder aside quietly and
 * takes the name, and the first follows (formerly both waited forever).
 */
static void test_name_rotation(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid x, y;

	x = mk_dir(&p->a, NULL, "x");
	y = mk_dir(&p->a, NULL, "y");
	(void)mk_file(&p->a, "x", "in-x.txt", "in x");
	(void)mk_file(&p->a, "y", "in-y.txt", "in y");
	sync_all(&p->a, &p->b);
	mv(&p->a, root(&p->a), "y", "y", root(&p->a), "t", "t");
	mv(&p->a, root(&p->a), "x", "x", root(&p->a), "y", "y");
	mv(&p->a, root(&p->a), "t", "t", root(&p->a), "x", "x");
	sync_all(&p->a, &p->b);
	assert_content(&p->b, "y/in-x.txt", "in x");
	assert_content(&p->b, "x/in-y.txt", "in y");
	assert_int_equal(count_dir(&p->b, "."), 3); /* x, y, DfsrPrivate */
	assert_same(&p->a, &p->b, &x, "y");
	assert_same(&p->a, &p->b, &y, "x");
	sync_all(&p->b, &p->a);
	assert_int_equal(conflict_entries(&p->a), 0);
	assert_int_equal(conflict_entries(&p->b), 0);
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
}

/*
 * §7.2 where the dead parent's name is held by the object moving into it: B deleted P
 * ("x"); A moved P to "p", made file F at "x", then moved F into P. B gets F's versions
 * alone: F's move needs P back at "x", where F itself is; F steps aside, P comes back, F
 * goes in (formerly F lost the name to P: preserved and deleted as a new version).
 */
static void test_dead_parent_held_by_self(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid pp, f;

	pp = mk_dir(&p->a, NULL, "x");
	sync_all(&p->a, &p->b);
	assert_int_equal(rm_rf_at(p->b.f->root_fd, "x"), 0);
	assert_int_equal(journal_note_remove(p->b.f->j, root(&p->b), "x"), 0);
	mv(&p->a, root(&p->a), "x", "x", root(&p->a), "p", "p");
	f = mk_file(&p->a, NULL, "x", "F's data");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_content(&p->b, "x", "F's data");
	mv(&p->a, root(&p->a), "x", "x", &pp, "F", "p/F");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_content(&p->b, "x/F", "F's data");
	assert_int_equal(conflict_entries(&p->b), 0);
	sync_all(&p->a, &p->b);
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	assert_converged(&p->a, &p->b);
	assert_int_equal(conflict_entries(&p->a), 0);
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
}

/*
 * §4.1: A moves X into Y while B moves Y into X. Each would close a cycle with the other's
 * move: both move the directory of the later version (Y's, made last) to the root as
 * "Y-{<UID>}", the same new placement on both sides, which §3 settles. Nothing is lost.
 */
static void test_dir_move_cycle(void **state)
{
	struct pair *p = *state;
	struct dfsr_uid x, y;
	char yname[RECORD_NAME_MAX + 1], rel[600], guid[DFSR_UID_GUID_LEN];

	x = mk_dir(&p->a, NULL, "X");
	y = mk_dir(&p->a, NULL, "Y");
	(void)mk_file(&p->a, "X", "x.txt", "in X");
	(void)mk_file(&p->a, "Y", "y.txt", "in Y");
	sync_all(&p->a, &p->b);
	mv(&p->a, root(&p->a), "X", "X", &y, "X", "Y/X");
	mv(&p->b, root(&p->b), "Y", "Y", &x, "Y", "X/Y"); /* later */
	dfsr_uid_guid(&y, guid);
	snprintf(yname, sizeof(yname), "Y-{%s}", guid);
	sync_all(&p->a, &p->b);
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	for (int i = 0; i < 2; i++) {
		struct side *s = i ? &p->b : &p->a;

		snprintf(rel, sizeof(rel), "%s/y.txt", yname);
		assert_content(s, rel, "in Y");
		snprintf(rel, sizeof(rel), "%s/X/x.txt", yname);
		assert_content(s, rel, "in X");
		assert_false(exists(s, "X"));
		assert_false(exists(s, "Y"));
	}
	assert_int_equal(conflict_entries(&p->a), 0);
	assert_int_equal(conflict_entries(&p->b), 0);
	assert_int_equal(events(&p->b, 1305), 1); /* B met the loop; A got B's placement */
	assert_int_equal(events(&p->a, 1305), 0);
	assert_converged(&p->a, &p->b);
	snprintf(rel, sizeof(rel), "%s/X", yname);
	assert_same(&p->a, &p->b, &x, rel);
	assert_same(&p->a, &p->b, &y, yname);
	assert_scan_quiet(&p->a);
	assert_scan_quiet(&p->b);
}

#define PRE_DIR  LAYOUT_PRIVATE "/" LAYOUT_PREEXISTING "/"
#define CONF_DIR LAYOUT_PRIVATE "/" LAYOUT_CONFLICT "/"

/* An entry for @preserved (kind @kind) written straight into B's manifest. */
static void add_entry(struct side *s, enum manifest_kind kind, const char *path,
		      const char *preserved)
{
	struct manifest_entry e = { .time_ns = 1000000000,
				    .type = kind == MANIFEST_CONFLICT ? MANIFEST_TYPE_DELETED
								      : MANIFEST_TYPE_PREEXISTING,
				    .path = path,
				    .preserved = preserved,
				    .uid = *root(s),
				    .gvsn_db = *root(s),
				    .gvsn_counter = 1 };
	int pfd = openat(s->f->root_fd, LAYOUT_PRIVATE, O_PATH | O_DIRECTORY | O_CLOEXEC);

	assert_true(pfd >= 0);
	assert_int_equal(manifest_append(pfd, kind, &e), 0);
	close(pfd);
}

/*
 * After `dfsr restore`: replica_unpreserve() removes the preserved object (a directory
 * whole) and its manifest entry; untrusted names ('/', "..", empty, not listed, listed in
 * the other manifest) are refused and nothing goes.
 */
static void test_unpreserve(void **state)
{
	static const char *const bad[] = { "", ".", "..", "a/b", ("../" LAYOUT_CONFLICT), "/etc" };
	struct pair *p = *state;
	char pres[512];
	const char *name;
	struct dfsr_uid f;
	struct mf m;

	/* a file deleted on A is preserved on B */
	f = mk_file(&p->a, NULL, "g", "keep me");
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	preserved_rel(&p->b, LAYOUT_CONFLICT, &f, pres, sizeof(pres));
	assert_int_equal(unlinkat(p->a.f->root_fd, "g", 0), 0);
	assert_int_equal(journal_note_remove(p->a.f->j, root(&p->a), "g"), 0);
	assert_int_equal(sync_uid(&p->a, &p->b, &f), REPLICA_DONE);
	assert_content(&p->b, pres, "keep me");
	name = pres + strlen(CONF_DIR);

	/* a directory tree in PreExisting with its entry, and a stray file without one */
	fx_mkdir(p->b.f, PRE_DIR "t-{X}-v1");
	fx_mkdir(p->b.f, PRE_DIR "t-{X}-v1/sub");
	fx_write(p->b.f, PRE_DIR "t-{X}-v1/sub/x", "x");
	add_entry(&p->b, MANIFEST_PREEXISTING, "t", "t-{X}-v1");
	fx_write(p->b.f, CONF_DIR "stray", "not listed");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_CONFLICT, bad[i]), -EINVAL);
	assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_CONFLICT, NULL), -EINVAL);
	assert_int_equal(replica_unpreserve(p->b.r, (enum manifest_kind)7, name), -EINVAL);
	assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_CONFLICT, "stray"), -ENOENT);
	assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_PREEXISTING, name), -ENOENT);
	assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_CONFLICT, "t-{X}-v1"), -ENOENT);
	assert_true(exists(&p->b, pres));
	assert_true(exists(&p->b, CONF_DIR "stray"));
	assert_true(exists(&p->b, PRE_DIR "t-{X}-v1/sub/x"));
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 1);
	manifest(&p->b, MANIFEST_PREEXISTING, &m);
	assert_int_equal(m.n, 1);
	assert_int_equal(events(&p->b, 1304), 0);

	/* the file: object and entry go, nothing else */
	assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_CONFLICT, name), 0);
	assert_false(exists(&p->b, pres));
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 0);
	assert_true(exists(&p->b, CONF_DIR "stray"));
	assert_true(exists(&p->b, PRE_DIR "t-{X}-v1/sub/x"));
	assert_int_equal(events(&p->b, 1304), 1);
	assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_CONFLICT, name), -ENOENT);

	/* the directory, whole */
	assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_PREEXISTING, "t-{X}-v1"), 0);
	assert_false(exists(&p->b, PRE_DIR "t-{X}-v1"));
	manifest(&p->b, MANIFEST_PREEXISTING, &m);
	assert_int_equal(m.n, 0);
	assert_int_equal(events(&p->b, 1304), 2);

	/* an entry whose object is already gone: the entry goes */
	add_entry(&p->b, MANIFEST_CONFLICT, "h", "h-{X}-v2");
	assert_int_equal(replica_unpreserve(p->b.r, MANIFEST_CONFLICT, "h-{X}-v2"), 0);
	manifest(&p->b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 0);

	/* the journal saw nothing of it: DfsrPrivate is not replicated */
	assert_scan_quiet(&p->b);
}

/* ---- read-only members (docs/conflicts.md §11) ------------------------------------------ */

static bool hello_has(struct side *s, const struct dfsr_uid *uid)
{
	struct version_vector kv;
	struct record r;
	bool has;

	version_vector_init(&kv);
	fx_record(s->f, uid, &r);
	assert_int_equal(replica_hello_knowledge(s->r, &kv), 0);
	has = version_vector_contains(&kv, &r.gvsn);
	version_vector_release(&kv);
	record_release(&r);
	return has;
}

/*
 * B is read-only: what changes in its local path behind dfsr (a file modified, one added,
 * one deleted, a directory tree deleted, a directory's and a file's mode changed) is
 * reverted by its scan (no local version, the changed and added objects preserved, the
 * mode changes left in place), and the group's versions come back from A although B's
 * knowledge already holds them.
 */
static void test_read_only_revert(void **state)
{
	struct pair *p = *state;
	struct side *a = &p->a, *b = &p->b;
	struct dfsr_uid d, f, del, gone, g, mo;
	struct scan_result res;
	struct mf m;
	uint64_t seq;
	char rel[600];
	struct stat st;

	d = mk_dir(a, NULL, "d");
	f = mk_file(a, "d", "f", "group");
	del = mk_file(a, NULL, "del", "deleted behind dfsr");
	gone = mk_dir(a, NULL, "gone");
	g = mk_file(a, "gone", "g", "in a deleted directory");
	mo = mk_file(a, NULL, "mode", "only its mode changes");
	sync_all(a, b);
	assert_converged(a, b);
	b->f->folder.read_only = true;

	fx_write(b->f, "d/f", "local edit");
	fx_write(b->f, "new.txt", "added behind dfsr");
	assert_int_equal(unlinkat(b->f->root_fd, "del", 0), 0);
	rm_tree(b, "gone");
	assert_int_equal(fchmodat(b->f->root_fd, "d", 0700, 0), 0);
	assert_int_equal(fchmodat(b->f->root_fd, "mode", 0600, 0), 0);
	seq = fx_next_seq(b->f);
	assert_int_equal(scan_folder(b->f->j, &res), 0);
	assert_int_equal(res.created, 0);
	assert_int_equal(res.changed, 0);
	assert_int_equal(res.removed, 0);
	/* f, new.txt, del, gone with g, d's and mode's modes */
	assert_int_equal(res.reverted, 7);
	assert_int_equal(fx_next_seq(b->f), seq); /* nothing journaled: nothing to send */
	assert_false(exists(b, "d/f"));
	assert_false(exists(b, "new.txt"));
	assert_true(exists(b, "mode")); /* metadata alone: reverted in place, no download */
	assert_int_equal(events(b, 1206), 6);
	manifest(b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 2);
	for (size_t i = 0; i < m.n; i++) {
		bool mod = strcmp(m.path[i], "d/f") == 0;

		assert_true(mod || strcmp(m.path[i], "new.txt") == 0);
		assert_int_equal(m.type[i], mod ? MANIFEST_TYPE_CONFLICT : MANIFEST_TYPE_DELETED);
		snprintf(rel, sizeof(rel), "%s/%s/%s", LAYOUT_PRIVATE, LAYOUT_CONFLICT,
			 m.preserved[i]);
		assert_content(b, rel, mod ? "local edit" : "added behind dfsr");
	}
	/* the records keep the group's versions; the Hello asks for them again */
	assert_same(a, b, &f, NULL);
	assert_same(a, b, &gone, NULL);
	assert_false(hello_has(b, &f));
	assert_false(hello_has(b, &del));
	assert_false(hello_has(b, &g));
	assert_false(hello_has(b, &d));
	assert_false(hello_has(b, &mo));
	assert_int_equal(journal__revert_pending(b->f->j), 6);

	sync_all(a, b);
	assert_converged(a, b);
	assert_content(b, "d/f", "group");
	assert_content(b, "del", "deleted behind dfsr");
	assert_content(b, "gone/g", "in a deleted directory");
	assert_int_equal(fstatat(b->f->root_fd, "d", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(fstatat(b->f->root_fd, "mode", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_content(b, "mode", "only its mode changes");
	assert_false(exists(b, "new.txt"));
	assert_int_equal(journal__revert_pending(b->f->j), 0);
	assert_true(hello_has(b, &f));
	assert_true(hello_has(b, &d));
	assert_scan_quiet(b);

	/* the same version changed again: preserved under another name, reverted again */
	fx_write(b->f, "d/f", "second edit");
	assert_int_equal(scan_folder(b->f->j, &res), 0);
	assert_int_equal(res.reverted, 1);
	manifest(b, MANIFEST_CONFLICT, &m);
	assert_int_equal(m.n, 3);
	assert_string_equal(m.path[2], "d/f");
	assert_string_not_equal(m.preserved[2], m.preserved[0]);
	assert_string_not_equal(m.preserved[2], m.preserved[1]);
	snprintf(rel, sizeof(rel), "%s/%s/%s", LAYOUT_PRIVATE, LAYOUT_CONFLICT, m.preserved[2]);
	assert_content(b, rel, "second edit");
	sync_all(a, b);
	assert_converged(a, b);
	assert_content(b, "d/f", "group");
	(void)d;
}

/*
 * Installs from several threads at once are decided in batches (install_batched() in
 * core/replica.c): new files of one directory, files of the same names in two directories,
 * and a new version of a file installed before, which a batch must not decide against a
 * database that still lacks the records it deferred. Whatever the batches, the result is
 * that of installing one by one.
 */
#define CI_FILES   48
#define CI_THREADS 6

struct ci_job {
	struct side *dst;
	struct replica_update *u;
	int *fd, *rc;
	enum replica_verdict *v;
	size_t from;
};

static void *ci_run(void *arg)
{
	struct ci_job *j = arg;

	for (size_t i = j->from; i < CI_FILES; i += CI_THREADS)
		j->rc[i] = replica_install(j->dst->r, &j->u[i], j->fd[i], &j->v[i]);
	return NULL;
}

static void test_concurrent_installs(void **state)
{
	struct pair *p = *state;
	static struct replica_update u[CI_FILES];
	static struct dfsr_uid uid[CI_FILES];
	int fd[CI_FILES], rc[CI_FILES];
	enum replica_verdict v[CI_FILES];
	struct ci_job jobs[CI_THREADS];
	pthread_t t[CI_THREADS];
	char name[32], data[64];
	struct dfsr_uid m;

	mk_dir(&p->a, NULL, "d");
	mk_dir(&p->a, NULL, "e");
	m = mk_file(&p->a, "d", "m", "first");
	sync_all(&p->a, &p->b);
	modify(&p->a, "d/m", &m, "second");
	for (size_t i = 0; i < CI_FILES - 1; i++) {
		snprintf(name, sizeof(name), "f%zu", i % (CI_FILES / 2));
		snprintf(data, sizeof(data), "data %zu", i);
		uid[i] = mk_file(&p->a, i < CI_FILES / 2 ? "d" : "e", name, data);
	}
	uid[CI_FILES - 1] = m;
	for (size_t i = 0; i < CI_FILES; i++) {
		mk_update(&p->a, &uid[i], &u[i]);
		assert_int_equal(replica_offer(p->b.r, &u[i], &v[i]), 0);
		assert_int_equal(v[i], REPLICA_FETCH);
		fd[i] = fetch(&p->a, &p->b, &u[i]);
		rc[i] = -1;
	}
	for (size_t k = 0; k < CI_THREADS; k++) {
		jobs[k] = (struct ci_job){
			.dst = &p->b, .u = u, .fd = fd, .rc = rc, .v = v, .from = k
		};
		assert_int_equal(pthread_create(&t[k], NULL, ci_run, &jobs[k]), 0);
	}
	for (size_t k = 0; k < CI_THREADS; k++)
		assert_int_equal(pthread_join(t[k], NULL), 0);
	for (size_t i = 0; i < CI_FILES; i++) {
		assert_int_equal(rc[i], 0);
		assert_int_equal(v[i], REPLICA_DONE);
		close(fd[i]);
		replica_update_release(&u[i]);
	}
	assert_content(&p->b, "d/m", "second");
	assert_content(&p->b, "d/f3", "data 3");
	assert_content(&p->b, "e/f3", "data 27");
	assert_int_equal(count_dir(&p->b, LAYOUT_PRIVATE "/" LAYOUT_INSTALLING), 0);
	assert_converged(&p->a, &p->b);
	assert_scan_quiet(&p->b);
}

/*
 * A crash in the middle of a copy that unshares a hard link leaves a ".dfsr-copy-<ino>" in
 * Installing or ConflictAndDeleted: the next replica_new() removes it, and nothing else.
 */
static void test_copy_leftovers_swept(void **state)
{
	struct pair *p = *state;
	struct side *b = &p->b;
	const char *dirs[] = { LAYOUT_PRIVATE "/" LAYOUT_INSTALLING,
			       LAYOUT_PRIVATE "/" LAYOUT_CONFLICT };
	struct replica_opts ro = { .j = b->f->j, .stage = b->stage, .arg = b };
	char rel[128];

	for (size_t i = 0; i < 2; i++) {
		snprintf(rel, sizeof(rel), "%s/.dfsr-copy-4242", dirs[i]);
		fx_write(b->f, rel, "half a copy");
		snprintf(rel, sizeof(rel), "%s/keep.part", dirs[i]);
		fx_write(b->f, rel, "not ours to remove");
	}
	replica_free(b->r);
	assert_int_equal(replica_new(&ro, &b->r), 0);
	for (size_t i = 0; i < 2; i++) {
		snprintf(rel, sizeof(rel), "%s/.dfsr-copy-4242", dirs[i]);
		assert_int_equal(faccessat(b->f->root_fd, rel, F_OK, 0), -1);
		assert_int_equal(errno, ENOENT);
		snprintf(rel, sizeof(rel), "%s/keep.part", dirs[i]);
		assert_int_equal(faccessat(b->f->root_fd, rel, F_OK, 0), 0);
	}
}

/*
 * The start of the two tests below: B and A each make a directory d (B's first, so it keeps
 * the name), A puts c in it and changes d after, so that d's version has seen c; a third
 * member @cs (opened here) gets d and c from A; A's d reaches B and loses the name there
 * (§4). @ud receives A's update of d (the caller releases it).
 */
static void d_loses_on_b(struct pair *p, struct side *cs, struct dfsr_uid *da, struct dfsr_uid *c,
			 struct replica_update *ud)
{
	int fd;

	assert_int_equal(side_open(cs, JOURNAL_STATE_NORMAL), 0);
	(void)mk_dir(&p->b, NULL, "d");
	*da = mk_dir(&p->a, NULL, "d");
	*c = mk_file(&p->a, "d", "c", "c from A");
	assert_int_equal(fchmodat(p->a.f->root_fd, "d", 0700, 0), 0); /* d's version sees c */
	fd = fx_opath(p->a.f, "d");
	assert_int_equal(journal_note_change(p->a.f->j, da, fd, 0), 0);
	close(fd);
	mk_update(&p->a, da, ud);
	assert_int_equal(sync_uid(&p->a, cs, da), REPLICA_DONE);
	assert_int_equal(sync_uid(&p->a, cs, c), REPLICA_DONE);
	assert_int_equal(deliver(&p->a, &p->b, ud), REPLICA_DONE);
}

/*
 * §7.1 after §4: B's directory d, made first, keeps the name against A's d, new to B, and
 * B's tombstone of A's d carries A's vector, which claims A's file c in it (never received
 * by B). A applies that tombstone: c was seen by the deleter and goes, f7, newer, was not,
 * so d comes back (a new version). Buried quietly, c's tombstone kept c's own GVSN: B,
 * which then got d's resurrection and c itself (live, from a member that had not met the
 * delete yet), held c live at the very GVSN A held deleted, and neither sent anything again
 * (it.repl_random, seed 9103: a file on one member only, until a later change of it). What
 * a resurrection leaves deleted gets new versions, which replicate.
 */
static void test_resurrection_deletes_replicate(void **state)
{
	struct pair *p = *state;
	struct replica_update uc, ud, ut;
	struct dfsr_uid da, c;
	struct side cs; /* a third member */

	d_loses_on_b(p, &cs, &da, &c, &ud);
	(void)mk_file(&p->a, "d", "f7", "f7 from A, made later");
	mk_update(&p->b, &da, &ut);
	assert_true(ut.rec.tombstone);
	assert_int_equal(deliver(&p->b, &p->a, &ut), REPLICA_DONE); /* §7.1 on A */
	assert_false(exists(&p->a, "d/c"));
	assert_content(&p->a, "d/f7", "f7 from A, made later");
	mv(&p->b, root(&p->b), "d", "d", root(&p->b), "x", "x");     /* B's d makes room */
	assert_int_equal(sync_uid(&p->a, &p->b, &da), REPLICA_DONE); /* d comes back on B */
	mk_update(&cs, &c, &uc);
	assert_int_equal(deliver(&cs, &p->b, &uc), REPLICA_DONE); /* c, late, from it */
	replica_update_release(&uc);
	replica_update_release(&ud);
	replica_update_release(&ut);
	sync_all(&p->a, &p->b);
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	assert_converged(&p->a, &p->b);
	assert_false(exists(&p->b, "d/c"));
	assert_content(&p->b, "d/f7", "f7 from A, made later");
	side_close(&cs);
}

/*
 * §7.2 for a version the dead parent's deleter had seen: as test_resurrection_deletes_
 * replicate, but nothing in A's d is newer than B's tombstone, so A deletes d whole (c
 * at its own GVSN, as every member holding c does). B, which never held c, gets it later
 * from a third member while d is dead: it resurrected d and installed c, live at the GVSN A
 * holds deleted (diverged for ever). It records c deleted instead.
 */
static void test_seen_by_dead_parent_not_installed(void **state)
{
	struct pair *p = *state;
	struct replica_update uc, ud, ut;
	struct dfsr_uid da, c;
	struct side cs; /* a third member */

	d_loses_on_b(p, &cs, &da, &c, &ud);
	mk_update(&p->b, &da, &ut);
	assert_true(ut.rec.tombstone);
	assert_int_equal(deliver(&p->b, &p->a, &ut), REPLICA_DONE);
	assert_false(exists(&p->a, "d"));
	mv(&p->b, root(&p->b), "d", "d", root(&p->b), "x", "x");
	mk_update(&cs, &c, &uc);
	assert_int_equal(deliver(&cs, &p->b, &uc), REPLICA_DONE); /* c, late, from it */
	assert_false(exists(&p->b, "d"));
	replica_update_release(&uc);
	replica_update_release(&ud);
	replica_update_release(&ut);
	sync_all(&p->a, &p->b);
	sync_all(&p->b, &p->a);
	sync_all(&p->a, &p->b);
	assert_converged(&p->a, &p->b);
	assert_false(exists(&p->b, "d"));
	side_close(&cs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_check),
		cmocka_unit_test_setup_teardown(test_copy_leftovers_swept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_file_dir_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modify_rename_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_conflict_resolved_elsewhere, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_name_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_vs_update, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resurrection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initial_sync, setup_initial, teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hash_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preserved_told, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preserved_dir_and_adopted_told, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_seen_by_dead_parent_not_installed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resurrection_deletes_replicate, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_preserve_hard_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_hard_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preserve_same_counter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_hook_called, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_merge_moved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_dir_parent_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deleted_and_replaced_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_file_under_deleted_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moved_out_before_parent_deleted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_name_holder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_parent_held_by_self, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_move_cycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unpreserve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_revert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_independence, setup3, teardown3),
		cmocka_unit_test_setup_teardown(test_concurrent_installs, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
