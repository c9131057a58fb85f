/*
 * scan.c - the initial build and the consistency scan (core/scan.h).
 *
 * One directory at a time: the directory's entries are read and sorted by name (bytewise,
 * as strcmp orders them), and merged against the names index under the directory's UID,
 * which RocksDB returns in the same bytewise order. Each step of the merge is one of:
 *   - on disk only: new (hash it, record it; a directory is then walked);
 *   - in the index only: gone (tombstone it and everything below);
 *   - both: compare the stat data with the record; equal means unchanged and is not hashed;
 *     different means hash again (the data is read again only when size or mtime moved)
 *     and let the journal decide whether that is a new version.
 * Memory is one sorted listing per directory level plus one index iterator per level
 * (O(depth) of them, O(largest directory) of names); no global "seen" set. Every entry is
 * reached with openat() relative to its parent's descriptor, O_NOFOLLOW, so a symbolic
 * link is recorded as a link and never followed. DfsrPrivate at the root is never listed.
 *
 * The same walker records a directory moved in from an untracked place (journal.c calls
 * scan__dir() on it): its index prefix is empty, so everything in it is new.
 *
 * Every hard-linked object visited (st_nlink > 1) is registered with the journal, unchanged
 * or recorded anew, so that a change made through one of its names later finds the others
 * (journal_link_note(), core/journal.h).
 *
 * A read-only folder (docs/conflicts.md §11) reverts instead of recording, for the
 * versions it received (another database's GVSN; there is someone to fetch them from):
 * a file or link with new data or target, or an object of another type at a recorded name,
 * is moved to ConflictAndDeleted (replica__preserve_local()) and its record marked; a
 * recorded object gone is marked with everything below it; an object whose metadata alone
 * changed (a directory's, always) stays and is marked (a directory is walked as usual); a
 * new object (state normal) is moved aside, never recorded. The records
 * keep the group's GVSN: no journal entry, nothing to send. The versions this member made
 * itself are scanned as on a writable folder.
 */
#include "core/scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/db.h"
#include "core/internal.h"
#include "core/layout.h"

#define SCAN_DEPTH_MAX 2048 /* deeper trees exceed PATH_MAX anyway */

struct scan_ctx {
	struct journal *j;
	struct scan_result *res;
	bool revert;     /* read-only folder: received versions are reverted, never changed */
	bool revert_new; /* ... and (state normal) new objects are moved aside, not recorded */
};

struct name_list {
	char **v;
	size_t n;
	size_t cap;
};

static void names_release(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static int names_add(struct name_list *l, const char *name)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **p = realloc(l->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n] = strdup(name);
	if (!l->v[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names in directory @dfd, without "." and "..", and DfsrPrivate at the root. */
static int list_dir(int dfd, bool is_root, struct name_list *out)
{
	struct dirent *de;
	DIR *d;
	int fd = dup(dfd), rc = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rewinddir(d);
	while (rc == 0) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			rc = -errno;
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (is_root && !strcmp(de->d_name, LAYOUT_PRIVATE))
			continue;
		rc = names_add(out, de->d_name);
	}
	closedir(d);
	if (rc == 0 && out->n)
		qsort(out->v, out->n, sizeof(out->v[0]), cmp_names);
	return rc;
}

static void skipped(struct scan_ctx *c, const char *name, int err)
{
	journal_event(c->j, EV_SCAN_ERROR, "name=\"%s\" error=\"%s\"", name, dfsr_strerror(err));
	if (c->res)
		c->res->skipped++;
}

/* Errors that stop the scan; everything else skips one entry. */
static bool fatal(int rc)
{
	return rc == -EIO || rc == -ENOMEM || rc == -ENOSPC;
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static bool stat_equal(const struct record *r, const struct stat *st)
{
	if (((uint32_t)st->st_mode & 07777u) != r->mode || st->st_uid != r->owner ||
	    st->st_gid != r->group || ts_ns(&st->st_ctim) != r->ctime_ns)
		return false;
	if (r->type == RECORD_DIR)
		return true;
	return (uint64_t)st->st_size == r->size && ts_ns(&st->st_mtim) == r->mtime_ns;
}

static int scan_dir(struct scan_ctx *c, int fd, const struct dfsr_uid *uid, int depth);

/* ---- read-only folders (docs/conflicts.md §11) -------------------------------------- */

/* A version this member received (made by another database): the group's, to revert to. */
static bool group_version(const struct scan_ctx *c, const struct record *r)
{
	return c->revert && !r->tombstone && !dfsr_uid_equal(&r->gvsn.db, journal_db_id(c->j));
}

/* The relative path of (@parent, @name), or @name alone if the parent has none. */
static int entry_path(struct scan_ctx *c, const struct dfsr_uid *parent, const char *name,
		      struct dfsr_buf *out)
{
	if (journal_path(c->j, parent, out) < 0 || !out->p)
		out->len = 0;
	if (out->len && dfsr_buf_add(out, "/", 1) < 0)
		return -ENOMEM;
	return dfsr_buf_add(out, name, strlen(name));
}

static void reverted(struct scan_ctx *c, const char *path, const char *change, const char *pname,
		     uint64_t n)
{
	journal_event(c->j, EV_READONLY_REVERTED, "path=\"%s\" change=%s preserved=\"%s\"", path,
		      change, pname);
	if (c->res)
		c->res->reverted += n;
}

/*
 * Move the object at (@dfd, @name) into ConflictAndDeleted: @rec names it in the manifest
 * (UID, GVSN, type), @st gives its size. Logs event 1206 with @change.
 */
static int revert_preserve(struct scan_ctx *c, int dfd, const struct dfsr_uid *parent,
			   const char *name, const struct record *rec, const struct stat *st,
			   enum manifest_type type, const char *change)
{
	char pname[RECORD_NAME_MAX + 1];
	struct record m = *rec; /* shallow, never released */
	struct dfsr_buf path;
	int rc;

	snprintf(m.name, sizeof(m.name), "%s", name);
	m.type = record_type_of((uint32_t)st->st_mode);
	m.size = S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size;
	dfsr_buf_init(&path);
	rc = entry_path(c, parent, name, &path);
	if (rc == 0)
		rc = replica__preserve_local(c->j, dfd, &m, path.p, type, pname);
	if (rc == 0)
		reverted(c, path.p, change, pname, 1);
	dfsr_buf_release(&path);
	return rc;
}

/* A recorded object gone from disk: mark the group's versions to be installed again. */
static int revert_gone(struct scan_ctx *c, const struct dfsr_uid *uid)
{
	uint64_t marked = 0;
	struct dfsr_buf path;
	int rc;

	dfsr_buf_init(&path);
	if (journal_path(c->j, uid, &path) < 0 || !path.p)
		path.len = 0;
	rc = journal__revert_missing(c->j, uid, &marked, c->res ? &c->res->removed : NULL);
	if (rc == 0 && marked)
		reverted(c, path.p ? path.p : "", "deleted", "", marked);
	dfsr_buf_release(&path);
	return rc;
}

/* A new object (no record) in a read-only folder: moved aside, never recorded. */
static int revert_new(struct scan_ctx *c, int dfd, const struct dfsr_uid *parent, const char *name,
		      const struct stat *st)
{
	struct record r;
	int rc;

	record_init(&r);
	dfsr_uid_random(&r.uid);
	r.parent = *parent;
	r.gvsn.db = *journal_db_id(c->j); /* counter 0: a version never made */
	rc = revert_preserve(c, dfd, parent, name, &r, st, MANIFEST_TYPE_DELETED, "added");
	record_release(&r);
	return rc;
}

/*
 * The group's version @known differs from what the fresh hash @h says. New data (or a new
 * link target) is moved aside and the record marked: the version is fetched again. Only
 * metadata (mode, owner, xattrs; a directory's is all it has) is reverted in place: the
 * object stays, marked, and the group's metadata is applied again when the version comes
 * back (no download; the event names the mode and owner it had).
 */
static int revert_changed(struct scan_ctx *c, int dfd, const char *name, const struct record *known,
			  const struct hash_result *h)
{
	bool meta = known->type == RECORD_DIR ||
		    (memcmp(h->content, known->content, HASH_LEN) == 0 &&
		     (known->type != RECORD_FILE || (uint64_t)h->st.st_size == known->size));
	struct dfsr_buf path;
	char what[96];
	int rc;

	if (!meta) {
		rc = revert_preserve(c, dfd, &known->parent, name, known, &h->st,
				     MANIFEST_TYPE_CONFLICT, "modified");
		return rc < 0 ? rc : journal__revert_mark(c->j, known, false);
	}
	rc = journal__revert_mark(c->j, known, true);
	snprintf(what, sizeof(what), "metadata mode=%04o owner=%u:%u",
		 (unsigned)(h->st.st_mode & 07777), (unsigned)h->st.st_uid, (unsigned)h->st.st_gid);
	dfsr_buf_init(&path);
	if (rc == 0 && entry_path(c, &known->parent, name, &path) == 0)
		reverted(c, path.p, what, "", 1);
	dfsr_buf_release(&path);
	return rc;
}

/* What is at a recorded name is not the group's object (other type, or unsupported):
 * moved aside, and the record (with everything below it) marked. */
static int revert_replaced(struct scan_ctx *c, int dfd, const char *name, const struct record *r,
			   const struct stat *st)
{
	int rc = revert_preserve(c, dfd, &r->parent, name, r, st, MANIFEST_TYPE_CONFLICT,
				 "replaced");

	return rc < 0 ? rc : journal__revert_missing(c->j, &r->uid, NULL, NULL);
}

static void count_result(struct scan_ctx *c, int what)
{
	if (!c->res)
		return;
	if (what == JOURNAL__CREATED)
		c->res->created++;
	else if (what == JOURNAL__CHANGED)
		c->res->changed++;
}

/*
 * Hash (@dfd, @name) and record it: as a fresh hash of the live record @known (not NULL:
 * reuse its content digest when size and mtime match), or as whatever is at that name.
 * Then walk it if it is a directory.
 */
static int record_entry(struct scan_ctx *c, int dfd, const struct dfsr_uid *parent,
			const char *name, const struct record *known, int depth)
{
	const uint8_t *content = NULL;
	struct hash_result h;
	struct dfsr_uid child;
	int fd, rc, what = JOURNAL__NONE;

	fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (known && known->type == RECORD_FILE)
		content = known->content;
	rc = hash_fd(fd, content, &h);
	if (rc == 0 && content &&
	    ((uint64_t)h.st.st_size != known->size || ts_ns(&h.st.st_mtim) != known->mtime_ns))
		rc = hash_fd(fd, NULL, &h); /* data moved: read it after all */
	if (rc < 0)
		goto out_close;
	if (known && group_version(c, known) && memcmp(h.hash, known->hash, HASH_LEN) != 0) {
		child = known->uid;
		rc = revert_changed(c, dfd, name, known, &h); /* a directory is walked below */
	} else if (known) {
		child = known->uid;
		rc = journal__apply_hash(c->j, &child, &h, &what);
	} else {
		rc = journal__sync_entry(c->j, parent, name, &h, &child, &what);
	}
	count_result(c, what);
	journal__scan_add(c->j, 1, S_ISREG(h.st.st_mode) ? (uint64_t)h.st.st_size : 0);
	if (rc == 0 && S_ISDIR(h.st.st_mode) && !dfsr_uid_is_zero(&child))
		rc = scan_dir(c, fd, &child, depth + 1);
out_close:
	close(fd);
	return rc;
}

/* Unchanged directory: only walk it. */
static int walk_only(struct scan_ctx *c, int dfd, const char *name, const struct dfsr_uid *uid,
		     int depth)
{
	int fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = scan_dir(c, fd, uid, depth + 1);
	close(fd);
	return rc;
}

/* An object of a type dfsr does not replicate at the name of record @uid (§11). */
static int visit_replaced(struct scan_ctx *c, int dfd, const char *name, const struct dfsr_uid *uid,
			  const struct stat *st)
{
	struct record r;
	int rc = journal__get(c->j, uid, &r);

	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	if (group_version(c, &r))
		rc = revert_replaced(c, dfd, name, &r, st);
	else
		rc = journal__remove(c->j, uid, c->res ? &c->res->removed : NULL);
	record_release(&r);
	return rc;
}

/* A name on disk; @known_uid is its indexed UID or NULL. */
static int visit(struct scan_ctx *c, int dfd, const struct dfsr_uid *parent, const char *name,
		 const struct dfsr_uid *known_uid, int depth)
{
	struct record r;
	struct stat st;
	char type;
	int rc;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		rc = -errno;
	else
		rc = 0;
	type = rc == 0 ? record_type_of((uint32_t)st.st_mode) : 0;
	if (rc == 0 && !type && c->revert && known_uid)
		return visit_replaced(c, dfd, name, known_uid, &st); /* §11: in the way */
	if (rc == 0 && !journal__tracked(c->j, parent, name, type))
		rc = -ENOENT; /* untracked (filtered, unsupported type): as if absent */
	if (rc < 0) {
		if (rc != -ENOENT)
			skipped(c, name, rc);
		if (known_uid && c->revert && !type) /* §11: gone (not filtered) or unreadable */
			return rc == -ENOENT ? revert_gone(c, known_uid) : 0;
		if (known_uid)
			return journal__remove(c->j, known_uid, c->res ? &c->res->removed : NULL);
		return 0;
	}
	if (c->res)
		c->res->files++;
	if (!known_uid && c->revert_new)
		return revert_new(c, dfd, parent, name, &st);
	if (!known_uid)
		return record_entry(c, dfd, parent, name, NULL, depth);
	rc = journal__get(c->j, known_uid, &r);
	if (rc == -ENOENT && c->revert_new)
		return revert_new(c, dfd, parent, name, &st);
	if (rc < 0)
		return rc == -ENOENT ? record_entry(c, dfd, parent, name, NULL, depth) : rc;
	if (r.type != type && group_version(c, &r)) {
		rc = revert_replaced(c, dfd, name, &r, &st);
		record_release(&r);
		return rc;
	}
	if (r.tombstone || r.type != type) {
		record_release(&r);
		if (!c->revert_new)
			return record_entry(c, dfd, parent, name, NULL, depth);
		/* a version only this member made, replaced: its delete is recorded (as a
		 * writable folder would) and the new object moved aside */
		rc = journal__remove(c->j, known_uid, c->res ? &c->res->removed : NULL);
		return rc < 0 ? rc : revert_new(c, dfd, parent, name, &st);
	}
	if (stat_equal(&r, &st)) {
		journal__scan_add(c->j, 1, type == RECORD_FILE ? r.size : 0);
		journal_link_note(c->j, &st,
				  known_uid); /* (a hashed entry is noted when recorded) */
		rc = type == RECORD_DIR ? walk_only(c, dfd, name, known_uid, depth) : 0;
	} else {
		rc = record_entry(c, dfd, parent, name, &r, depth);
	}
	record_release(&r);
	return rc;
}

/* bytewise name order, as RocksDB's comparator and strcmp() */
static int cmp_key(const char *name, const uint8_t *k, size_t klen)
{
	size_t n = strlen(name), m = n < klen ? n : klen;
	int c = memcmp(name, k, m);

	if (c)
		return c;
	return n < klen ? -1 : n > klen ? 1 : 0;
}

/* One step of the merge; returns what the step consumed in *adv (1 disk, 2 index, 3 both). */
static int merge_step(struct scan_ctx *c, int dfd, const struct dfsr_uid *uid, struct db_iter *it,
		      const char *name, int depth, int *adv)
{
	const uint8_t *k = NULL, *v;
	size_t klen = 0, vlen;
	struct dfsr_uid child;
	int cmp = -1;

	if (db_iter_valid(it)) {
		k = db_iter_key(it, &klen);
		if (klen < DFSR_UID_LEN || memcmp(k, uid->b, DFSR_UID_LEN) != 0)
			k = NULL;
	}
	if (!k && !name) {
		*adv = 0;
		return 0;
	}
	if (k && !name)
		cmp = 1;
	else if (k)
		cmp = cmp_key(name, k + DFSR_UID_LEN, klen - DFSR_UID_LEN);
	if (k) {
		v = db_iter_value(it, &vlen);
		if (vlen != DFSR_UID_LEN)
			return -EIO;
		memcpy(child.b, v, DFSR_UID_LEN);
	}
	if (cmp < 0) {
		*adv = 1;
		return visit(c, dfd, uid, name, NULL, depth);
	}
	if (cmp > 0) {
		*adv = 2;
		if (c->revert)
			return revert_gone(c, &child);
		return journal__remove(c->j, &child, c->res ? &c->res->removed : NULL);
	}
	*adv = 3;
	return visit(c, dfd, uid, name, &child, depth);
}

static int merge(struct scan_ctx *c, int dfd, const struct dfsr_uid *uid,
		 const struct name_list *names, int depth)
{
	struct db_iter *it = db_iter_new(journal__db(c->j), NULL, DB_CF_NAMES);
	size_t i = 0;
	int rc = 0, adv = 1;

	if (!it)
		return -ENOMEM;
	db_iter_seek(it, uid->b, DFSR_UID_LEN);
	while (adv) {
		rc = merge_step(c, dfd, uid, it, i < names->n ? names->v[i] : NULL, depth, &adv);
		if (rc < 0 && fatal(rc))
			break;
		if (rc < 0 && i < names->n)
			skipped(c, names->v[i], rc);
		rc = 0;
		if (adv & 1)
			i++;
		if (adv & 2)
			db_iter_next(it);
	}
	if (rc == 0)
		rc = db_iter_status(it);
	db_iter_free(it);
	return rc;
}

static int scan_dir(struct scan_ctx *c, int fd, const struct dfsr_uid *uid, int depth)
{
	struct name_list names = { 0 };
	int dfd, rc;

	if (depth > SCAN_DEPTH_MAX)
		return -ELOOP;
	dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	rc = list_dir(dfd, dfsr_uid_equal(uid, journal_root_uid(c->j)), &names);
	if (rc == 0)
		rc = merge(c, dfd, uid, &names, depth);
	names_release(&names);
	close(dfd);
	return rc;
}

static int scan_top(struct scan_ctx *c, int fd, const struct dfsr_uid *uid)
{
	int rc = scan_dir(c, fd, uid, 0);

	return fatal(rc) || rc == 0 ? rc : 0;
}

int scan__dir(struct journal *j, int fd, const struct dfsr_uid *uid, struct scan_result *res)
{
	struct scan_ctx c = { .j = j, .res = res };

	return scan_top(&c, fd, uid);
}

/* ---- totals for the progress of an initial build ---------------------------------- */

struct totals {
	uint64_t files;
	uint64_t bytes;
};

static void count_tree(const struct config_folder *f, int fd, bool is_root, struct totals *t,
		       int depth)
{
	struct name_list names = { 0 };
	int dfd;

	if (depth > SCAN_DEPTH_MAX)
		return;
	dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	if (list_dir(dfd, is_root, &names) < 0)
		goto out_release;
	for (size_t i = 0; i < names.n; i++) {
		struct stat st;

		if (fstatat(dfd, names.v[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode) && !filter_match(&f->subfolder_filter, names.v[i])) {
			int cfd = openat(dfd, names.v[i],
					 O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			t->files++;
			if (cfd >= 0) {
				count_tree(f, cfd, false, t, depth + 1);
				close(cfd);
			}
			continue;
		}
		if ((S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) &&
		    !filter_match(&f->file_filter, names.v[i])) {
			t->files++;
			t->bytes += S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
		}
	}
out_release:
	names_release(&names);
	close(dfd);
}

static void scan_done(struct journal *j, bool initial, const struct scan_result *r, int64_t t0)
{
	int64_t ms = (dfsr_mono_ns() - t0) / 1000000;

	if (initial)
		journal_event(j, EV_INITIAL_BUILD_DONE, "files=%llu skipped=%llu ms=%lld",
			      (unsigned long long)r->created, (unsigned long long)r->skipped,
			      (long long)ms);
	else
		journal_event(j, EV_SCAN_DONE,
			      "visited=%llu created=%llu changed=%llu removed=%llu reverted=%llu "
			      "skipped=%llu ms=%lld",
			      (unsigned long long)r->files, (unsigned long long)r->created,
			      (unsigned long long)r->changed, (unsigned long long)r->removed,
			      (unsigned long long)r->reverted, (unsigned long long)r->skipped,
			      (long long)ms);
}

int scan_folder(struct journal *j, struct scan_result *out)
{
	const struct config_folder *f = journal_folder(j);
	bool initial = journal_state(j) == JOURNAL_STATE_INITIAL_BUILD;
	struct scan_result r = { 0 };
	struct scan_ctx c = { .j = j, .res = &r };
	struct totals t = { 0 };
	int64_t t0 = dfsr_mono_ns();
	int rc;

	if (initial) {
		journal_event(j, EV_INITIAL_BUILD_STARTED, NULL);
		count_tree(f, journal_root_fd(j), true, &t, 0);
	} else {
		struct journal_status s;

		journal_get_status(j, &s);
		t.files = s.files + s.folders;
		t.bytes = s.bytes;
	}
	/* §11: a read-only folder reverts what changed behind dfsr, once it has versions */
	c.revert = f->read_only && !initial;
	c.revert_new = c.revert && journal_state(j) == JOURNAL_STATE_NORMAL;
	journal__scan_begin(j, t.files, t.bytes);
	rc = scan_top(&c, journal_root_fd(j), journal_root_uid(j));
	journal__scan_end(j);
	if (rc < 0)
		return rc == -ENOMEM ? rc : -EIO;
	scan_done(j, initial, &r, t0);
	if (initial) {
		rc = journal_set_state(j, f->primary ? JOURNAL_STATE_NORMAL
						     : JOURNAL_STATE_INITIAL_SYNC);
		if (rc < 0)
			return rc;
	}
	if (out)
		*out = r;
	return 0;
}
