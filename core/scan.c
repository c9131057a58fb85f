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
 */
#include "core/scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
	if (known) {
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
	if (rc == 0 && !journal__tracked(c->j, parent, name, type))
		rc = -ENOENT; /* untracked (filtered, unsupported type): as if absent */
	if (rc < 0) {
		if (rc != -ENOENT)
			skipped(c, name, rc);
		if (known_uid)
			return journal__remove(c->j, known_uid, c->res ? &c->res->removed : NULL);
		return 0;
	}
	if (c->res)
		c->res->files++;
	if (!known_uid)
		return record_entry(c, dfd, parent, name, NULL, depth);
	rc = journal__get(c->j, known_uid, &r);
	if (rc < 0)
		return rc == -ENOENT ? record_entry(c, dfd, parent, name, NULL, depth) : rc;
	if (r.tombstone || r.type != type) {
		record_release(&r);
		return record_entry(c, dfd, parent, name, NULL, depth);
	}
	if (stat_equal(&r, &st)) {
		journal__scan_add(c->j, 1, type == RECORD_FILE ? r.size : 0);
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

int scan__dir(struct journal *j, int fd, const struct dfsr_uid *uid, struct scan_result *res)
{
	struct scan_ctx c = { .j = j, .res = res };
	int rc = scan_dir(&c, fd, uid, 0);

	return fatal(rc) || rc == 0 ? rc : 0;
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
			      "visited=%llu created=%llu changed=%llu removed=%llu skipped=%llu "
			      "ms=%lld",
			      (unsigned long long)r->files, (unsigned long long)r->created,
			      (unsigned long long)r->changed, (unsigned long long)r->removed,
			      (unsigned long long)r->skipped, (long long)ms);
}

int scan_folder(struct journal *j, struct scan_result *out)
{
	const struct config_folder *f = journal_folder(j);
	bool initial = journal_state(j) == JOURNAL_STATE_INITIAL_BUILD;
	struct scan_result r = { 0 };
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
	journal__scan_begin(j, t.files, t.bytes);
	rc = scan__dir(j, journal_root_fd(j), journal_root_uid(j), &r);
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
