/*
 * outbound.c - the upstream side of replication (core/outbound.h): finding the records a
 * partner lacks and handing each out with what the record alone does not carry.
 *
 * A partner lacks a record when its knowledge vector does not contain the record's GVSN.
 * There are two ways to find them. The full walk (outbound_missing()) reads one RocksDB
 * snapshot: the live tree breadth-first from the root through the (parent, name) index,
 * so a receiver always meets a directory before anything inside it, then the tombstones
 * in the order they were made, and the Meta of the same snapshot tells which journal
 * sequence number follows it. The incremental way (outbound_changes()) follows the
 * outbound journal from a sequence number and sends the *current* record of each object
 * named there, once per call: an object changed ten times since is sent once, as it is
 * now, preceded by those of its ancestors the partner lacks (a file made before the
 * directory it was then moved into still reaches a receiver after that directory). Both
 * skip what the partner's vector already contains.
 *
 * What a receiver needs beyond the record (the extended attributes, a link's target) is
 * read from the live object at the moment it is sent, through the journal's descriptor of
 * the local path (never the mount), one openat(O_NOFOLLOW) per path component, so a
 * symbolic link planted in the tree cannot lead outside it. The record and the live object
 * may disagree if a local change races the walk: the receiver verifies the whole update
 * against the record's replication hash and refuses a mismatch, and the racing change has
 * its own journal entry, so it is sent again. An object that vanished is skipped (its
 * delete is, or will be, in the journal); one whose attributes cannot be read, or exceed
 * what a receiver accepts (REPLICA_XATTR_*), is skipped with event 1401, and so is every
 * live object under a directory whose attributes exceed them (each walk call judges each
 * directory once, from the attribute sizes alone: struct ob_dirs): the receiver would
 * hold such an object waiting for a parent that never comes, and with it the round.
 *
 * Memory stays bounded for big trees: the walk holds a queue of directory UIDs (16 bytes
 * each, only the directories not yet visited) and the (seq, UID) of each tombstone the
 * partner lacks (24 bytes each, sorted to send them in order), never the records
 * themselves. outbound_changes() remembers the UIDs it sent in one call, at most one per
 * journal entry read (@max bounds them).
 *
 * Serving (outbound_serve()) checks the version is still current, opens the file
 * read-only the same way, and lets core/stage.c read and verify it against the record's
 * content digest: a file written since it was journaled does not match and is -EAGAIN
 * (its new version is coming), never a staged mix of two versions.
 */
#include "core/outbound.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "core/db.h"
#include "core/dfsr.pb-c.h"
#include "core/internal.h"

#define OB_META_KEY            "folder" /* core/db.h: the meta column family's one key */
#define OB_TRIES               3        /* re-reads of a changing attribute list */
#define OB_LIST_MAX            (1024 * 1024)
#define OB_PROC_PATH           32
#define OB_XATTR_NAME          255  /* XATTR_NAME_MAX */
#define OB_DEPTH_MAX           4096 /* guards parent-chain walks against a corrupt cycle */
/* fill_settled(): naps per walk thread, and their length */
#define OUTBOUND_SETTLE_NAPS   25
#define OUTBOUND_SETTLE_NAP_MS 20

/* ---- opening an object by its recorded path ------------------------------------------- */

/*
 * Open record @uid's object at its current path with @flags (O_NOFOLLOW and O_CLOEXEC are
 * added). Every directory on the way is opened O_PATH|O_NOFOLLOW relative to the previous.
 * Return: the descriptor; -ENOENT if the path no longer leads to an object (gone, or a
 * component replaced by a link or a non-directory); -ENOMEM, -EIO, or another -errno.
 */
static int open_object(struct journal *j, const struct dfsr_uid *uid, int flags)
{
	struct dfsr_buf path;
	int dfd = journal_root_fd(j), fd = -1, rc;
	char *comp, *slash;

	dfsr_buf_init(&path);
	rc = journal_path(j, uid, &path);
	if (rc < 0)
		goto out_release;
	if (path.len == 0) {
		rc = -ENOENT; /* the root has no record */
		goto out_release;
	}
	comp = path.p;
	while ((slash = strchr(comp, '/'))) {
		int next;

		*slash = '\0';
		next = openat(dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		rc = next < 0 ? -errno : 0;
		if (dfd != journal_root_fd(j))
			close(dfd);
		if (rc < 0)
			goto out_release;
		dfd = next;
		comp = slash + 1;
	}
	fd = openat(dfd, comp, flags | O_NOFOLLOW | O_CLOEXEC);
	rc = fd < 0 ? -errno : fd;
	if (dfd != journal_root_fd(j))
		close(dfd);
out_release:
	dfsr_buf_release(&path);
	if (rc == -ENOTDIR || rc == -ELOOP)
		rc = -ENOENT;
	return rc;
}

/* ---- what travels with a record -------------------------------------------------------- */

static void proc_path(int fd, char out[static OB_PROC_PATH])
{
	snprintf(out, OB_PROC_PATH, "/proc/self/fd/%d", fd);
}

static int cmp_xattr(const void *a, const void *b)
{
	const struct replica_xattr *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static void xattrs_clear(struct replica_update *u)
{
	for (size_t i = 0; i < u->nxattrs; i++) {
		free(u->xattrs[i].name);
		free(u->xattrs[i].value);
	}
	free(u->xattrs);
	u->xattrs = NULL;
	u->nxattrs = 0;
}

/* Append attribute @name of @path to @u (value read into @val, HASH_XATTR_MAX bytes). */
static int xattr_add(struct replica_update *u, const char *path, const char *name, uint8_t *val,
		     size_t *total)
{
	struct replica_xattr *x = &u->xattrs[u->nxattrs];
	ssize_t n = getxattr(path, name, val, HASH_XATTR_MAX);
	size_t nlen = strlen(name);

	if (n < 0)
		return errno == ENODATA ? -EAGAIN : errno == ERANGE ? -E2BIG : -errno;
	*total += nlen + (size_t)n;
	if (nlen > OB_XATTR_NAME || u->nxattrs >= REPLICA_XATTR_MAX || *total > REPLICA_XATTR_BYTES)
		return -E2BIG; /* a receiver would refuse it (replica_update_check()) */
	x->name = strdup(name);
	x->value = n ? malloc((size_t)n) : NULL;
	x->len = (size_t)n;
	if (!x->name || (n && !x->value)) {
		free(x->name);
		free(x->value);
		return -ENOMEM;
	}
	if (n)
		memcpy(x->value, val, (size_t)n);
	u->nxattrs++;
	return 0;
}

/* One pass: every attribute of @path that is replicated, sorted by name. */
static int xattrs_pass(struct replica_update *u, const char *path, uint8_t *val)
{
	size_t len = 0, count = 0, total = 0;
	char *list = NULL;
	int rc;

	rc = dfsr_xattr_names(-1, path, true, OB_LIST_MAX, &list, &len);
	if (rc < 0)
		return rc;
	if (len == 0)
		goto out_free;
	for (size_t off = 0; off < len; off += strlen(list + off) + 1)
		count++;
	u->xattrs = calloc(count, sizeof(*u->xattrs));
	if (!u->xattrs) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (size_t off = 0; off < len && rc == 0; off += strlen(list + off) + 1)
		if (list[off] && !hash_xattr_excluded(list + off))
			rc = xattr_add(u, path, list + off, val, &total);
	if (rc == 0)
		qsort(u->xattrs, u->nxattrs, sizeof(*u->xattrs), cmp_xattr);
out_free:
	free(list);
	return rc;
}

/*
 * The object's extended attributes, as core/hash.c reads them for the hash: through the
 * /proc/self/fd path of the O_PATH descriptor (which lands on the object itself, links
 * included), dfsr's own and machine-local names left out. An attribute removed between
 * listing and reading restarts the pass.
 */
static int read_xattrs(int fd, struct replica_update *u)
{
	char path[OB_PROC_PATH];
	uint8_t *val = malloc(HASH_XATTR_MAX);
	int rc = -EAGAIN;

	if (!val)
		return -ENOMEM;
	proc_path(fd, path);
	for (int i = 0; i < OB_TRIES && rc == -EAGAIN; i++) {
		xattrs_clear(u);
		rc = xattrs_pass(u, path, val);
	}
	if (rc < 0)
		xattrs_clear(u);
	free(val);
	return rc;
}

static int read_link(int fd, struct replica_update *u)
{
	char *buf = malloc(REPLICA_LINK_MAX + 1);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = readlinkat(fd, "", buf, REPLICA_LINK_MAX + 1);
	if (n <= 0 || (size_t)n > REPLICA_LINK_MAX) {
		int rc = n < 0 ? -errno : n == 0 ? -EIO : -E2BIG;

		free(buf);
		return rc;
	}
	buf[n] = '\0';
	u->link_target = buf;
	return 0;
}

/*
 * Fill @u (initialised, empty) for record @rec: a copy of the record, and for a live
 * object its attributes and (links) its target, read now.
 * Return: 0; -ENOENT if the object vanished or is no longer of the recorded type; -ENOMEM;
 *         another -errno if it could not be read.
 */
static int fill_update(struct journal *j, const struct record *rec, struct replica_update *u)
{
	struct stat st;
	int fd, rc;

	rc = record_copy(&u->rec, rec);
	if (rc < 0 || rec->tombstone)
		return rc;
	fd = open_object(j, &rec->uid, O_PATH);
	if (fd < 0)
		return fd;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		rc = -errno;
		goto out_close;
	}
	if (record_type_of(st.st_mode) != rec->type) {
		rc = -ENOENT; /* replaced behind the journal's back; the scan will see it */
		goto out_close;
	}
	rc = read_xattrs(fd, u);
	if (rc == 0 && rec->type == RECORD_LINK)
		rc = read_link(fd, u);
out_close:
	close(fd);
	return rc;
}

/* Naps fill_settled() may still take on this thread (a walk runs on a thread of its own). */
static _Thread_local unsigned settle_naps = OUTBOUND_SETTLE_NAPS;

/*
 * fill_update(), for an object that may be moving right now. Its path is resolved from the
 * live records: an install holds the journal lock from its rename to its record write, and
 * a rename through the mount reaches the disk a moment before its journal entry, so in
 * between the object seems gone. A walk that skipped it would still claim its version in
 * Done (the knowledge read before the walk), and the partner would never receive it. So
 * try again under the journal lock, then once more after a short nap (a bounded number
 * per thread: objects really deleted behind dfsr's back must not stall a walk).
 */
static int fill_settled(struct journal *j, const struct record *rec, struct replica_update *u)
{
	int rc = fill_update(j, rec, u);

	for (int i = 0; rc == -ENOENT && i < 2; i++) {
		if (i == 1) {
			struct timespec ts = { 0, OUTBOUND_SETTLE_NAP_MS * 1000000L };

			if (settle_naps == 0)
				break;
			settle_naps--;
			nanosleep(&ts, NULL);
		}
		replica_update_release(u);
		replica_update_init(u);
		journal__lock(j);
		rc = fill_update(j, rec, u);
		journal__unlock(j);
	}
	return rc;
}

void outbound_skips_init(struct outbound_skips *s)
{
	memset(s, 0, sizeof(*s));
}

void outbound_skips_release(struct outbound_skips *s)
{
	free(s->uid);
	free(s->gvsn);
	outbound_skips_init(s);
}

static int skips_add(struct outbound_skips *s, const struct record *rec)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct dfsr_uid *u = realloc(s->uid, cap * sizeof(*u));
		struct version_gvsn *g;

		if (!u)
			return -ENOMEM;
		s->uid = u;
		g = realloc(s->gvsn, cap * sizeof(*g));
		if (!g)
			return -ENOMEM;
		s->gvsn = g;
		s->cap = cap;
	}
	s->uid[s->n] = rec->uid;
	s->gvsn[s->n] = rec->gvsn;
	s->n++;
	return 0;
}

/* ---- directories too large to replicate ------------------------------------------------ */

/*
 * The directories one walk call has judged (dir_blocked()): a receiver places nothing
 * under a directory it does not hold, and holds the updates of what is inside waiting for
 * it, which stalls the round (net/session.c merges a Done only once every update before
 * it is decided). So what lies under a directory whose attributes are too large to
 * replicate is not sent either. @blocked: such directories and those below them; @ok:
 * directories whose whole chain of ancestors can be sent.
 */
struct ob_dirs {
	struct dfsr_uid_set ok, blocked;
};

static void ob_dirs_release(struct ob_dirs *d)
{
	dfsr_uid_set_release(&d->ok);
	dfsr_uid_set_release(&d->blocked);
}

/*
 * Whether the attributes of @path exceed what a receiver accepts (the REPLICA_XATTR_*
 * limits of replica_update_check(), as xattr_add() counts them), from the sizes alone.
 * An object that cannot be read is not "too large": sending it fails on its own.
 */
static bool attrs_too_large(const char *path)
{
	size_t len = 0, count = 0, total = 0;
	char *list = NULL;
	int rc = dfsr_xattr_names(-1, path, true, OB_LIST_MAX, &list, &len);

	if (rc == -E2BIG)
		return true;
	if (rc < 0)
		return false;
	for (size_t off = 0; off < len; off += strlen(list + off) + 1) {
		ssize_t n;

		if (!list[off] || hash_xattr_excluded(list + off))
			continue;
		n = getxattr(path, list + off, NULL, 0);
		count++;
		total += strlen(list + off) + (n > 0 ? (size_t)n : 0);
	}
	free(list);
	return count > REPLICA_XATTR_MAX || total > REPLICA_XATTR_BYTES;
}

bool outbound_attrs_too_large(int fd)
{
	char path[OB_PROC_PATH];

	proc_path(fd, path);
	return attrs_too_large(path);
}

static bool dir_too_large(struct journal *j, const struct dfsr_uid *uid)
{
	char path[OB_PROC_PATH];
	int fd = open_object(j, uid, O_PATH);
	bool big;

	if (fd < 0)
		return false;
	proc_path(fd, path);
	big = attrs_too_large(path);
	close(fd);
	return big;
}

/*
 * Whether directory @dir (a record's parent) or one above it is too large to replicate.
 * Each directory is judged once per walk call: the chain is read up to the root or the
 * first directory judged already, then judged top down.
 * Return: 1 (blocked), 0, -ENOMEM.
 */
static int dir_blocked_at(struct journal *j, struct ob_dirs *d, const struct dfsr_uid *dir,
			  int depth)
{
	struct dfsr_uid chain[64], cur = *dir;
	size_t n = 0;
	bool blocked = false;
	int rc = 0;

	while (!dfsr_uid_equal(&cur, journal_root_uid(j)) && !dfsr_uid_set_has(&d->ok, &cur)) {
		struct record rec;

		if (dfsr_uid_set_has(&d->blocked, &cur)) {
			blocked = true;
			break;
		}
		if (n == sizeof(chain) / sizeof(chain[0])) {
			/* judge the upper part first (a corrupt cycle: give up, not blocked) */
			if (depth > OB_DEPTH_MAX)
				break;
			rc = dir_blocked_at(j, d, &cur, depth + (int)n);
			if (rc < 0)
				return rc;
			blocked = rc == 1;
			break;
		}
		chain[n++] = cur;
		record_init(&rec);
		if (journal__get(j, &cur, &rec) < 0) {
			record_release(&rec);
			break; /* the chain changed meanwhile: as before, the receiver waits */
		}
		cur = rec.parent;
		record_release(&rec);
	}
	while (rc == 0 && n > 0) {
		const struct dfsr_uid *u = &chain[--n];

		blocked = blocked || dir_too_large(j, u);
		rc = dfsr_uid_set_add(blocked ? &d->blocked : &d->ok, u);
	}
	return rc < 0 ? rc : blocked;
}

static int dir_blocked(struct journal *j, struct ob_dirs *d, const struct dfsr_uid *dir)
{
	return dir_blocked_at(j, d, dir, 0);
}

/*
 * Event 1401 for record @rec, not sent for @err: its path (its name if the path cannot be
 * read), UID and why. -E2BIG is an object a receiver would refuse (replica_update_check()):
 * no retry can send it, only a change that makes it smaller.
 */
static void skipped_event(struct journal *j, const struct record *rec, int err)
{
	char hex[DFSR_UID_HEX_LEN], why[192];
	struct dfsr_buf path;

	dfsr_uid_hex(&rec->uid, hex);
	dfsr_buf_init(&path);
	if (err == -ENOTDIR)
		snprintf(why, sizeof(why),
			 "a directory above it has attributes too large to replicate, so it "
			 "could not be placed");
	else if (err == -E2BIG)
		snprintf(why, sizeof(why),
			 "its attributes are too large to replicate (more than %u of them, or "
			 "%u KiB in all, or a link target over %u bytes)",
			 (unsigned)REPLICA_XATTR_MAX, (unsigned)(REPLICA_XATTR_BYTES >> 10),
			 (unsigned)REPLICA_LINK_MAX);
	else
		snprintf(why, sizeof(why), "%s", dfsr_strerror(err));
	if (journal_path(j, &rec->uid, &path) == 0 && path.p)
		journal_event(j, EV_OUTBOUND_SKIPPED, "path=%s uid=%s err=%s", path.p, hex, why);
	else
		journal_event(j, EV_OUTBOUND_SKIPPED, "name=%s uid=%s err=%s", rec->name, hex, why);
	dfsr_buf_release(&path);
}

/*
 * Hand record @rec to @fn as an update. A vanished object is skipped (after
 * fill_settled()) and noted in @skips (if not NULL), an unreadable one skipped with event
 * 1401.
 * Return: 0, @fn's value, -ENOMEM.
 */
static int emit(struct journal *j, const struct record *rec, replica_update_fn fn, void *arg,
		struct outbound_skips *skips, struct ob_dirs *dirs)
{
	struct replica_update u;
	int rc;

	if (!rec->tombstone) {
		rc = dir_blocked(j, dirs, &rec->parent);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			skipped_event(j, rec, -ENOTDIR);
			return 0;
		}
	}
	replica_update_init(&u);
	rc = fill_settled(j, rec, &u);
	if (rc == 0) {
		rc = fn(arg, &u);
	} else if (rc == -ENOENT) {
		rc = skips ? skips_add(skips, rec) : 0;
	} else if (rc != -ENOMEM) {
		skipped_event(j, rec, rc);
		rc = 0;
	}
	replica_update_release(&u);
	return rc;
}

static bool partner_has(const struct version_vector *partner, const struct record *rec)
{
	return partner && version_vector_contains(partner, &rec->gvsn);
}

/* ---- reading from a snapshot ----------------------------------------------------------- */

/* Decode one stored record; a corrupt one is logged (1102) and -EBADMSG (skipped). */
static int decode_stored(struct journal *j, const uint8_t *key, const uint8_t *v, size_t vlen,
			 struct record *out)
{
	int rc = record_decode(out, v, vlen);

	if (rc == -EBADMSG) {
		char hex[DFSR_UID_HEX_LEN];
		struct dfsr_uid uid;

		memcpy(uid.b, key, DFSR_UID_LEN);
		dfsr_uid_hex(&uid, hex);
		journal_event(j, EV_DB_CORRUPT_RECORD, "uid=%s", hex);
	}
	return rc;
}

/* Record @uid as of @snap. Return: 0, -ENOENT, -EBADMSG (logged), -EIO, -ENOMEM. */
static int snap_record(struct journal *j, const struct db_snapshot *snap,
		       const struct dfsr_uid *uid, struct record *out)
{
	struct dfsr_buf v;
	int rc;

	dfsr_buf_init(&v);
	rc = db_get(journal__db(j), snap, DB_CF_RECORDS, uid->b, DFSR_UID_LEN, &v);
	if (rc == 0)
		rc = decode_stored(j, uid->b, (const uint8_t *)v.p, v.len, out);
	dfsr_buf_release(&v);
	return rc;
}

/* The Meta's next_seq as of @snap. Return: 0, -EIO, -ENOMEM. */
static int snap_next_seq(struct journal *j, const struct db_snapshot *snap, uint64_t *out)
{
	struct dfsr_buf v;
	Dfsr__Meta *m;
	int rc;

	dfsr_buf_init(&v);
	rc = db_get(journal__db(j), snap, DB_CF_META, OB_META_KEY, strlen(OB_META_KEY), &v);
	if (rc < 0) {
		rc = rc == -ENOENT ? -EIO : rc;
		goto out_release;
	}
	m = dfsr__meta__unpack(NULL, v.len, (const uint8_t *)v.p);
	if (!m || m->next_seq == 0) {
		rc = -EIO;
	} else {
		*out = m->next_seq;
	}
	if (m)
		dfsr__meta__free_unpacked(m, NULL);
out_release:
	dfsr_buf_release(&v);
	return rc;
}

/* ---- the full walk ---------------------------------------------------------------------- */

/* FIFO of directory UIDs still to visit. */
struct uid_queue {
	struct dfsr_uid *v;
	size_t head, n, cap;
};

static int queue_push(struct uid_queue *q, const struct dfsr_uid *uid)
{
	if (q->head > 0 && q->n == q->cap) {
		/* reuse the space of the visited ones before growing */
		memmove(q->v, q->v + q->head, (q->n - q->head) * sizeof(*q->v));
		q->n -= q->head;
		q->head = 0;
	}
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct dfsr_uid *v = realloc(q->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		q->v = v;
		q->cap = cap;
	}
	q->v[q->n++] = *uid;
	return 0;
}

struct walk {
	struct journal *j;
	const struct db_snapshot *snap;
	const struct version_vector *partner;
	replica_update_fn fn;
	void *arg;
	struct outbound_skips *skips;
	struct ob_dirs dirs;
	bool rest; /* second pass: the objects the first one left (walk_live()) */
};

/* The first pass sends directories and the files of at least OUTBOUND_EARLY bytes. */
static bool walk_early(const struct record *r)
{
	return r->type == RECORD_DIR || (r->type == RECORD_FILE && r->size >= OUTBOUND_EARLY);
}

/* One child of the names index: in the first pass queue it if a directory; send it if the
 * partner lacks it and it belongs to this pass. */
static int walk_child(struct walk *w, struct uid_queue *q, const uint8_t *val, size_t vlen)
{
	struct dfsr_uid uid;
	struct record rec;
	int rc;

	if (vlen != DFSR_UID_LEN)
		return 0; /* not an index value: skipped */
	memcpy(uid.b, val, DFSR_UID_LEN);
	record_init(&rec);
	rc = snap_record(w->j, w->snap, &uid, &rec);
	if (rc == -ENOENT || rc == -EBADMSG)
		return 0; /* index ahead of its record cannot happen in one snapshot; be safe */
	if (rc < 0)
		return rc;
	if (rec.tombstone)
		goto out_release;
	if (rec.type == RECORD_DIR && !w->rest)
		rc = queue_push(q, &rec.uid);
	if (rc == 0 && walk_early(&rec) != w->rest && !partner_has(w->partner, &rec))
		rc = emit(w->j, &rec, w->fn, w->arg, w->skips, &w->dirs);
out_release:
	record_release(&rec);
	return rc;
}

/*
 * Every live record, breadth-first from the root (parents before children), in two
 * passes over the directories: the first sends the directories and the large files, the
 * second the rest. A new member thus learns of its large files at once, not after every
 * small file before them in the walk (a partner takes a window of updates at a time, see
 * net/session.h), so their staging and transfer overlap the small files'.
 */
static int walk_live(struct walk *w)
{
	struct uid_queue q = { 0 };
	struct db_iter *it;
	int rc;

	it = db_iter_new(journal__db(w->j), w->snap, DB_CF_NAMES);
	if (!it)
		return -ENOMEM;
	rc = queue_push(&q, journal_root_uid(w->j));
	for (;;) {
		struct dfsr_uid dir;

		if (q.head == q.n && !w->rest) {
			w->rest = true; /* second pass, over the directories the first one found */
			q.head = 0;
		}
		if (rc != 0 || q.head == q.n)
			break;
		dir = q.v[q.head++];
		for (db_iter_seek(it, dir.b, DFSR_UID_LEN); rc == 0 && db_iter_valid(it);
		     db_iter_next(it)) {
			size_t klen, vlen;
			const uint8_t *k = db_iter_key(it, &klen), *v = db_iter_value(it, &vlen);

			if (klen <= DFSR_UID_LEN || memcmp(k, dir.b, DFSR_UID_LEN) != 0)
				break;
			rc = walk_child(w, &q, v, vlen);
		}
		if (rc == 0)
			rc = db_iter_status(it);
	}
	free(q.v);
	db_iter_free(it);
	return rc;
}

struct tomb {
	uint64_t seq;
	struct dfsr_uid uid;
};

struct tomb_list {
	struct tomb *v;
	size_t n, cap;
};

static int tomb_add(struct tomb_list *t, uint64_t seq, const struct dfsr_uid *uid)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct tomb *v = realloc(t->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n].seq = seq;
	t->v[t->n].uid = *uid;
	t->n++;
	return 0;
}

static int cmp_tomb(const void *a, const void *b)
{
	const struct tomb *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return dfsr_uid_cmp(&x->uid, &y->uid);
}

/* The (seq, uid) of every tombstone in @w->snap that the partner lacks. */
static int tombs_collect(struct walk *w, struct tomb_list *t)
{
	struct db_iter *it = db_iter_new(journal__db(w->j), w->snap, DB_CF_RECORDS);
	int rc = 0;

	if (!it)
		return -ENOMEM;
	for (db_iter_seek_first(it); rc == 0 && db_iter_valid(it); db_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = db_iter_key(it, &klen), *v = db_iter_value(it, &vlen);
		struct record rec;

		if (klen != DFSR_UID_LEN)
			continue;
		record_init(&rec);
		rc = decode_stored(w->j, k, v, vlen, &rec);
		if (rc == 0 && rec.tombstone && !partner_has(w->partner, &rec))
			rc = tomb_add(t, rec.seq, &rec.uid);
		if (rc == -EBADMSG)
			rc = 0;
		record_release(&rec);
	}
	if (rc == 0)
		rc = db_iter_status(it);
	db_iter_free(it);
	return rc;
}

/* Every tombstone the partner lacks, in the order they were made. */
static int walk_tombstones(struct walk *w)
{
	struct tomb_list t = { 0 };
	int rc = tombs_collect(w, &t);

	if (rc == 0 && t.n)
		qsort(t.v, t.n, sizeof(*t.v), cmp_tomb);
	for (size_t i = 0; rc == 0 && i < t.n; i++) {
		struct record rec;

		record_init(&rec);
		rc = snap_record(w->j, w->snap, &t.v[i].uid, &rec);
		if (rc == 0)
			rc = emit(w->j, &rec, w->fn, w->arg, w->skips, &w->dirs);
		else if (rc == -ENOENT || rc == -EBADMSG)
			rc = 0;
		record_release(&rec);
	}
	free(t.v);
	return rc;
}

int outbound_missing(struct journal *j, const struct version_vector *partner, uint64_t *next_seq,
		     struct outbound_skips *skips, replica_update_fn fn, void *arg)
{
	struct db *db = journal__db(j);
	struct walk w = { .j = j, .partner = partner, .fn = fn, .arg = arg, .skips = skips };
	struct db_snapshot *snap = db_snapshot_new(db);
	int rc;

	if (!snap)
		return -ENOMEM;
	w.snap = snap;
	rc = snap_next_seq(j, snap, next_seq);
	if (rc == 0)
		rc = walk_live(&w);
	if (rc == 0)
		rc = walk_tombstones(&w);
	db_snapshot_free(db, snap);
	ob_dirs_release(&w.dirs);
	return rc;
}

/* ---- following the journal ------------------------------------------------------------- */

struct follow {
	struct journal *j;
	const struct version_vector *partner;
	replica_update_fn fn;
	void *arg;
	struct outbound_skips *skips;
	struct dfsr_uid_set seen; /* the UIDs handled in this call */
	struct ob_dirs dirs;
	uint64_t last;
	bool visited;
};

/* Mark @uid handled and send its current record if the partner lacks it. */
static int follow_send(struct follow *f, const struct dfsr_uid *uid)
{
	struct record rec;
	int rc = dfsr_uid_set_add(&f->seen, uid);

	if (rc < 0)
		return rc;
	record_init(&rec);
	rc = journal__get(f->j, uid, &rec);
	if (rc == -ENOENT)
		return 0; /* purged since */
	if (rc == 0 && !partner_has(f->partner, &rec))
		rc = emit(f->j, &rec, f->fn, f->arg, f->skips, &f->dirs);
	record_release(&rec);
	return rc;
}

/*
 * Before a live record goes out, its ancestors not yet handled in this call go out, root
 * first, so a receiver meets a directory before what was moved or created in it even when
 * the journal names them the other way round (a file made, then a directory, then the
 * file moved into it). The chain is walked up to the first ancestor already handled.
 */
static int follow_ancestors(struct follow *f, const struct dfsr_uid *parent)
{
	struct uid_queue up = { 0 };
	struct dfsr_uid cur = *parent;
	int rc = 0;

	for (int depth = 0; rc == 0 && !dfsr_uid_equal(&cur, journal_root_uid(f->j)) &&
			    !dfsr_uid_set_has(&f->seen, &cur);
	     depth++) {
		struct record rec;

		if (depth > OB_DEPTH_MAX) {
			rc = -EIO; /* a cycle in the parent chain */
			break;
		}
		rc = queue_push(&up, &cur);
		record_init(&rec);
		if (rc == 0)
			rc = journal__get(f->j, &cur, &rec);
		if (rc == 0)
			cur = rec.parent;
		record_release(&rec);
	}
	if (rc == -ENOENT)
		rc = 0; /* the chain changed meanwhile; the receiver waits for the parent */
	while (rc == 0 && up.n > 0)
		rc = follow_send(f, &up.v[--up.n]);
	free(up.v);
	return rc;
}

static int follow_entry(void *arg, const struct journal_entry_info *e)
{
	struct follow *f = arg;
	struct record rec;
	int rc;

	f->last = e->seq;
	f->visited = true;
	if (dfsr_uid_is_zero(&e->uid) || dfsr_uid_set_has(&f->seen, &e->uid))
		return 0;
	record_init(&rec);
	rc = journal__get(f->j, &e->uid, &rec);
	if (rc == 0 && !rec.tombstone)
		rc = follow_ancestors(f, &rec.parent);
	record_release(&rec);
	if (rc == 0 || rc == -ENOENT)
		rc = follow_send(f, &e->uid);
	return rc;
}

int outbound_changes(struct journal *j, uint64_t from, size_t max,
		     const struct version_vector *partner, uint64_t *next_seq,
		     struct outbound_skips *skips, replica_update_fn fn, void *arg)
{
	struct follow f = { .j = j, .partner = partner, .fn = fn, .arg = arg, .skips = skips };
	int rc;

	rc = journal_list(j, from, max, follow_entry, &f);
	if (rc == 0)
		*next_seq = f.visited ? f.last + 1 : from;
	else if (f.visited)
		*next_seq = f.last; /* stopped in this entry: resume with it */
	else
		*next_seq = from;
	dfsr_uid_set_release(&f.seen);
	ob_dirs_release(&f.dirs);
	return rc;
}

int outbound_again(struct journal *j, const struct dfsr_uid *uids, size_t n,
		   const struct version_vector *partner, struct outbound_skips *skips,
		   replica_update_fn fn, void *arg)
{
	struct follow f = { .j = j, .partner = partner, .fn = fn, .arg = arg, .skips = skips };
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		struct record rec;

		if (dfsr_uid_set_has(&f.seen, &uids[i]))
			continue;
		record_init(&rec);
		rc = journal__get(j, &uids[i], &rec);
		if (rc == 0 && !rec.tombstone)
			rc = follow_ancestors(&f, &rec.parent);
		record_release(&rec);
		if (rc == 0 || rc == -ENOENT)
			rc = follow_send(&f, &uids[i]);
	}
	dfsr_uid_set_release(&f.seen);
	ob_dirs_release(&f.dirs);
	return rc;
}

/* ---- backlog ---------------------------------------------------------------------------- */

int outbound_backlog(struct journal *j, const struct version_vector *partner, uint64_t *count,
		     size_t list_max, outbound_record_fn fn, void *arg)
{
	struct db_iter *it = db_iter_new(journal__db(j), NULL, DB_CF_RECORDS);
	size_t listed = 0;
	int rc = 0;

	*count = 0;
	if (!it)
		return -ENOMEM;
	for (db_iter_seek_first(it); rc == 0 && db_iter_valid(it); db_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = db_iter_key(it, &klen), *v = db_iter_value(it, &vlen);
		struct record rec;

		if (klen != DFSR_UID_LEN)
			continue;
		record_init(&rec);
		rc = decode_stored(j, k, v, vlen, &rec);
		if (rc == 0 && !partner_has(partner, &rec)) {
			(*count)++;
			if (fn && listed < list_max) {
				rc = fn(arg, &rec);
				listed++;
			}
		}
		if (rc == -EBADMSG)
			rc = 0;
		record_release(&rec);
	}
	if (rc == 0)
		rc = db_iter_status(it);
	db_iter_free(it);
	return rc;
}

/* ---- staging ---------------------------------------------------------------------------- */

/* Whether (@uid, @gvsn) is the current version of a live file. Return: 0, -ESTALE, -EIO,
 * -ENOMEM. */
static int check_current(struct journal *j, const struct dfsr_uid *uid,
			 const struct version_gvsn *gvsn, uint8_t content[HASH_LEN])
{
	struct record rec;
	int rc;

	record_init(&rec);
	rc = journal__get(j, uid, &rec);
	if (rc == -ENOENT)
		return -ESTALE;
	if (rc < 0)
		return rc;
	if (rec.tombstone || rec.type != RECORD_FILE || rec.gvsn.counter != gvsn->counter ||
	    !dfsr_uid_equal(&rec.gvsn.db, &gvsn->db))
		rc = -ESTALE;
	else if (content)
		memcpy(content, rec.content, HASH_LEN);
	record_release(&rec);
	return rc;
}

/* Open record @uid's file for reading, never blocking and never following a link; its
 * stat into @st. */
static int open_data(struct journal *j, const struct dfsr_uid *uid, struct stat *st)
{
	int fd;

	fd = open_object(j, uid, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOATIME);
	if (fd == -EPERM)
		fd = open_object(j, uid, O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return fd == -EWOULDBLOCK ? -EAGAIN : fd; /* a lease holder is writing */
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

int outbound_serve(struct journal *j, struct stage *stage, const struct dfsr_uid *uid,
		   const struct version_gvsn *gvsn, uint64_t mem_max, struct stage_version **out)
{
	struct stage_key k = { .uid = *uid, .gvsn = *gvsn };
	uint8_t content[HASH_LEN];
	struct stat st;
	int fd, rc;

	*out = NULL;
	rc = check_current(j, uid, gvsn, content);
	if (rc < 0)
		return rc;
	if (stage_has(stage, &k))
		return stage_version_open(stage, &k, out);
	fd = open_data(j, uid, &st);
	if (fd < 0) {
		rc = fd == -ENOENT ? -EAGAIN : fd;
	} else {
		if ((uint64_t)st.st_size <= mem_max)
			rc = stage_memory(&k, fd, content, out);
		else if ((rc = stage_file(stage, &k, fd, content)) == 0)
			rc = stage_version_open(stage, &k, out);
		close(fd);
	}
	if (rc == -EAGAIN) {
		/* Changed or gone: if the journal already knows, the version is superseded. */
		int cur = check_current(j, uid, gvsn, NULL);

		if (cur == -ESTALE)
			rc = cur;
	}
	return rc;
}
