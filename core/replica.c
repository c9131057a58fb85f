/*
 * replica.c - the downstream side of replication (core/replica.h): updates that arrive
 * from partners are decided by the rules of docs/conflicts.md and applied to the local
 * path and the database.
 *
 * Every decision is taken under the journal's mutex (journal__lock()), so no local change
 * is recorded between reading the local record and writing the new one: read the local
 * record L of the update's UID, compare vectors (§2), resolve a conflict (§3, §5, §6), check
 * the parent (unknown: WAIT; a tombstone: §7 resurrection) and the name (another UID: §4),
 * then change the disk and commit one batch. Disk changes come first and are ordered so
 * that a crash loses nothing: a loser is renamed into ConflictAndDeleted before anything
 * takes its name, new data is fsync'd in Installing before it is renamed into place, and
 * directories are fsync'd after. If the process dies before the batch, the consistency
 * scan sees the disk as a local change, which is safe (the versions meet again by §2/§3).
 *
 * What is slow stays outside the mutex: replica_install() applies the metadata to the
 * assembled file and hashes it (reading all its data) before taking the lock. Under the
 * lock only metadata-sized work happens (renames, mkdir, a link, hashing a directory or a
 * file whose content digest is reused). The filesystem's invalidate callback is called
 * after the lock is released: it may wait on the kernel, which may wait on a FUSE
 * operation, which may wait on the journal.
 *
 * Objects are reached through their directory, opened component by component from the
 * journal's root descriptor with O_NOFOLLOW|O_DIRECTORY (never by path through the
 * mount, never through a symbolic link).
 *
 * Where the rules leave a member holding something no other member will ever be sent,
 * the resolution is made a new local version, so that it replicates and every member
 * converges (the order-independence test in tests/unit/test_replica.c found these):
 *  - §5, a local live version kept against a concurrent delete: three versions P, X, T
 *    where P beats X (§3), X outlives T (§5) and T dominates P would otherwise settle
 *    differently depending on arrival order;
 *  - §4, the losing UID's tombstone: a name conflict may exist on one member only (the
 *    winner's move away, or the loser's, has not arrived yet); a quiet tombstone there
 *    would travel to third members under the loser's own GVSN while its creator keeps it
 *    live. Two members resolving the same conflict make two deletes, which §6 settles.
 *  - §4 directory merges: the loser's tombstone and its children, re-parented under the
 *    winner, are new versions too (a later delete of the winner by a member that never
 *    saw the merge must not count the moved children among what it saw, §7.1).
 *  - §7.1, what a directory's tombstone deletes while the directory comes back: its
 *    deleter may not hold what its vector claims (test_resurrection_deletes_replicate).
 * A dead parent (§7.2) whose name is held by a winning directory counts as merged into it
 * (the incoming object is placed there as a new version, as a merge moves children); a dead
 * parent whose name a file won takes the incoming object with it (a delete).
 *
 * Sessions send current records, parents first, not each change in order, so a member
 * may meet a state that exists nowhere else; the rules must not answer it with new
 * versions (the other members would answer those in turn, by §7, forever):
 *  - §4.2, a name held by a version the update's maker had seen (the update's vector, as
 *    made, contains the holder's GVSN): the holder has moved since; the update WAITs for
 *    that move instead of settling a name conflict that exists on this member only.
 *  - §4.1, a directory whose install would close a cycle of parents: if its maker had seen
 *    a version on the loop, it WAITs for that directory's move; otherwise two concurrent
 *    moves met, and the directory of the latest version on the loop goes to the root as
 *    "<name>-{<UID>}", a new version every member that meets the loop makes alike
 *    (break_cycle()). A rename into its own subtree never reaches the disk (EINVAL,
 *    retried forever).
 *  - §7.1, a directory's tombstone while the directory holds a child directory with entries
 *    that its deleter had seen: the deleter moved that child out or deleted it, and the
 *    tombstone WAITs for that newer version rather than bury what is below the child at
 *    versions live elsewhere (seen_child()).
 *
 * §11 (read-only folders): a version the scan reverted (marked in the journal) is installed
 * again when it arrives, although the member knows it; the scan preserves what it found
 * through replica__preserve_local().
 *
 * Known limits (version 0.2): a wait of §4.2 or §4.1 ends when the holder's newer version
 * arrives, or when the member that made the update meets the real conflict and settles it
 * (its new versions arrive); cycles of such waits are broken where they go through name
 * holders, others only by the one-minute bound of a wait (stale_wait()). A merge whose two
 * directories hold entries of the same name
 * settles them by §4 one level deep (the losing entry preserved whole). A local file with
 * the same content as an update is found only at the update's own UID or, during initial
 * sync, at its path (there is no index by content digest yet), so anything else is
 * fetched (the caller's stage_asm_seed() can still reuse local chunks).
 */
#include "core/replica.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/config.h"
#include "core/db.h"
#include "core/event.h"
#include "core/hash.h"
#include "core/internal.h"
#include "core/layout.h"
#include "core/space.h"

#define REPLICA_DEPTH_MAX 2048 /* parent-chain and subtree walks */
#define REPLICA_INVAL_MAX 4
#define REPLICA_WAITED    8                           /* UIDs remembered for event 4302 */
#define REPLICA_STALE     16                          /* §4.1, §4.2 waits remembered */
#define REPLICA_STALE_NS  (120 * (int64_t)1000000000) /* a wait not offered since: over */
#define REPLICA_STALE_MAX (60 * (int64_t)1000000000)  /* a wait this long: rules as is */
#define REPLICA_XLIST_MAX (1u << 20)                  /* bytes of a local xattr name list we read */
#define REPLICA_BATCH_MAX 32 /* installs decided under one hold of the lock */

struct replica {
	struct journal *j;
	struct stage *stage;
	replica_invalidate_fn invalidate;
	replica_busy_fn busy;
	replica_preserved_fn preserved;
	replica_adopted_fn adopted;
	void *arg;
	int private_fd;    /* DfsrPrivate */
	int installing_fd; /* DfsrPrivate/Installing */
	int conflict_fd;   /* DfsrPrivate/ConflictAndDeleted */
	int preexist_fd;   /* DfsrPrivate/PreExisting */

	/* UIDs whose install waited for a writer lately (event 4302 once a minute each);
	 * under the journal's lock */
	struct {
		struct dfsr_uid uid;
		int64_t mono_ns;
	} waited[REPLICA_WAITED];

	size_t waited_next;

	/* §4.1, §4.2: updates waiting for a version their maker had seen to arrive (under the
	 * journal's lock): @uid's update waits for @holder's, since @since_ns, last offered
	 * at @mono_ns; @name: @holder holds the name @uid's update needs */
	struct {
		struct dfsr_uid uid, holder;
		int64_t since_ns, mono_ns;
		bool name;
	} stale[REPLICA_STALE];

	size_t stale_next;

	/* §12: the UIDs partners offered during a stale initial sync (stale_cleanup()) */
	pthread_mutex_t seen_lock;
	struct dfsr_uid_set seen;

	/* installs waiting to be decided in a batch (install_batched()) */
	pthread_mutex_t batch_lock;
	pthread_cond_t batch_cond;
	struct batch_job *batch_head, **batch_tail;
	bool batching; /* a thread is deciding a batch */
};

/* One entry for the invalidate callback, called after the lock is released. */
struct inval {
	struct stat parent;
	struct stat obj;
	bool have_obj;
	char name[RECORD_NAME_MAX + 1];
};

/* One decision (lock held from start to end). */
struct ctx {
	struct replica *r;
	struct journal *j;
	const struct replica_update *u;
	int fd;                            /* assembled data (replica_install()) or -1 */
	char asm_name[STAGE_ASM_NAME_LEN]; /* its name in Installing */
	bool placed;                       /* the data was renamed into place */
	enum replica_verdict v;
	struct inval inv[REPLICA_INVAL_MAX];
	size_t ninv;
	/* install_batched(): a new file's directory fsync and record write may be deferred to
	 * the end of the batch (place_new_data()); then deferred is set, defer_dfd is a
	 * descriptor of that directory and defer_rec the record to write */
	bool batched, deferred;
	int defer_dfd;
	struct record defer_rec;
	bool newver; /* §4.1: the update is placed as a new local version (a cycle broken) */
	bool moved;  /* resurrect() moved the local object aside, to moved_name */
	char moved_name[RECORD_NAME_MAX + 1];
};

/* A list of UIDs (children of a directory). */
struct uid_list {
	struct dfsr_uid *v;
	size_t n;
	size_t cap;
};

/* ---- updates ------------------------------------------------------------------------ */

void replica_update_init(struct replica_update *u)
{
	memset(u, 0, sizeof(*u));
	record_init(&u->rec);
}

void replica_update_release(struct replica_update *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->nxattrs; i++) {
		free(u->xattrs[i].name);
		free(u->xattrs[i].value);
	}
	free(u->xattrs);
	free(u->link_target);
	record_release(&u->rec);
	replica_update_init(u);
}

int replica_update_check(const struct replica_update *u)
{
	size_t total = 0;

	if (u->nxattrs > REPLICA_XATTR_MAX || (u->nxattrs && !u->xattrs))
		return -EBADMSG;
	for (size_t i = 0; i < u->nxattrs; i++) {
		const struct replica_xattr *x = &u->xattrs[i];
		size_t nlen;

		if (!x->name)
			return -EBADMSG;
		nlen = strnlen(x->name, XATTR_NAME_MAX + 1);
		if (nlen == 0 || nlen > XATTR_NAME_MAX || hash_xattr_excluded(x->name))
			return -EBADMSG;
		if ((x->len && !x->value) || x->len > HASH_XATTR_MAX)
			return -EBADMSG;
		/* sorted by name, no duplicates (the hash's order) */
		if (i && strcmp(u->xattrs[i - 1].name, x->name) >= 0)
			return -EBADMSG;
		total += nlen + x->len;
		if (total > REPLICA_XATTR_BYTES)
			return -EBADMSG;
	}
	if (!u->rec.tombstone && u->rec.type == RECORD_LINK) {
		size_t n;

		if (!u->link_target)
			return -EBADMSG;
		n = strnlen(u->link_target, REPLICA_LINK_MAX + 1);
		if (n == 0 || n > REPLICA_LINK_MAX)
			return -EBADMSG;
	} else if (u->link_target) {
		return -EBADMSG;
	}
	return 0;
}

/* ---- open and close ---------------------------------------------------------------- */

#define COPY_PREFIX ".dfsr-copy-" /* replace_by_copy()'s temporary names */

/* Remove what a crash left of replace_by_copy() directly in @dfd. Best effort. */
static void sweep_copies(int dfd)
{
	DIR *d = dfsr_opendir_at(dfd, ".");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, COPY_PREFIX, strlen(COPY_PREFIX)) == 0)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

static int open_private_dir(int parent, const char *name, int *out)
{
	*out = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return *out < 0 ? -errno : 0;
}

int replica_new(const struct replica_opts *o, struct replica **out)
{
	struct replica *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	r->j = o->j;
	r->stage = o->stage;
	r->invalidate = o->invalidate;
	r->busy = o->busy;
	r->preserved = o->preserved;
	r->adopted = o->adopted;
	r->arg = o->arg;
	r->installing_fd = r->conflict_fd = r->preexist_fd = -1;
	pthread_mutex_init(&r->batch_lock, NULL);
	pthread_mutex_init(&r->seen_lock, NULL);
	pthread_cond_init(&r->batch_cond, NULL);
	r->batch_tail = &r->batch_head;
	rc = open_private_dir(journal_root_fd(o->j), LAYOUT_PRIVATE, &r->private_fd);
	if (rc < 0)
		goto out_free;
	rc = open_private_dir(r->private_fd, LAYOUT_INSTALLING, &r->installing_fd);
	if (rc == 0)
		rc = open_private_dir(r->private_fd, LAYOUT_CONFLICT, &r->conflict_fd);
	if (rc == 0)
		rc = open_private_dir(r->private_fd, LAYOUT_PREEXISTING, &r->preexist_fd);
	if (rc < 0)
		goto out_close;
	sweep_copies(r->installing_fd);
	sweep_copies(r->conflict_fd);
	sweep_copies(r->preexist_fd);
	*out = r;
	return 0;
out_close:
	replica_free(r);
	return rc;
out_free:
	free(r);
	return rc;
}

void replica_free(struct replica *r)
{
	if (!r)
		return;
	if (r->preexist_fd >= 0)
		close(r->preexist_fd);
	if (r->conflict_fd >= 0)
		close(r->conflict_fd);
	if (r->installing_fd >= 0)
		close(r->installing_fd);
	if (r->private_fd >= 0)
		close(r->private_fd);
	pthread_cond_destroy(&r->batch_cond);
	pthread_mutex_destroy(&r->batch_lock);
	pthread_mutex_destroy(&r->seen_lock);
	dfsr_uid_set_release(&r->seen);
	free(r);
}

int replica_installing_fd(const struct replica *r)
{
	return r->installing_fd;
}

/* ---- small helpers ----------------------------------------------------------------- */

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static struct timespec ns_ts(int64_t ns)
{
	struct timespec t;

	t.tv_sec = (time_t)(ns / 1000000000);
	t.tv_nsec = (long)(ns % 1000000000);
	if (t.tv_nsec < 0) {
		t.tv_sec--;
		t.tv_nsec += 1000000000;
	}
	return t;
}

/* The local stat fields of a record (what the consistency scan compares). */
static void take_stat(struct record *n, const struct stat *st)
{
	n->size = n->type == RECORD_DIR ? 0 : (uint64_t)st->st_size;
	n->mode = (uint32_t)st->st_mode & 07777u;
	n->owner = st->st_uid;
	n->group = st->st_gid;
	n->mtime_ns = ts_ns(&st->st_mtim);
	n->ctime_ns = ts_ns(&st->st_ctim);
}

static void take_record_stat(struct record *n, const struct record *l)
{
	n->size = l->size;
	n->mode = l->mode;
	n->owner = l->owner;
	n->group = l->group;
	n->mtime_ns = l->mtime_ns;
	n->ctime_ns = l->ctime_ns;
}

/* An untrusted name made safe for a log line (no quotes, no control bytes). */
static void safe_name(const char *name, char out[static RECORD_NAME_MAX + 1])
{
	size_t i = 0;

	for (; name[i] && i < RECORD_NAME_MAX; i++) {
		unsigned char ch = (unsigned char)name[i];

		out[i] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
	}
	out[i] = '\0';
}

static void refuse(struct ctx *c, const struct record *rec, const char *why)
{
	char hex[DFSR_UID_HEX_LEN], name[RECORD_NAME_MAX + 1];

	dfsr_uid_hex(&rec->uid, hex);
	safe_name(rec->name, name);
	journal_event(c->j, EV_UPDATE_REFUSED, "uid=%s name=\"%s\" reason=\"%s\"", hex, name, why);
	c->v = REPLICA_REFUSED;
}

static void install_failed(struct ctx *c, const struct record *rec, const char *what, int err)
{
	char hex[DFSR_UID_HEX_LEN], name[RECORD_NAME_MAX + 1];

	dfsr_uid_hex(&rec->uid, hex);
	safe_name(rec->name, name);
	journal_event(c->j, EV_INSTALL_FAILED, "uid=%s name=\"%s\" op=%s error=\"%s\"", hex, name,
		      what, dfsr_strerror(err));
}

/* @obj: the object's stat when the caller has it (it is at @name now), else NULL. */
static void add_inval_st(struct ctx *c, int dfd, const char *name, const struct stat *obj)
{
	struct inval *iv;

	if (!c->r->invalidate || c->ninv == REPLICA_INVAL_MAX)
		return;
	iv = &c->inv[c->ninv];
	if (fstat(dfd, &iv->parent) < 0)
		return;
	snprintf(iv->name, sizeof(iv->name), "%s", name);
	if (obj)
		iv->obj = *obj;
	iv->have_obj = obj || fstatat(dfd, name, &iv->obj, AT_SYMLINK_NOFOLLOW) == 0;
	c->ninv++;
}

static void add_inval(struct ctx *c, int dfd, const char *name)
{
	add_inval_st(c, dfd, name, NULL);
}

static void run_invals(struct ctx *c)
{
	for (size_t i = 0; i < c->ninv; i++)
		c->r->invalidate(c->r->arg, &c->inv[i].parent, c->inv[i].name,
				 c->inv[i].have_obj ? &c->inv[i].obj : NULL);
	c->ninv = 0;
}

static bool is_busy(struct ctx *c, int dfd, const char *name)
{
	struct stat st;

	if (!c->r->busy || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	return c->r->busy(c->r->arg, &st);
}

/* §8: the object @rec is open for writing: wait, and say so once a minute (4302). */
static void busy_wait(struct ctx *c, const struct record *rec)
{
	int64_t now = dfsr_mono_ns();
	struct replica *r = c->r;
	char hex[DFSR_UID_HEX_LEN], name[RECORD_NAME_MAX + 1];

	c->v = REPLICA_BUSY;
	for (size_t i = 0; i < REPLICA_WAITED; i++)
		if (dfsr_uid_equal(&r->waited[i].uid, &rec->uid) &&
		    now - r->waited[i].mono_ns < 60 * (int64_t)1000000000)
			return;
	r->waited[r->waited_next].uid = rec->uid;
	r->waited[r->waited_next].mono_ns = now;
	r->waited_next = (r->waited_next + 1) % REPLICA_WAITED;
	dfsr_uid_hex(&rec->uid, hex);
	safe_name(rec->name, name);
	journal_event(c->j, EV_SHARING_VIOLATION, "uid=%s name=\"%s\" op=install", hex, name);
}

/*
 * §8 for a directory: a regular file somewhere below @name in @dfd (@name included) is open
 * for writing through the mount, a recorded file or a create not journaled yet. A delete of
 * the directory must wait for it like a delete of the file itself: moved away with the
 * directory, the writer's change would never replicate. Never follows links.
 */
static bool busy_below(struct ctx *c, int dfd, const char *name, int depth)
{
	struct dirent *de;
	bool busy = false;
	struct stat st;
	DIR *d;
	int fd;

	if (!c->r->busy || depth > REPLICA_DEPTH_MAX ||
	    fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	if (S_ISREG(st.st_mode))
		return c->r->busy(c->r->arg, &st);
	if (!S_ISDIR(st.st_mode))
		return false;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	while (!busy && (de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			busy = busy_below(c, dirfd(d), de->d_name, depth + 1);
	closedir(d);
	return busy;
}

static int fsync_dir(int dfd)
{
	return fsync(dfd) < 0 ? -errno : 0;
}

static int open_root(struct ctx *c, int *out)
{
	int fd = openat(journal_root_fd(c->j), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	*out = fd;
	return 0;
}

/*
 * Open the directory of record @uid (the root, or a live directory) by its path in the
 * names index, one component at a time, never following a symbolic link.
 * Return: 0, -ENOENT/-ENOTDIR if the disk does not match the database, -EIO, -ENOMEM.
 */
static int open_dir(struct ctx *c, const struct dfsr_uid *uid, int *out)
{
	struct dfsr_buf path;
	char *save = NULL, *comp;
	int fd, rc;

	fd = journal_root_fd(c->j); /* borrowed until the first component is open */
	if (dfsr_uid_equal(uid, journal_root_uid(c->j)))
		return open_root(c, out);
	dfsr_buf_init(&path);
	rc = journal_path(c->j, uid, &path);
	for (comp = rc == 0 ? strtok_r(path.p, "/", &save) : NULL; comp;
	     comp = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (next < 0)
			rc = -errno;
		if (fd != journal_root_fd(c->j))
			close(fd);
		fd = next;
		if (rc < 0)
			break;
	}
	dfsr_buf_release(&path);
	if (rc < 0)
		return rc;
	if (fd == journal_root_fd(c->j)) /* an empty path */
		return open_root(c, out);
	*out = fd;
	return 0;
}

static bool same_place(const struct record *a, const struct record *b)
{
	return dfsr_uid_equal(&a->parent, &b->parent) && strcmp(a->name, b->name) == 0;
}

/* §3: true if @a wins over @b (later change time, then larger database id). */
static bool update_wins(const struct record *a, const struct record *b)
{
	if (a->change_time_ns != b->change_time_ns)
		return a->change_time_ns > b->change_time_ns;
	return version_gvsn_cmp(&a->gvsn, &b->gvsn) > 0;
}

/* §4: true if @a keeps the name against @b (created first, then larger UID, then GVSN). */
static bool name_wins(const struct record *a, const struct record *b)
{
	int d;

	if (a->create_time_ns != b->create_time_ns)
		return a->create_time_ns < b->create_time_ns;
	d = dfsr_uid_cmp(&a->uid, &b->uid);
	if (d)
		return d > 0;
	return version_gvsn_cmp(&a->gvsn, &b->gvsn) > 0;
}

/* True if a version with vector @v has been seen by vector @by. */
static bool dominated_by(const struct version_vector *v, const struct version_vector *by)
{
	enum version_cmp cmp = version_vector_compare(by, v);

	return cmp == VERSION_EQUAL || cmp == VERSION_DOMINATES;
}

static void uid_list_release(struct uid_list *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* The UIDs indexed under directory @dir (live children). */
static int list_children(struct ctx *c, const struct dfsr_uid *dir, struct uid_list *out)
{
	struct db_iter *it = db_iter_new(journal__db(c->j), NULL, DB_CF_NAMES);
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!it)
		return -ENOMEM;
	for (db_iter_seek(it, dir->b, DFSR_UID_LEN); db_iter_valid(it); db_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = db_iter_key(it, &klen), *v = db_iter_value(it, &vlen);

		if (klen < DFSR_UID_LEN || memcmp(k, dir->b, DFSR_UID_LEN) != 0)
			break;
		if (vlen != DFSR_UID_LEN)
			continue;
		if (out->n == out->cap) {
			size_t cap = out->cap ? out->cap * 2 : 16;
			struct dfsr_uid *p = realloc(out->v, cap * sizeof(*p));

			if (!p) {
				rc = -ENOMEM;
				break;
			}
			out->v = p;
			out->cap = cap;
		}
		memcpy(out->v[out->n++].b, v, DFSR_UID_LEN);
	}
	if (rc == 0)
		rc = db_iter_status(it);
	db_iter_free(it);
	if (rc < 0)
		uid_list_release(out);
	return rc;
}

/* How bury_tree() records what is gone. */
enum bury {
	BURY_QUIET = 0,  /* tombstones keeping their GVSNs (every member does the same) */
	BURY_DROP = 1,   /* no record at all (initial sync: never sent) */
	BURY_DELETE = 2, /* tombstones as new local versions (replicated like a delete) */
};

/* Record @uid and everything live below it as gone, children first. */
static int bury_tree(struct ctx *c, const struct dfsr_uid *uid, enum bury how, int depth)
{
	struct uid_list kids;
	struct record rec;
	int rc;

	if (depth > REPLICA_DEPTH_MAX)
		return -EIO;
	rc = list_children(c, uid, &kids);
	for (size_t i = 0; rc == 0 && i < kids.n; i++)
		rc = bury_tree(c, &kids.v[i], how, depth + 1);
	uid_list_release(&kids);
	if (rc < 0)
		return rc;
	if (how == BURY_DROP)
		return journal__drop_locked(c->j, uid);
	rc = journal__get(c->j, uid, &rec);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	if (!rec.tombstone) {
		rec.tombstone = true;
		rc = journal__write_locked(c->j, &rec, JOURNAL_OP_DELETE,
					   how == BURY_DELETE ? JOURNAL__NEWVER : 0);
	}
	record_release(&rec);
	return rc;
}

/* ---- metadata ------------------------------------------------------------------------ */

static const struct replica_xattr *find_xattr(const struct replica_update *u, const char *name)
{
	for (size_t i = 0; i < u->nxattrs; i++)
		if (strcmp(u->xattrs[i].name, name) == 0)
			return &u->xattrs[i];
	return NULL;
}

/*
 * Make the xattrs of the object (@fd, or @path with the l* calls when @fd < 0) exactly the
 * update's: set those, remove every other one that the hash covers (dfsr's own and the
 * machine-local ones stay).
 */
static int apply_xattrs(int fd, const char *path, const struct replica_update *u)
{
	char *list = NULL;
	size_t len = 0;
	int rc;

	rc = dfsr_xattr_names(fd, path, false, REPLICA_XLIST_MAX, &list, &len);
	if (rc < 0)
		return rc;
	for (size_t off = 0; off < len; off += strlen(list + off) + 1) {
		const char *name = list + off;

		if (hash_xattr_excluded(name) || find_xattr(u, name))
			continue;
		if ((fd >= 0 ? fremovexattr(fd, name) : lremovexattr(path, name)) < 0 &&
		    errno != ENODATA) {
			rc = -errno;
			goto out_free;
		}
	}
	for (size_t i = 0; i < u->nxattrs; i++) {
		const struct replica_xattr *x = &u->xattrs[i];
		const void *val = x->value ? (const void *)x->value : "";

		if ((fd >= 0 ? fsetxattr(fd, x->name, val, x->len, 0)
			     : lsetxattr(path, x->name, val, x->len, 0)) < 0) {
			rc = -errno;
			goto out_free;
		}
	}
out_free:
	free(list);
	return rc;
}

/* Owner, mode, xattrs and mtime of a regular file or directory open as @fd. */
static int apply_meta_fd(int fd, const struct replica_update *u)
{
	const struct record *rec = &u->rec;
	struct timespec ts[2];
	int rc;

	if (fchown(fd, (uid_t)rec->owner, (gid_t)rec->group) < 0)
		return -errno;
	if (fchmod(fd, (mode_t)rec->mode) < 0) /* after chown, which may clear set-id bits */
		return -errno;
	rc = apply_xattrs(fd, NULL, u);
	if (rc < 0)
		return rc;
	ts[0].tv_sec = 0;
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1] = ns_ts(rec->mtime_ns);
	return futimens(fd, ts) < 0 ? -errno : 0;
}

/* The same for the symbolic link @name in @dfd (no mode: links have none). */
static int apply_meta_link(int dfd, const char *name, const struct replica_update *u)
{
	char path[64 + RECORD_NAME_MAX];
	struct timespec ts[2];
	int rc;

	if (fchownat(dfd, name, (uid_t)u->rec.owner, (gid_t)u->rec.group, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dfd, name);
	if (u->nxattrs) {
		rc = apply_xattrs(-1, path, u);
		if (rc < 0)
			return rc;
	}
	ts[0].tv_sec = 0;
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1] = ns_ts(u->rec.mtime_ns);
	return utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* ---- the ConflictAndDeleted quota (§9) -------------------------------------------- */

struct name_list {
	char **v;
	size_t n;
	size_t cap;
};

static void name_list_release(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int collect_preserved(void *arg, const struct manifest_entry *e)
{
	struct name_list *l = arg;

	if (!e->preserved || !record_name_valid(e->preserved))
		return 0; /* the manifest is untrusted too: never a path */
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		char **p = realloc(l->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n] = strdup(e->preserved);
	if (!l->v[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

/* Bytes of @name in @dfd, everything below it for a directory (never following links). */
static uint64_t tree_size(int dfd, const char *name, int depth)
{
	struct dirent *de;
	uint64_t sum = 0;
	struct stat st;
	DIR *d;
	int fd;

	if (depth > REPLICA_DEPTH_MAX || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	if (!S_ISDIR(st.st_mode))
		return (uint64_t)st.st_size;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return 0;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			sum += tree_size(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	return sum;
}

/*
 * Soft quota of ConflictAndDeleted: past 90 % of conflict_quota, the oldest preserved
 * entries (manifest order) are removed with their manifest entries until usage is under
 * 60 %, except the newest (just preserved). Usage is the size of what the manifest lists.
 * Failures only leave more behind.
 */
static void conflict_cleanup(struct ctx *c)
{
	uint64_t quota = journal_folder(c->j)->conflict_quota, used = 0, *sizes;
	struct name_list l = { 0 };
	size_t removed = 0;

	if (!quota)
		quota = CONFIG_DEFAULT_CONFLICT_QUOTA;
	if (manifest_list(c->r->private_fd, MANIFEST_CONFLICT, collect_preserved, &l) < 0)
		goto out_release;
	sizes = calloc(l.n + 1, sizeof(*sizes));
	if (!sizes)
		goto out_release;
	for (size_t i = 0; i < l.n; i++) {
		sizes[i] = tree_size(c->r->conflict_fd, l.v[i], 0);
		used += sizes[i];
	}
	if (used <= quota / 10 * 9)
		goto out_free;
	/* the entry just preserved stays (the quota is soft) */
	for (size_t i = 0; i + 1 < l.n && used >= quota / 10 * 6; i++) {
		if (dfsr_remove_tree(c->r->conflict_fd, l.v[i]) < 0)
			continue;
		(void)manifest_remove(c->r->private_fd, MANIFEST_CONFLICT, l.v[i]);
		used -= sizes[i];
		removed++;
	}
	(void)fsync_dir(c->r->conflict_fd);
	journal_event(c->j, EV_CONFLICT_CLEANUP, "removed=%zu used=%" PRIu64 " quota=%" PRIu64,
		      removed, used, quota);
out_free:
	free(sizes);
out_release:
	name_list_release(&l);
}

/* ---- preserving (§9) ----------------------------------------------------------------- */

/* "<name>-{<UID>}-v<counter>", the name shortened (bytewise) to fit one component. */
static void preserved_name(const struct record *rec, char out[static RECORD_NAME_MAX + 1])
{
	char guid[DFSR_UID_GUID_LEN], suffix[80];
	size_t keep = strlen(rec->name);
	int n;

	dfsr_uid_guid(&rec->uid, guid);
	n = snprintf(suffix, sizeof(suffix), "-{%s}-v%" PRIu64, guid, rec->gvsn.counter);
	if (keep > RECORD_NAME_MAX - (size_t)n)
		keep = RECORD_NAME_MAX - (size_t)n;
	memcpy(out, rec->name, keep);
	memcpy(out + keep, suffix, (size_t)n + 1);
}

/*
 * §9: the preserved name of @rec that is free in @dst: <name>-{UID}-v<counter>, or where
 * that is taken, <name>~N-{UID}-v<counter> with the smallest N free. It is taken by another
 * version of the same UID with the same counter (made by another database) or by the same
 * version preserved before (§11): a preserve never replaces what an earlier one kept.
 * Return: 0, or -EEXIST past 1000 names.
 */
static int free_preserved_name(int dst, const struct record *rec,
			       char pname[static RECORD_NAME_MAX + 1])
{
	struct record alt = *rec; /* shallow: only its name changes, for preserved_name() */
	struct stat st;

	preserved_name(rec, pname);
	for (unsigned n = 1; fstatat(dst, pname, &st, AT_SYMLINK_NOFOLLOW) == 0; n++) {
		size_t room = RECORD_NAME_MAX - strlen(strrchr(pname, '{') - 1), keep;
		char tag[16];
		int tl;

		if (n > 1000)
			return -EEXIST;
		tl = snprintf(tag, sizeof(tag), "~%u", n);
		keep = strlen(rec->name);
		if (keep > room - (size_t)tl)
			keep = room - (size_t)tl;
		memcpy(alt.name, rec->name, keep);
		memcpy(alt.name + keep, tag, (size_t)tl + 1);
		preserved_name(&alt, pname);
	}
	return 0;
}

static const char *type_word(enum manifest_type t)
{
	return manifest_type_name(t);
}

/* Manifest entry and (for conflicts) event 4412 of a preserved object. */
static void preserved_note(struct ctx *c, const struct record *rec, const char *path,
			   const char *pname, enum manifest_kind kind, enum manifest_type type,
			   const struct version_gvsn *winner)
{
	struct manifest_entry e = {
		.time_ns = dfsr_now_ns(),
		.type = type,
		.path = path,
		.preserved = pname,
		.uid = rec->uid,
		.gvsn_db = rec->gvsn.db,
		.gvsn_counter = rec->gvsn.counter,
		.size = rec->type == RECORD_DIR ? 0 : rec->size,
	};
	int rc = manifest_append(c->r->private_fd, kind, &e);

	if (rc < 0)
		install_failed(c, rec, "manifest", rc);
	if (kind == MANIFEST_CONFLICT)
		conflict_cleanup(c);
	if (winner) {
		char w[DFSR_UID_GUID_LEN], l[DFSR_UID_GUID_LEN];

		dfsr_uid_guid(&winner->db, w);
		dfsr_uid_guid(&rec->gvsn.db, l);
		journal_event(c->j, EV_CONFLICT_RESOLVED,
			      "path=\"%s\" type=%s winner={%s}-v%" PRIu64 " loser={%s}-v%" PRIu64
			      " preserved=\"%s\"",
			      path, type_word(type), w, winner->counter, l, rec->gvsn.counter,
			      pname);
	}
}

/* Best effort: the extended attributes of @sfd onto @ofd. */
static void copy_xattrs(int sfd, int ofd)
{
	char *names = NULL, *val;
	size_t len = 0;

	if (dfsr_xattr_names(sfd, NULL, false, 1u << 16, &names, &len) < 0 || !names)
		goto out;
	val = malloc(1u << 16);
	if (!val)
		goto out;
	for (const char *n = names; n < names + len; n += strlen(n) + 1) {
		ssize_t vlen = fgetxattr(sfd, n, val, 1u << 16);

		if (vlen >= 0)
			(void)fsetxattr(ofd, n, val, (size_t)vlen, 0);
	}
	free(val);
out:
	free(names);
}

/*
 * Replace the regular file @name in @dfd (@st its stat) by a copy of itself: data, xattrs,
 * owner, mode, times. The copy is made in @tmpfd (on the same filesystem) and renamed
 * over @name, so that the name leaves the inode it shared with other hard links.
 * Return: 0 or -errno (@name untouched).
 */
static int replace_by_copy(int dfd, const char *name, int tmpfd, const struct stat *st,
			   struct space *sp)
{
	char tmp[64];
	int sfd, ofd, rc;

	rc = space_take(sp, (uint64_t)st->st_size); /* the database's reserve first */
	if (rc < 0)
		return rc;
	snprintf(tmp, sizeof(tmp), COPY_PREFIX "%ju", (uintmax_t)st->st_ino);
	(void)unlinkat(tmpfd, tmp, 0); /* left by a crash (sweep_copies() at the next start) */
	sfd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (sfd < 0)
		return -errno;
	ofd = openat(tmpfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (ofd < 0) {
		rc = -errno;
		close(sfd);
		return rc;
	}
	rc = dfsr_copy_data(sfd, ofd);
	if (rc == 0) {
		struct timespec times[2] = { st->st_atim, st->st_mtim };

		copy_xattrs(sfd, ofd);
		if (fchown(ofd, st->st_uid, st->st_gid) < 0 ||
		    fchmod(ofd, st->st_mode & 07777) < 0 || futimens(ofd, times) < 0 ||
		    fsync(ofd) < 0)
			rc = -errno;
	}
	close(ofd);
	close(sfd);
	if (rc == 0 && renameat(tmpfd, tmp, dfd, name) < 0)
		rc = -errno;
	if (rc < 0)
		(void)unlinkat(tmpfd, tmp, 0);
	return rc;
}

/*
 * A preserved file must not share its data with a live one: the other names of a hard
 * link stay in the tree, and a write through one of them (or a chmod) would change the
 * preserved version too. So a regular file with more than one link, @name in @dfd or
 * anywhere below it, is replaced by a copy (data, xattrs, owner, mode, times) under the
 * same name. Best effort: where the copy fails, the file stays shared.
 */
static void unshare_links(int dfd, const char *name, int depth, struct space *sp)
{
	struct stat st;

	if (depth > REPLICA_DEPTH_MAX || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = dfsr_opendir_at(dfd, name);
		struct dirent *de;

		if (!d)
			return;
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
				unshare_links(dirfd(d), de->d_name, depth + 1, sp);
		closedir(d);
		return;
	}
	if (S_ISREG(st.st_mode) && st.st_nlink > 1)
		(void)replace_by_copy(dfd, name, dfd, &st, sp);
}

/*
 * The object (@dst, @pname) was just preserved: tell the layer above of every regular file
 * it is or holds (a directory is preserved whole, §9), so that a write or a truncate
 * through a node it still holds for an old name cannot change it. After unshare_links(): a
 * file that had other names is preserved as a copy, which no node knows, while the
 * original stays live under those names.
 */
static void tell_preserved_at(struct ctx *c, int dst, const char *pname, int depth)
{
	struct stat st;

	if (depth > REPLICA_DEPTH_MAX || fstatat(dst, pname, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (S_ISREG(st.st_mode)) {
		c->r->preserved(c->r->arg, &st);
	} else if (S_ISDIR(st.st_mode)) {
		DIR *d = dfsr_opendir_at(dst, pname);
		struct dirent *de;

		if (!d)
			return;
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
				tell_preserved_at(c, dirfd(d), de->d_name, depth + 1);
		closedir(d);
	}
}

static void tell_preserved(struct ctx *c, int dst, const char *pname)
{
	if (c->r->preserved)
		tell_preserved_at(c, dst, pname, 0);
}

/*
 * The object (@dfd, @name), the record @old until now, was just adopted as the record @uid:
 * tell the layer above, so that a node it holds for the object journals on @uid (§9).
 */
static void tell_adopted(struct ctx *c, int dfd, const char *name, const struct dfsr_uid *old,
			 const struct dfsr_uid *uid)
{
	struct stat st;

	if (c->r->adopted && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		c->r->adopted(c->r->arg, &st, old, uid);
}

/*
 * Move the live object of @rec (in directory @dfd) into ConflictAndDeleted or PreExisting
 * under its preserved name, with its manifest entry. A directory moves whole. What moved
 * shares no data with a live file afterwards (unshare_links()), and a file is told of
 * (tell_preserved()).
 */
static int preserve(struct ctx *c, int dfd, const struct record *rec, enum manifest_kind kind,
		    enum manifest_type type, const struct version_gvsn *winner)
{
	int dst = kind == MANIFEST_CONFLICT ? c->r->conflict_fd : c->r->preexist_fd;
	char pname[RECORD_NAME_MAX + 1];
	struct dfsr_buf path;
	int rc;

	dfsr_buf_init(&path);
	if (journal_path(c->j, &rec->uid, &path) < 0 || !path.p) {
		path.len = 0;
		if (dfsr_buf_add(&path, rec->name, strlen(rec->name)) < 0) {
			rc = -ENOMEM;
			goto out_release;
		}
	}
	rc = free_preserved_name(dst, rec, pname);
	if (rc == 0 && renameat2(dfd, rec->name, dst, pname, RENAME_NOREPLACE) < 0)
		rc = -errno;
	if (rc < 0) {
		install_failed(c, rec, "preserve", rc);
		goto out_release;
	}
	unshare_links(dst, pname, 0, journal_space(c->j));
	tell_preserved(c, dst, pname);
	rc = fsync_dir(dst);
	if (rc == 0)
		rc = fsync_dir(dfd);
	add_inval(c, dfd, rec->name);
	preserved_note(c, rec, path.p, pname, kind, type, winner);
out_release:
	dfsr_buf_release(&path);
	return rc;
}

/* Copy a regular file's data and owner/mode (the xattrs stay behind: a copy is a copy). */
static int copy_file(int sfd, int dst, const char *pname, const struct record *rec)
{
	int ofd = openat(dst, pname, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	int rc = 0;

	if (ofd < 0)
		return -errno;
	rc = dfsr_copy_data(sfd, ofd);
	if (rc == 0 && (fchown(ofd, (uid_t)rec->owner, (gid_t)rec->group) < 0 ||
			fchmod(ofd, (mode_t)rec->mode) < 0 || fsync(ofd) < 0))
		rc = -errno;
	close(ofd);
	if (rc < 0)
		(void)unlinkat(dst, pname, 0);
	return rc;
}

/*
 * Preserve a copy of the live file or link @rec (its data stays in place, because the
 * winner has the same content and is applied to it): §3 with equal content.
 */
static int preserve_copy(struct ctx *c, int dfd, const struct record *rec,
			 const struct version_gvsn *winner)
{
	char pname[RECORD_NAME_MAX + 1], target[REPLICA_LINK_MAX + 1];
	struct dfsr_buf path;
	int rc = 0;

	dfsr_buf_init(&path);
	if (journal_path(c->j, &rec->uid, &path) < 0 || !path.p) {
		path.len = 0;
		if (dfsr_buf_add(&path, rec->name, strlen(rec->name)) < 0)
			return -ENOMEM;
	}
	rc = free_preserved_name(c->r->conflict_fd, rec, pname);
	if (rc == 0 && rec->type == RECORD_LINK) {
		ssize_t n = readlinkat(dfd, rec->name, target, sizeof(target) - 1);

		if (n < 0) {
			rc = -errno;
		} else {
			target[n] = '\0';
			if (symlinkat(target, c->r->conflict_fd, pname) < 0)
				rc = -errno;
		}
	} else if (rc == 0) {
		int sfd = openat(dfd, rec->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

		if (sfd < 0) {
			rc = -errno;
		} else {
			rc = copy_file(sfd, c->r->conflict_fd, pname, rec);
			close(sfd);
		}
	}
	if (rc == 0)
		rc = fsync_dir(c->r->conflict_fd);
	if (rc == 0)
		preserved_note(c, rec, path.p, pname, MANIFEST_CONFLICT, MANIFEST_TYPE_CONFLICT,
			       winner);
	else
		install_failed(c, rec, "preserve", rc);
	dfsr_buf_release(&path);
	return rc;
}

/*
 * The consistency scan of a read-only folder (core/internal.h, docs/conflicts.md §11): a
 * local object that differs from the group's version is preserved before that version is
 * installed again. The scan runs before the replica exists: a replica with only
 * DfsrPrivate and ConflictAndDeleted open does for preserved_note() and its quota cleanup.
 */
static int preserve_local(struct journal *j, int dfd, const struct record *rec, const char *path,
			  enum manifest_kind kind, enum manifest_type type,
			  char pname[static RECORD_NAME_MAX + 1])
{
	struct replica r = { .j = j, .installing_fd = -1, .conflict_fd = -1, .preexist_fd = -1 };
	int *dst = kind == MANIFEST_CONFLICT ? &r.conflict_fd : &r.preexist_fd;
	struct ctx c;
	int rc;

	rc = open_private_dir(journal_root_fd(j), LAYOUT_PRIVATE, &r.private_fd);
	if (rc < 0)
		return rc;
	rc = open_private_dir(r.private_fd,
			      kind == MANIFEST_CONFLICT ? LAYOUT_CONFLICT : LAYOUT_PREEXISTING,
			      dst);
	if (rc < 0)
		goto out_close;
	memset(&c, 0, sizeof(c));
	c.r = &r;
	c.j = j;
	c.fd = -1;
	c.v = REPLICA_DONE;
	rc = free_preserved_name(*dst, rec, pname);
	if (rc == 0 && renameat2(dfd, rec->name, *dst, pname, RENAME_NOREPLACE) < 0)
		rc = -errno;
	if (rc < 0) {
		install_failed(&c, rec, "preserve", rc);
		goto out_close;
	}
	unshare_links(*dst, pname, 0, journal_space(j));
	rc = fsync_dir(*dst);
	if (rc == 0)
		rc = fsync_dir(dfd);
	preserved_note(&c, rec, path, pname, kind, type, NULL);
out_close:
	if (*dst >= 0)
		close(*dst);
	close(r.private_fd);
	return rc;
}

int replica__preserve_local(struct journal *j, int dfd, const struct record *rec, const char *path,
			    enum manifest_type type, char pname[static RECORD_NAME_MAX + 1])
{
	return preserve_local(j, dfd, rec, path, MANIFEST_CONFLICT, type, pname);
}

int replica__preexist_local(struct journal *j, int dfd, const struct record *rec, const char *path,
			    char pname[static RECORD_NAME_MAX + 1])
{
	return preserve_local(j, dfd, rec, path, MANIFEST_PREEXISTING, MANIFEST_TYPE_PREEXISTING,
			      pname);
}

/* ---- parents (§7) ------------------------------------------------------------------ */

/*
 * Check the parent chain of the live record @n: every ancestor known, a directory, and not
 * @n itself. *dead is set when an ancestor is a tombstone (§7.2: resurrect it first). A
 * tombstoned parent whose name is held by a live directory that wins §4 against it was
 * merged into that directory: @n is placed there instead (n->parent changes, §4; as a new
 * version, c->newver, like the children a merge moves), unless that directory is @n
 * itself (its old place: @n is moving away from there). *loop is set when the chain comes
 * back to @n (§4.1: the update would close a cycle).
 * Sets c->v to WAIT (an ancestor is unknown) or REFUSED.
 */
static int check_parent(struct ctx *c, struct record *n, bool *dead, bool *loop)
{
	const struct dfsr_uid *root = journal_root_uid(c->j);
	struct dfsr_uid cur = n->parent, w;
	struct record p, win;
	int rc;

	*dead = *loop = false;
	for (int depth = 0;; depth++) {
		if (dfsr_uid_equal(&cur, root))
			return 0;
		if (dfsr_uid_equal(&cur, &n->uid)) {
			*loop = true;
			return 0;
		}
		if (depth > REPLICA_DEPTH_MAX) {
			refuse(c, n, "parent chain loops");
			return 0;
		}
		rc = journal__get(c->j, &cur, &p);
		if (rc == -ENOENT) {
			c->v = REPLICA_WAIT;
			return 0;
		}
		if (rc < 0)
			return rc;
		if (p.type != RECORD_DIR) {
			record_release(&p);
			refuse(c, n, "parent is not a directory");
			return 0;
		}
		if (p.tombstone && depth == 0 &&
		    journal__name_get(c->j, &p.parent, p.name, &w) == 0 &&
		    !dfsr_uid_equal(&w, &p.uid) && !dfsr_uid_equal(&w, &n->uid) &&
		    journal__get(c->j, &w, &win) == 0) {
			bool merged = !win.tombstone && win.type == RECORD_DIR &&
				      name_wins(&win, &p);

			record_release(&win);
			if (merged) {
				record_release(&p);
				/* a live directory (its ancestors are live), maybe below @n */
				n->parent = cur = w;
				c->newver = true; /* a place of this member's making */
				continue;
			}
		}
		if (p.tombstone)
			*dead = true;
		cur = p.parent;
		record_release(&p);
	}
}

/*
 * §7: make the tombstoned directory @uid live again (ancestors first), as a new version.
 * @eff: receives the directory that now stands for @uid: @uid itself, or the live directory
 *       that holds its name and wins §4 against it (it counts as merged into that one).
 * The name may be held by another live object meanwhile: §4 decides between the two (a
 * losing directory is taken over, a losing file preserved); a file that wins leaves the
 * directory dead for now (-EEXIST, logged; offered again later).
 * @n: the update being installed (@known: its UID has a record here). The name held by
 * @n itself (it moves from there into @uid): it steps aside first (displace(); c->moved).
 * The name held by a version @n's maker had seen: -EAGAIN, wait for its move (§4.2).
 */
static bool made_after(const struct record *n, const struct version_gvsn *g);
static bool stale_wait(struct ctx *c, const struct dfsr_uid *uid, const struct dfsr_uid *holder,
		       bool name);
static int displace(struct ctx *c, struct record *o);

static int resurrect(struct ctx *c, const struct dfsr_uid *uid, int depth, struct dfsr_uid *eff,
		     const struct record *n, bool known)
{
	struct dfsr_uid other, pe;
	struct hash_result h;
	struct record p, w;
	int dfd = -1, fd, rc;

	*eff = *uid;
	if (dfsr_uid_equal(uid, journal_root_uid(c->j)))
		return 0;
	if (depth > REPLICA_DEPTH_MAX)
		return -EIO;
	rc = journal__get(c->j, uid, &p);
	if (rc < 0)
		return rc == -ENOENT ? -EIO : rc;
	record_init(&w);
	if (!p.tombstone)
		goto out_release;
	rc = resurrect(c, &p.parent, depth + 1, &pe, n, known);
	if (rc < 0)
		goto out_release;
	p.parent = pe;
	rc = open_dir(c, &p.parent, &dfd);
	if (rc < 0)
		goto out_release;
	if (journal__name_get(c->j, &p.parent, p.name, &other) == 0 &&
	    journal__get(c->j, &other, &w) == 0 && !w.tombstone) {
		if (dfsr_uid_equal(&w.uid, &n->uid)) {
			rc = displace(c, &w);
			if (rc < 0)
				goto out_close;
			snprintf(c->moved_name, sizeof(c->moved_name), "%s", w.name);
			c->moved = true;
			goto make;
		}
		if (known && made_after(n, &w.gvsn) && stale_wait(c, &n->uid, &w.uid, false)) {
			rc = -EAGAIN;
			goto out_close;
		}
		if (w.type == RECORD_DIR && name_wins(&w, &p)) {
			*eff = w.uid;
			goto out_close;
		}
		if (w.type == RECORD_DIR) { /* the live directory there becomes this one */
			fd = openat(dfd, p.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				rc = -errno;
				goto out_close;
			}
			rc = hash_fd(fd, NULL, &h);
			close(fd);
			if (rc < 0)
				goto out_close;
			memcpy(p.hash, h.hash, HASH_LEN);
			memcpy(p.content, h.content, HASH_LEN);
			take_stat(&p, &h.st);
			p.tombstone = false;
			rc = journal__adopt_locked(c->j, &w.uid, true, &p, JOURNAL_OP_CREATE,
						   JOURNAL__NEWVER);
			if (rc == 0)
				tell_adopted(c, dfd, p.name, &w.uid, &p.uid);
			add_inval(c, dfd, p.name);
			goto out_close;
		}
		if (!name_wins(&p, &w)) {
			rc = -EEXIST;
			goto out_close;
		}
		rc = preserve(c, dfd, &w, MANIFEST_CONFLICT, MANIFEST_TYPE_NAME_CONFLICT, &p.gvsn);
		if (rc == 0)
			rc = bury_tree(c, &w.uid, BURY_DELETE, 0);
		if (rc < 0)
			goto out_close;
	}
make:
	if (mkdirat(dfd, p.name, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		goto out_close;
	}
	fd = openat(dfd, p.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out_close;
	}
	if (fchown(fd, (uid_t)p.owner, (gid_t)p.group) < 0 || fchmod(fd, (mode_t)p.mode) < 0)
		rc = -errno;
	if (rc == 0)
		rc = hash_fd(fd, NULL, &h);
	close(fd);
	if (rc == 0)
		rc = fsync_dir(dfd);
	if (rc < 0)
		goto out_close;
	memcpy(p.hash, h.hash, HASH_LEN);
	memcpy(p.content, h.content, HASH_LEN);
	take_stat(&p, &h.st);
	p.tombstone = false;
	rc = journal__write_locked(c->j, &p, JOURNAL_OP_CREATE, JOURNAL__NEWVER);
	add_inval(c, dfd, p.name);
out_close:
	if (dfd >= 0)
		close(dfd);
out_release:
	if (rc < 0 && rc != -EAGAIN)
		install_failed(c, &p, "resurrect", rc);
	record_release(&w);
	record_release(&p);
	return rc;
}

/*
 * Call @fn with the record of each live entry of directory @dir (an entry gone meanwhile is
 * skipped) until it returns non-zero. Return: 0, or @fn's or a read's negative errno.
 */
static int each_child(struct ctx *c, const struct dfsr_uid *dir,
		      int (*fn)(struct ctx *c, const struct record *k, void *arg), void *arg)
{
	struct uid_list kids;
	int rc;

	rc = list_children(c, dir, &kids);
	for (size_t i = 0; rc == 0 && i < kids.n; i++) {
		struct record k;

		rc = journal__get(c->j, &kids.v[i], &k);
		if (rc == -ENOENT) {
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		rc = fn(c, &k, arg);
		record_release(&k);
	}
	uid_list_release(&kids);
	return rc < 0 ? rc : 0;
}

struct survive {
	const struct version_vector *tv;
	bool *out;
	int depth;
};

static int survives(struct ctx *c, const struct dfsr_uid *dir, const struct version_vector *tv,
		    bool *out, int depth);

static int survive_one(struct ctx *c, const struct record *k, void *arg)
{
	struct survive *s = arg;
	int rc = 0;

	if (!k->tombstone && !dominated_by(&k->vv, s->tv))
		*s->out = true;
	else if (!k->tombstone && k->type == RECORD_DIR)
		rc = survives(c, &k->uid, s->tv, s->out, s->depth + 1);
	return rc < 0 ? rc : *s->out;
}

/* *out = true if a live record below @dir is not dominated by @tv (§7.1). */
static int survives(struct ctx *c, const struct dfsr_uid *dir, const struct version_vector *tv,
		    bool *out, int depth)
{
	struct survive s = { .tv = tv, .out = out, .depth = depth };

	if (depth > REPLICA_DEPTH_MAX)
		return -EIO;
	return each_child(c, dir, survive_one, &s);
}

/*
 * §7.1: the tombstone @n of directory @l arrived, but something below is new to the
 * deleter. What the deleter saw goes to ConflictAndDeleted, deleted as new versions; the
 * directory stays and gets a new version that dominates the tombstone.
 */
static int delete_keeping(struct ctx *c, int dfd, struct record *n, const struct record *l)
{
	struct uid_list kids;
	struct record res;
	int ddir, rc;

	ddir = openat(dfd, l->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ddir < 0)
		return -errno;
	rc = list_children(c, &l->uid, &kids);
	for (size_t i = 0; rc == 0 && i < kids.n; i++) {
		bool keep = false;
		struct record k;

		rc = journal__get(c->j, &kids.v[i], &k);
		if (rc == -ENOENT) {
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		if (!dominated_by(&k.vv, &n->vv))
			keep = true;
		else if (k.type == RECORD_DIR)
			rc = survives(c, &k.uid, &n->vv, &keep, 0);
		else
			keep = is_busy(c, ddir, k.name); /* its writer's change is compared later */
		/* New versions, not quiet tombstones: the deleter may never have held what its
		 * vector claims (a §4 loser's tombstone made from a directory new to it), and
		 * gets it later, from a member that had not met the delete, under the directory
		 * this brings back. A quiet tombstone would keep the GVSN it then holds live. */
		if (rc == 0 && !keep) {
			rc = preserve(c, ddir, &k, MANIFEST_CONFLICT, MANIFEST_TYPE_DELETED, NULL);
			if (rc == 0 || rc == -ENOENT)
				rc = bury_tree(c, &k.uid, BURY_DELETE, 0);
		}
		record_release(&k);
	}
	uid_list_release(&kids);
	close(ddir);
	if (rc < 0)
		return rc;
	record_init(&res);
	rc = record_copy(&res, l);
	if (rc == 0)
		rc = version_vector_merge(&res.vv, &n->vv);
	if (rc == 0)
		rc = journal__write_locked(c->j, &res, JOURNAL_OP_CREATE, JOURNAL__NEWVER);
	record_release(&res);
	return rc;
}

/* ---- applying a delete (§8, §7.1) ----------------------------------------------------- */

/*
 * §7.1: *@kid receives a live child directory of directory @dir, with live entries of its
 * own, whose version the tombstone @n dominates (*@found). Its deleter removed @dir empty,
 * so it holds a newer version of that child (a delete, or a move out), which is on its way:
 * the move may be waiting here for its own reasons while @dir's tombstone is offered
 * (sessions send current records, not changes in order). Deciding now would bury what is
 * below the child with @dir at the versions its deleter holds live elsewhere, and the move
 * would then bring back an empty directory: those versions are never sent again. (A file
 * or an empty directory moved out comes back whole with its own newer version.)
 */
struct seen {
	const struct version_vector *tv;
	struct dfsr_uid *kid;
};

static int seen_one(struct ctx *c, const struct record *k, void *arg)
{
	struct seen *s = arg;
	struct uid_list below;
	int rc;

	if (k->tombstone || k->type != RECORD_DIR || !dominated_by(&k->vv, s->tv))
		return 0;
	rc = list_children(c, &k->uid, &below);
	if (rc == 0 && below.n > 0) {
		*s->kid = k->uid;
		rc = 1;
	}
	uid_list_release(&below);
	return rc;
}

static int seen_child(struct ctx *c, const struct dfsr_uid *dir, const struct record *n,
		      struct dfsr_uid *kid, bool *found)
{
	struct seen s = { .tv = &n->vv, .kid = kid };
	int rc;

	memset(kid, 0, sizeof(*kid));
	rc = each_child(c, dir, seen_one, &s);
	*found = rc == 0 && !dfsr_uid_is_zero(kid);
	return rc;
}

static int apply_delete(struct ctx *c, struct record *n, const struct record *l, bool live_l)
{
	struct dfsr_uid kid;
	bool keep = false, seen = false;
	int dfd, rc;

	if (!live_l)
		return journal__write_locked(c->j, n, JOURNAL_OP_DELETE, JOURNAL__ENTRY);
	rc = open_dir(c, &l->parent, &dfd);
	if (rc < 0) {
		install_failed(c, l, "delete", rc);
		return -EIO;
	}
	if (l->type == RECORD_DIR && busy_below(c, dfd, l->name, 0)) {
		busy_wait(c, l); /* decided after the close (§7.1 if the writer changed it) */
		goto out_close;
	}
	if (l->type == RECORD_DIR) {
		rc = seen_child(c, &l->uid, n, &kid, &seen);
		if (rc < 0)
			goto out_close;
		if (seen && stale_wait(c, &n->uid, &kid, false)) {
			c->v = REPLICA_WAIT; /* for that child's newer version (§7.1) */
			goto out_close;
		}
	}
	if (l->type == RECORD_DIR) {
		rc = survives(c, &l->uid, &n->vv, &keep, 0);
		if (rc == 0 && keep)
			rc = delete_keeping(c, dfd, n, l);
		if (rc < 0 || keep)
			goto out_close;
	} else if (is_busy(c, dfd, l->name)) {
		busy_wait(c, l);
		goto out_close;
	}
	rc = preserve(c, dfd, l, MANIFEST_CONFLICT, MANIFEST_TYPE_DELETED, NULL);
	if (rc < 0 && rc != -ENOENT) /* gone from disk already: record the delete anyway */
		goto out_close;
	rc = bury_tree(c, &l->uid, BURY_QUIET, 0);
	if (rc == 0)
		rc = journal__write_locked(c->j, n, JOURNAL_OP_DELETE, JOURNAL__ENTRY);
out_close:
	close(dfd);
	return rc;
}

/* ---- applying a live version ------------------------------------------------------- */

/*
 * §4.1, §4.2: true if the member that made version @n had seen version @g (the vector @n
 * was made with: its origin where a resolution merged a loser's vector into it).
 */
static bool made_after(const struct record *n, const struct version_gvsn *g)
{
	return version_vector_contains(n->origin.n ? &n->origin : &n->vv, g);
}

/* How the update's record is written once placed: as it came, or as a new version. */
static unsigned entry_flags(const struct ctx *c)
{
	return c->newver ? JOURNAL__NEWVER : JOURNAL__ENTRY;
}

static int verify(struct ctx *c, const struct record *n, const struct hash_result *h)
{
	if (memcmp(h->hash, n->hash, HASH_LEN) == 0)
		return 0;
	refuse(c, n, "replication hash mismatch");
	return 0;
}

/*
 * The object already here (the local live version, same content) takes the update: moved
 * if the place changed, metadata applied, verified. §3 with equal content keeps a copy of
 * the local loser first.
 */
static int place_existing(struct ctx *c, struct record *n, const struct record *l, bool loser,
			  int dfd, int ldfd)
{
	bool moved = !same_place(l, n);
	struct hash_result h;
	int fd, rc = 0;

	if (loser && l->type != RECORD_DIR) {
		rc = preserve_copy(c, ldfd, l, &n->gvsn);
		if (rc < 0)
			return rc;
	}
	if (moved) {
		if (renameat2(ldfd, l->name, dfd, n->name, RENAME_NOREPLACE) < 0) {
			rc = -errno;
			install_failed(c, n, "rename", rc);
			return -EIO;
		}
		add_inval(c, ldfd, l->name);
	}
	if (n->type == RECORD_FILE && memcmp(l->hash, n->hash, HASH_LEN) != 0) {
		/* new metadata for this name only: not for the other names of a hard link */
		struct stat st;

		if (fstatat(dfd, n->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
		    st.st_nlink > 1) {
			rc = replace_by_copy(dfd, n->name, c->r->installing_fd, &st,
					     journal_space(c->j));
			if (rc < 0) {
				install_failed(c, n, "metadata", rc);
				return -EIO;
			}
		}
	}
	if (n->type == RECORD_LINK) {
		rc = apply_meta_link(dfd, n->name, c->u);
		if (rc == 0)
			rc = hash_at(dfd, n->name, &h);
	} else {
		fd = openat(dfd, n->name,
			    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
				    (n->type == RECORD_DIR ? O_DIRECTORY : 0));
		if (fd < 0)
			return -errno;
		rc = apply_meta_fd(fd, c->u);
		if (rc == 0)
			rc = hash_fd(fd, n->type == RECORD_FILE ? l->content : NULL, &h);
		close(fd);
	}
	if (rc == 0)
		rc = fsync_dir(dfd);
	if (rc == 0 && moved)
		rc = fsync_dir(ldfd);
	add_inval(c, dfd, n->name);
	if (rc < 0) {
		install_failed(c, n, "metadata", rc);
		return -EIO;
	}
	rc = verify(c, n, &h);
	if (rc < 0 || c->v != REPLICA_DONE)
		return rc;
	take_stat(n, &h.st);
	return journal__write_locked(c->j, n, moved ? JOURNAL_OP_RENAME : JOURNAL_OP_META,
				     entry_flags(c));
}

static int place_new_dir(struct ctx *c, struct record *n, int dfd)
{
	struct hash_result h;
	int fd, rc;

	if (mkdirat(dfd, n->name, 0700) < 0) {
		rc = -errno;
		install_failed(c, n, "mkdir", rc);
		return rc == -ENOSPC ? rc : -EIO;
	}
	fd = openat(dfd, n->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		rc = -errno;
	else
		rc = apply_meta_fd(fd, c->u);
	if (rc == 0)
		rc = hash_fd(fd, NULL, &h);
	if (fd >= 0)
		close(fd);
	if (rc == 0)
		rc = verify(c, n, &h);
	if (rc < 0 || c->v != REPLICA_DONE) {
		(void)unlinkat(dfd, n->name, AT_REMOVEDIR);
		if (rc < 0)
			install_failed(c, n, "mkdir", rc);
		return rc < 0 ? -EIO : 0;
	}
	rc = fsync_dir(dfd);
	add_inval(c, dfd, n->name);
	if (rc < 0)
		return rc;
	take_stat(n, &h.st);
	return journal__write_locked(c->j, n, JOURNAL_OP_CREATE, entry_flags(c));
}

/*
 * New data for a file or link: the assembled file (c->fd) or a new link made in
 * Installing, renamed into place over the local version (replaced: the upstream saw it,
 * §8) or after preserving it (§3 loser).
 */
static int place_new_data(struct ctx *c, struct record *n, const struct record *l, bool live_l,
			  bool loser, int dfd, int ldfd)
{
	char tmp[STAGE_ASM_NAME_LEN + 8];
	const char *from = c->asm_name;
	bool replace, was_live = live_l;
	struct hash_result h;
	struct stat st;
	int rc;

	if (n->type == RECORD_LINK) {
		char hex[DFSR_UID_HEX_LEN];

		dfsr_uid_hex(&n->uid, hex);
		snprintf(tmp, sizeof(tmp), "%s.link", hex);
		from = tmp;
		(void)unlinkat(c->r->installing_fd, tmp, 0);
		if (symlinkat(c->u->link_target, c->r->installing_fd, tmp) < 0)
			return -errno;
		rc = apply_meta_link(c->r->installing_fd, tmp, c->u);
		if (rc == 0)
			rc = hash_at(c->r->installing_fd, tmp, &h);
		if (rc == 0)
			rc = verify(c, n, &h);
		if (rc < 0 || c->v != REPLICA_DONE) {
			(void)unlinkat(c->r->installing_fd, tmp, 0);
			if (rc < 0)
				install_failed(c, n, "symlink", rc);
			return rc < 0 ? -EIO : 0;
		}
	}
	if (live_l && loser) {
		rc = preserve(c, ldfd, l, MANIFEST_CONFLICT, MANIFEST_TYPE_CONFLICT, &n->gvsn);
		if (rc < 0)
			goto out_unlink;
		live_l = false;
	}
	replace = live_l && same_place(l, n);
	if (renameat2(c->r->installing_fd, from, dfd, n->name, replace ? 0 : RENAME_NOREPLACE) <
	    0) {
		rc = -errno;
		install_failed(c, n, "rename", rc);
		goto out_unlink;
	}
	c->placed = true;
	if (live_l && !replace) {
		if (unlinkat(ldfd, l->name, 0) < 0 && errno != ENOENT)
			install_failed(c, l, "unlink", -errno);
		add_inval(c, ldfd, l->name);
		(void)fsync_dir(ldfd);
	}
	/* A new file in a batch: the directory fsync and the write come at the end of the
	 * batch, still under the lock (install_batched()), as JOURNAL_OP_CREATE with
	 * JOURNAL__ENTRY (not for a new version, c->newver); nothing after this reads it. */
	if (c->batched && !was_live && !c->newver && n->type == RECORD_FILE &&
	    fstat(c->fd, &st) == 0) {
		c->defer_dfd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
		if (c->defer_dfd >= 0) {
			add_inval_st(c, dfd, n->name, &st);
			take_stat(n, &st);
			c->defer_rec = *n; /* moved: @n is left empty */
			record_init(n);
			c->deferred = true;
			return 0;
		}
	}
	rc = fsync_dir(dfd);
	add_inval(c, dfd, n->name);
	if (rc < 0)
		return rc;
	if (n->type == RECORD_LINK ? fstatat(dfd, n->name, &st, AT_SYMLINK_NOFOLLOW) < 0
				   : fstat(c->fd, &st) < 0)
		return -errno;
	take_stat(n, &st);
	return journal__write_locked(c->j, n,
				     !was_live          ? JOURNAL_OP_CREATE
				     : same_place(l, n) ? JOURNAL_OP_MODIFY
							: JOURNAL_OP_RENAME,
				     entry_flags(c));
out_unlink:
	if (n->type == RECORD_LINK)
		(void)unlinkat(c->r->installing_fd, tmp, 0);
	return rc == -ENOSPC ? rc : -EIO;
}

/*
 * §10 and §4 by adoption: the local object @o at the update's place becomes the update's
 * UID (a directory gets the update's metadata; a file or link has its hash already).
 * @merge: §4 directory merge (@o stays as a quiet tombstone) rather than initial sync
 * (@o's record is dropped: it was never sent).
 */
static int adopt(struct ctx *c, struct record *n, const struct record *o, bool merge)
{
	struct hash_result h;
	int dfd, fd, rc;

	rc = open_dir(c, &n->parent, &dfd);
	if (rc < 0)
		return rc;
	if (n->type == RECORD_DIR) {
		fd = openat(dfd, n->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			goto out_close;
		}
		rc = apply_meta_fd(fd, c->u);
		if (rc == 0)
			rc = hash_fd(fd, NULL, &h);
		close(fd);
		if (rc == 0)
			rc = verify(c, n, &h);
		if (rc < 0 || c->v != REPLICA_DONE)
			goto out_close;
		take_stat(n, &h.st);
		add_inval(c, dfd, n->name);
	} else {
		take_record_stat(n, o);
	}
	rc = journal__adopt_locked(c->j, &o->uid, merge, n, JOURNAL_OP_CREATE,
				   c->newver ? JOURNAL__NEWVER : 0);
	if (rc == 0)
		tell_adopted(c, dfd, n->name, &o->uid, &n->uid);
out_close:
	if (rc < 0)
		install_failed(c, n, "adopt", rc);
	close(dfd);
	return rc;
}

/*
 * Move the live entries of directory @from (open as @fdir) into directory @to (open as
 * @tdir), for a §4 directory merge. An entry that meets one of the same name is settled by
 * §4 between the two (the loser preserved whole, deleted as a new version). With @reparent
 * the moved records get new versions under @to; otherwise they already name @to (its UID
 * took over @from's).
 */
static int merge_entries(struct ctx *c, const struct dfsr_uid *from, int fdir,
			 const struct dfsr_uid *to, int tdir, bool reparent)
{
	struct uid_list kids = { 0 };
	int rc;

	rc = list_children(c, from, &kids);
	for (size_t i = 0; rc == 0 && i < kids.n; i++) {
		struct dfsr_uid other;
		struct record k, x;
		bool k_wins = true;

		if (journal__get(c->j, &kids.v[i], &k) < 0)
			continue;
		if (journal__name_get(c->j, to, k.name, &other) == 0 &&
		    !dfsr_uid_equal(&other, &k.uid) && journal__get(c->j, &other, &x) == 0) {
			k_wins = name_wins(&k, &x);
			if (k_wins) {
				rc = preserve(c, tdir, &x, MANIFEST_CONFLICT,
					      MANIFEST_TYPE_NAME_CONFLICT, &k.gvsn);
				if (rc == 0)
					rc = bury_tree(c, &x.uid, BURY_DELETE, 0);
			} else {
				rc = preserve(c, fdir, &k, MANIFEST_CONFLICT,
					      MANIFEST_TYPE_NAME_CONFLICT, &x.gvsn);
				if (rc == 0)
					rc = bury_tree(c, &k.uid, BURY_DELETE, 0);
			}
			record_release(&x);
		}
		if (rc == 0 && k_wins &&
		    renameat2(fdir, k.name, tdir, k.name, RENAME_NOREPLACE) < 0)
			rc = -errno;
		if (rc == 0 && k_wins && reparent) {
			/* a new version: a later delete of @to by a member that never saw the
			 * merge must not count it among what it saw (§7.1) */
			k.parent = *to;
			rc = journal__write_locked(c->j, &k, JOURNAL_OP_RENAME, JOURNAL__NEWVER);
		}
		record_release(&k);
	}
	uid_list_release(&kids);
	if (rc == 0)
		(void)fsync_dir(tdir);
	return rc;
}

/*
 * §4 for a directory that wins a name while it is live here elsewhere (a rename onto the
 * name of a losing directory): the losing directory stays on disk and becomes the
 * winner (adopt), and the winner's entries move into it.
 */
static int merge_moved(struct ctx *c, struct record *n, const struct record *l,
		       const struct record *o)
{
	int lp = -1, ldir = -1, np = -1, odir = -1, rc;

	rc = open_dir(c, &l->parent, &lp);
	if (rc == 0)
		rc = open_dir(c, &n->parent, &np);
	if (rc < 0)
		goto out_close;
	ldir = openat(lp, l->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	odir = openat(np, o->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ldir < 0 || odir < 0) {
		rc = -errno;
		goto out_close;
	}
	rc = merge_entries(c, &l->uid, ldir, &o->uid, odir, false);
	if (rc < 0)
		goto out_close;
	/* untracked leftovers keep the old directory; the scan records them */
	if (unlinkat(lp, l->name, AT_REMOVEDIR) == 0)
		(void)fsync_dir(lp);
	add_inval(c, lp, l->name);
	rc = adopt(c, n, o, true);
out_close:
	if (rc < 0)
		install_failed(c, n, "merge", rc);
	if (odir >= 0)
		close(odir);
	if (ldir >= 0)
		close(ldir);
	if (np >= 0)
		close(np);
	if (lp >= 0)
		close(lp);
	return rc < 0 ? -EIO : 0;
}

/*
 * §4 the other way: the update moves a directory that is live here onto the name of a
 * directory that wins. The update's directory is merged into the winner: its entries move
 * there, it is removed, and its UID becomes a tombstone (lose_name()).
 */
static int merge_away(struct ctx *c, const struct record *l, const struct record *o)
{
	int lp = -1, ldir = -1, op = -1, odir = -1, rc;

	rc = open_dir(c, &l->parent, &lp);
	if (rc == 0)
		rc = open_dir(c, &o->parent, &op);
	if (rc < 0)
		goto out_close;
	ldir = openat(lp, l->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	odir = openat(op, o->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ldir < 0 || odir < 0) {
		rc = -errno;
		goto out_close;
	}
	rc = merge_entries(c, &l->uid, ldir, &o->uid, odir, true);
	if (rc < 0)
		goto out_close;
	if (unlinkat(lp, l->name, AT_REMOVEDIR) == 0)
		(void)fsync_dir(lp);
	add_inval(c, lp, l->name);
	add_inval(c, op, o->name);
out_close:
	if (rc < 0)
		install_failed(c, l, "merge", rc);
	if (odir >= 0)
		close(odir);
	if (ldir >= 0)
		close(ldir);
	if (op >= 0)
		close(op);
	if (lp >= 0)
		close(lp);
	return rc < 0 ? -EIO : 0;
}

/* What happens to the live object @o that holds the update's name. */
enum holder {
	HOLDER_NONE = 0,
	HOLDER_ADOPT,    /* §10: same hash (or a directory): it becomes the update */
	HOLDER_PREEXIST, /* §10: differs: to PreExisting */
	HOLDER_MERGE,    /* §4: a directory losing to a directory: merged into it */
	HOLDER_PRESERVE, /* §4: loses the name: to ConflictAndDeleted */
	HOLDER_WINS,     /* §4: keeps the name; the update's UID is a tombstone here */
};

static enum holder judge_holder(struct ctx *c, const struct record *n, const struct record *o,
				bool live_l)
{
	if (!live_l && journal__state_locked(c->j) == JOURNAL_STATE_INITIAL_SYNC &&
	    dfsr_uid_equal(&o->gvsn.db, journal_db_id(c->j))) {
		if (o->type == n->type &&
		    (n->type == RECORD_DIR || memcmp(o->hash, n->hash, HASH_LEN) == 0))
			return HOLDER_ADOPT;
		return HOLDER_PREEXIST;
	}
	if (!name_wins(n, o))
		return HOLDER_WINS;
	if (o->type == RECORD_DIR && n->type == RECORD_DIR)
		return HOLDER_MERGE;
	return HOLDER_PRESERVE;
}

/*
 * §8 for a §4 directory merge: the live directory @l is emptied into the winner and removed.
 * What is open for writing below it waits like a delete of the directory: a create not
 * journaled yet has no record to move and stayed behind in a directory no record names,
 * while its close journaled it under the winner, where this member had no such file (the
 * members never converged). Return: true if busy (the update waits, event 4302).
 */
static bool merge_busy(struct ctx *c, const struct record *l)
{
	bool busy;
	int dfd;

	if (open_dir(c, &l->parent, &dfd) < 0)
		return false; /* the merge fails on it and says so */
	busy = busy_below(c, dfd, l->name, 0);
	close(dfd);
	if (busy)
		busy_wait(c, l);
	return busy;
}

/* §4: the update lost the name to @o. A local live version of it elsewhere is preserved. */
static int lose_name(struct ctx *c, struct record *n, const struct record *l, bool live_l,
		     const struct record *o)
{
	int ldfd, rc;

	if (live_l && l->type == RECORD_DIR && o->type == RECORD_DIR) {
		if (merge_busy(c, l))
			return 0;
		rc = merge_away(c, l, o);
		if (rc < 0)
			return rc;
	} else if (live_l) {
		rc = open_dir(c, &l->parent, &ldfd);
		if (rc < 0)
			return rc;
		if (l->type != RECORD_DIR && is_busy(c, ldfd, l->name)) {
			busy_wait(c, l);
			close(ldfd);
			return 0;
		}
		rc = preserve(c, ldfd, l, MANIFEST_CONFLICT, MANIFEST_TYPE_NAME_CONFLICT, &o->gvsn);
		close(ldfd);
		if (rc == 0)
			rc = bury_tree(c, &l->uid, BURY_DELETE, 0);
		if (rc < 0)
			return rc;
	}
	n->tombstone = true;
	return journal__write_locked(c->j, n, JOURNAL_OP_DELETE, JOURNAL__NEWVER);
}

/* §4.2: forget what @uid waited for (its update was decided). */
static void stale_forget(struct ctx *c, const struct dfsr_uid *uid)
{
	for (size_t i = 0; i < REPLICA_STALE; i++)
		if (dfsr_uid_equal(&c->r->stale[i].uid, uid))
			memset(&c->r->stale[i], 0, sizeof(c->r->stale[i]));
}

/*
 * §4.1, §4.2: @uid's update would wait for @holder's newer version. True: wait. False: it
 * has waited REPLICA_STALE_MAX already (the version it waits for may never come: a state
 * no rule foresaw); the rules then apply as if the holder were current, which converges
 * (new versions), only not as quietly.
 */
static bool stale_wait(struct ctx *c, const struct dfsr_uid *uid, const struct dfsr_uid *holder,
		       bool name)
{
	struct replica *r = c->r;
	int64_t now = dfsr_mono_ns(), since = now;

	for (size_t i = 0; i < REPLICA_STALE; i++)
		if (dfsr_uid_equal(&r->stale[i].uid, uid) &&
		    dfsr_uid_equal(&r->stale[i].holder, holder) &&
		    now - r->stale[i].mono_ns < REPLICA_STALE_NS)
			since = r->stale[i].since_ns;
	stale_forget(c, uid);
	r->stale[r->stale_next].uid = *uid;
	r->stale[r->stale_next].holder = *holder;
	r->stale[r->stale_next].since_ns = since;
	r->stale[r->stale_next].mono_ns = now;
	r->stale[r->stale_next].name = name;
	r->stale_next = (r->stale_next + 1) % REPLICA_STALE;
	return now - since < REPLICA_STALE_MAX;
}

/* §4.2: true if @holder's update waits (through others) for @uid's: names rotated. */
static bool stale_cycle(struct ctx *c, const struct dfsr_uid *uid, const struct dfsr_uid *holder)
{
	int64_t now = dfsr_mono_ns();
	struct dfsr_uid cur = *holder;

	for (int k = 0; k < REPLICA_STALE; k++) {
		size_t i;

		for (i = 0; i < REPLICA_STALE; i++)
			if (!dfsr_uid_is_zero(&c->r->stale[i].uid) && c->r->stale[i].name &&
			    dfsr_uid_equal(&c->r->stale[i].uid, &cur) &&
			    now - c->r->stale[i].mono_ns < REPLICA_STALE_NS)
				break;
		if (i == REPLICA_STALE)
			return false;
		cur = c->r->stale[i].holder;
		if (dfsr_uid_equal(&cur, uid))
			return true;
	}
	return false;
}

static void cycle_name(const struct record *rec, char out[static RECORD_NAME_MAX + 1]);

/*
 * §4.2, names rotated (x to y and y to x on one member): each update waits for the other's
 * holder to move. The holder @o, whose own update is waiting, steps aside in its directory
 * to "<name>-{<UID>}" quietly (its record keeps its GVSN: its waiting update, offered
 * again next, places it where its maker put it), and the update takes the name.
 */
static int displace(struct ctx *c, struct record *o)
{
	char name[RECORD_NAME_MAX + 1];
	int dfd, rc;

	rc = open_dir(c, &o->parent, &dfd);
	if (rc < 0)
		return rc;
	cycle_name(o, name);
	if (renameat2(dfd, o->name, dfd, name, RENAME_NOREPLACE) < 0) {
		rc = -errno;
		install_failed(c, o, "rename", rc);
		close(dfd);
		return rc;
	}
	add_inval(c, dfd, o->name);
	add_inval(c, dfd, name);
	rc = fsync_dir(dfd);
	close(dfd);
	snprintf(o->name, sizeof(o->name), "%s", name);
	if (rc == 0)
		rc = journal__write_locked(c->j, o, JOURNAL_OP_RENAME, 0);
	return rc;
}

/* §4.1: "<name>-{<UID>}", the name shortened (bytewise) to fit one component. */
static void cycle_name(const struct record *rec, char out[static RECORD_NAME_MAX + 1])
{
	char guid[DFSR_UID_GUID_LEN], suffix[64];
	size_t keep = strlen(rec->name);
	int len;

	dfsr_uid_guid(&rec->uid, guid);
	len = snprintf(suffix, sizeof(suffix), "-{%s}", guid);
	if (keep > RECORD_NAME_MAX - (size_t)len)
		keep = RECORD_NAME_MAX - (size_t)len;
	memmove(out, rec->name, keep);
	memcpy(out + keep, suffix, (size_t)len + 1);
}

/* Event 1305: the directory @rec goes to the root as rec->name (§4.1). */
static void cycle_event(struct ctx *c, const struct record *rec)
{
	char hex[DFSR_UID_HEX_LEN], name[RECORD_NAME_MAX + 1];

	dfsr_uid_hex(&rec->uid, hex);
	safe_name(rec->name, name);
	journal_event(c->j, EV_MOVE_CYCLE_BROKEN, "uid=%s name=\"%s\"", hex, name);
}

/*
 * §4.1: installing the directory @n under its parent would close a cycle (check_parent()
 * came back to it). If @n's vector contains the version of a directory on the loop, the
 * member that made @n had moved that directory since: wait for that move (c->v = WAIT).
 * Otherwise two concurrent moves met: of the directories on the loop (@n as it arrives,
 * the live records of its ancestors here), the one with the latest version (§3 order:
 * change time, then GVSN) moves to the folder root as "<name>-{<UID>}", a new local
 * version: @n itself (its place changes, c->newver) or the ancestor, moved now. Every
 * member that meets the loop holds the same versions on it and so makes the same
 * placement; §3 settles the copies.
 */
static int break_cycle(struct ctx *c, struct record *n)
{
	const struct dfsr_uid *root = journal_root_uid(c->j);
	struct dfsr_uid cur = n->parent;
	struct record best, p;
	bool other = false;
	int sdfd = -1, rdfd = -1, rc = 0;

	record_init(&best);
	for (int depth = 0; !dfsr_uid_equal(&cur, &n->uid) && !dfsr_uid_equal(&cur, root);
	     depth++) {
		if (depth > REPLICA_DEPTH_MAX)
			break;
		rc = journal__get(c->j, &cur, &p);
		if (rc < 0)
			break;
		cur = p.parent;
		if (made_after(n, &p.gvsn) && stale_wait(c, &n->uid, &p.uid, false)) {
			record_release(&p);
			c->v = REPLICA_WAIT;
			goto out_release;
		}
		if (!p.tombstone && p.type == RECORD_DIR && update_wins(&p, other ? &best : n)) {
			record_release(&best);
			best = p; /* moved */
			other = true;
			continue;
		}
		record_release(&p);
	}
	if (rc < 0)
		goto out_release;
	if (!other) {
		n->parent = *root;
		cycle_name(n, n->name);
		c->newver = true;
		cycle_event(c, n);
		goto out_release;
	}
	rc = open_dir(c, &best.parent, &sdfd);
	if (rc == 0)
		rc = open_dir(c, root, &rdfd);
	if (rc < 0)
		goto out_failed;
	{
		char name[RECORD_NAME_MAX + 1];

		cycle_name(&best, name);
		if (renameat2(sdfd, best.name, rdfd, name, RENAME_NOREPLACE) < 0) {
			rc = -errno;
			goto out_failed;
		}
		add_inval(c, sdfd, best.name);
		snprintf(best.name, sizeof(best.name), "%s", name);
	}
	best.parent = *root;
	rc = fsync_dir(rdfd);
	if (rc == 0)
		rc = fsync_dir(sdfd);
	add_inval(c, rdfd, best.name);
	if (rc == 0)
		rc = journal__write_locked(c->j, &best, JOURNAL_OP_RENAME, JOURNAL__NEWVER);
	if (rc == 0)
		cycle_event(c, &best);
	goto out_close;
out_failed:
	install_failed(c, &best, "cycle", rc);
	rc = -EIO;
out_close:
	if (sdfd >= 0)
		close(sdfd);
	if (rdfd >= 0)
		close(rdfd);
out_release:
	record_release(&best);
	return rc;
}

/*
 * §7.2 for a version its dead parent's deleter had seen: the tombstone of @n's parent
 * dominates @n's version, so every member that held @n when that tombstone came deleted it
 * with the directory (§7.1, at @n's own GVSN). This member never held it (the deleter's
 * vector came from elsewhere, as a §4 loser's tombstone takes the vector of a directory new
 * to its maker), and gets it now from a member that had not met the delete: it is recorded
 * deleted too, not installed (which would bring the directory back and hold live the
 * version the others hold deleted, neither ever sending it again).
 */
static int seen_deleted(struct ctx *c, const struct record *n, bool *gone)
{
	struct record p;
	int rc;

	*gone = false;
	rc = journal__get(c->j, &n->parent, &p);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	*gone = p.tombstone && dominated_by(&n->vv, &p.vv);
	record_release(&p);
	return 0;
}

static int apply_live(struct ctx *c, struct record *n, const struct record *l, bool live_l,
		      bool loser)
{
	enum holder hold = HOLDER_NONE;
	bool dead = false, loop = false, need_data, again = false;
	int dfd = -1, ldfd = -1, rc;
	struct dfsr_uid other;
	struct record o, moved;

	record_init(&o);
	rc = check_parent(c, n, &dead, &loop);
	if (rc == 0 && c->v == REPLICA_DONE && loop) { /* §4.1 */
		rc = break_cycle(c, n);
		if (rc == 0 && c->v == REPLICA_DONE)
			rc = check_parent(c, n, &dead, &loop);
		if (rc == 0 && c->v == REPLICA_DONE && loop)
			refuse(c, n, "parent chain loops");
	}
	if (rc < 0 || c->v != REPLICA_DONE)
		return rc;
	if (dead && !live_l && !c->newver) {
		bool gone;

		rc = seen_deleted(c, n, &gone);
		if (rc < 0)
			return rc;
		if (gone) {
			n->tombstone = true;
			return journal__write_locked(c->j, n, JOURNAL_OP_DELETE, JOURNAL__ENTRY);
		}
	}
	/* the same object, content and place: only the record changes (§3 equal versions) */
	if (live_l && same_place(l, n) && memcmp(l->hash, n->hash, HASH_LEN) == 0) {
		take_record_stat(n, l);
		return journal__write_locked(c->j, n, JOURNAL_OP_META, entry_flags(c));
	}
	rc = journal__name_get(c->j, &n->parent, n->name, &other);
	if (rc == 0 && !dfsr_uid_equal(&other, &n->uid)) {
		rc = journal__get(c->j, &other, &o);
		if (rc < 0)
			return rc == -ENOENT ? -EIO : rc;
		hold = judge_holder(c, n, &o, live_l);
	} else if (rc < 0 && rc != -ENOENT) {
		return rc;
	}
	rc = 0;
	/*
	 * §4.2: a name held by a version the update has seen (its vector contains the holder's
	 * GVSN) is not a conflict yet: the member that made the update had moved or deleted
	 * the holder, and that newer version is on its way (sessions send the directory a
	 * holder moves into before the holder). Wait for it, rather than settle by §4 a
	 * conflict that exists here only (new versions the other members would answer).
	 * Updates that wait for each other's holders (names rotated on one member) end it:
	 * the holder steps aside quietly, its own waiting update places it next. A directory
	 * new here is decided at once: the holder's newer version may be inside it (moved
	 * there), and would wait for it. Nothing can be inside a new file or link, so it waits
	 * too (a file made under the name of one its maker deleted must not lose to it).
	 */
	if ((hold == HOLDER_WINS || hold == HOLDER_MERGE || hold == HOLDER_PRESERVE) &&
	    (!dfsr_uid_is_zero(&l->uid) || n->type != RECORD_DIR) && !c->newver &&
	    made_after(n, &o.gvsn)) {
		if (stale_cycle(c, &n->uid, &o.uid)) {
			rc = displace(c, &o);
			if (rc < 0)
				goto out_failed;
			hold = HOLDER_NONE;
		} else if (stale_wait(c, &n->uid, &o.uid, true)) {
			c->v = REPLICA_WAIT;
			goto out_release;
		}
	}
	if (hold == HOLDER_WINS) {
		rc = lose_name(c, n, l, live_l, &o);
		goto out_release;
	}
	need_data = n->type == RECORD_FILE && hold != HOLDER_ADOPT && hold != HOLDER_MERGE &&
		    !(live_l && memcmp(l->content, n->content, HASH_LEN) == 0 &&
		      l->size == n->size);
	/*
	 * §4 does not depend on the winner's data: the loser goes now, before the download,
	 * so that its own delete (every member that sees the conflict makes one) finds it
	 * already preserved as name-conflict rather than as deleted.
	 */
	if (hold == HOLDER_PRESERVE && !dead) {
		rc = open_dir(c, &o.parent, &dfd);
		if (rc < 0)
			goto out_failed;
		if (o.type != RECORD_DIR && is_busy(c, dfd, o.name)) {
			busy_wait(c, &o);
			goto out_close;
		}
		rc = preserve(c, dfd, &o, MANIFEST_CONFLICT, MANIFEST_TYPE_NAME_CONFLICT, &n->gvsn);
		close(dfd);
		dfd = -1;
		if (rc == 0)
			rc = bury_tree(c, &o.uid, BURY_DELETE, 0);
		if (rc < 0)
			goto out_close;
		hold = HOLDER_NONE;
	}
	if (need_data && c->fd < 0) {
		c->v = REPLICA_FETCH;
		goto out_close;
	}
	/* §8: nothing open for writing is moved or replaced */
	if (live_l && l->type != RECORD_DIR) {
		rc = open_dir(c, &l->parent, &ldfd);
		if (rc < 0)
			goto out_failed;
		if (is_busy(c, ldfd, l->name)) {
			busy_wait(c, l);
			goto out_close;
		}
	}
	if ((hold == HOLDER_PRESERVE || hold == HOLDER_PREEXIST) && o.type != RECORD_DIR) {
		rc = open_dir(c, &o.parent, &dfd);
		if (rc < 0)
			goto out_failed;
		if (is_busy(c, dfd, o.name))
			busy_wait(c, &o);
		close(dfd);
		dfd = -1;
		if (c->v != REPLICA_DONE)
			goto out_close;
	}
	if (dead) {
		struct dfsr_uid eff;

		rc = resurrect(c, &n->parent, 0, &eff, n, !dfsr_uid_is_zero(&l->uid));
		if (rc == -EAGAIN) { /* §4.2 */
			c->v = REPLICA_WAIT;
			rc = 0;
			goto out_close;
		}
		if (c->moved && live_l) { /* the local object stepped aside: it is there now */
			moved = *l;       /* shallow: only its name differs */
			snprintf(moved.name, sizeof(moved.name), "%s", c->moved_name);
			l = &moved;
		}
		if (rc == -EEXIST) {
			/* A dead ancestor lost its name to a file (§4): there is no directory to
			 * merge into, so this object goes with it (a local live version is
			 * preserved), as a delete every member makes alike. */
			rc = live_l && ldfd < 0 ? open_dir(c, &l->parent, &ldfd) : 0;
			if (rc == 0 && live_l) {
				rc = preserve(c, ldfd, l, MANIFEST_CONFLICT,
					      MANIFEST_TYPE_NAME_CONFLICT, NULL);
				if (rc == 0)
					rc = bury_tree(c, &l->uid, BURY_DELETE, 0);
			}
			if (rc == 0) {
				n->tombstone = true;
				rc = journal__write_locked(c->j, n, JOURNAL_OP_DELETE,
							   JOURNAL__NEWVER);
			}
			goto out_close;
		}
		if (rc < 0)
			goto out_close;
		if (!dfsr_uid_equal(&eff, &n->parent)) { /* merged into another directory (§4) */
			n->parent = eff;
			c->newver = true; /* a place of this member's making */
			again = true;
			goto out_close;
		}
	}
	if (hold == HOLDER_MERGE && live_l) {
		if (!merge_busy(c, l))
			rc = merge_moved(c, n, l, &o);
		goto out_close;
	}
	if (hold == HOLDER_ADOPT || hold == HOLDER_MERGE) {
		rc = adopt(c, n, &o, hold == HOLDER_MERGE);
		goto out_close;
	}
	if (hold == HOLDER_PRESERVE || hold == HOLDER_PREEXIST) {
		bool pre = hold == HOLDER_PREEXIST;

		rc = open_dir(c, &o.parent, &dfd);
		if (rc == 0)
			rc = preserve(c, dfd, &o, pre ? MANIFEST_PREEXISTING : MANIFEST_CONFLICT,
				      pre ? MANIFEST_TYPE_PREEXISTING : MANIFEST_TYPE_NAME_CONFLICT,
				      pre ? NULL : &n->gvsn);
		if (dfd >= 0)
			close(dfd);
		dfd = -1;
		if (rc == 0)
			rc = bury_tree(c, &o.uid, pre ? BURY_DROP : BURY_DELETE, 0);
		if (rc < 0)
			goto out_close;
	}
	rc = open_dir(c, &n->parent, &dfd);
	if (rc == 0 && live_l && ldfd < 0)
		rc = open_dir(c, &l->parent, &ldfd);
	if (rc < 0)
		goto out_failed;
	if (live_l && !need_data && n->type != RECORD_LINK)
		rc = place_existing(c, n, l, loser, dfd, ldfd);
	else if (live_l && n->type == RECORD_LINK && memcmp(l->content, n->content, HASH_LEN) == 0)
		rc = place_existing(c, n, l, loser, dfd, ldfd);
	else if (n->type == RECORD_DIR)
		rc = place_new_dir(c, n, dfd);
	else
		rc = place_new_data(c, n, l, live_l, loser, dfd, ldfd);
	goto out_close;
out_failed:
	install_failed(c, n, "open", rc);
	rc = -EIO;
out_close:
	if (dfd >= 0)
		close(dfd);
	if (ldfd >= 0)
		close(ldfd);
out_release:
	record_release(&o);
	if (rc == 0 && again && c->v == REPLICA_DONE) /* the parent is live now: decide there */
		rc = apply_live(c, n, l, live_l, loser);
	return rc;
}

/* ---- deciding (§2, §3, §5, §6) ---------------------------------------------------------- */

/* Before a resolution merges a loser's vector into @r's: remember @r's own (§3, origin). */
static int keep_origin(struct record *r)
{
	return r->origin.n ? 0 : version_vector_copy(&r->origin, &r->vv);
}

/* Keep the local record @l, its vector raised by @vv (a conflict it won): quietly (no new
 * version, §3 and §6) or, with JOURNAL__NEWVER, as a new local version (§5). */
static int keep_local(struct ctx *c, struct record *l, const struct version_vector *vv,
		      unsigned flags)
{
	int rc = keep_origin(l);

	if (rc == 0)
		rc = version_vector_merge(&l->vv, vv);
	return rc < 0 ? rc : journal__write_locked(c->j, l, JOURNAL_OP_CREATE, flags);
}

/*
 * §3: true if the local version @l lost a conflict that another member resolved: the
 * update @in covers it only through the vectors merged in by that resolution (its origin
 * does not contain @l's GVSN). Every member that held the loser live keeps it, whether the
 * winner reaches it as it was made (concurrent) or as resolved elsewhere (dominating).
 */
static bool lost_elsewhere(const struct record *l, const struct record *in)
{
	return in->origin.n && !version_vector_contains(&in->origin, &l->gvsn);
}

static int decide(struct ctx *c)
{
	const struct record *in = &c->u->rec;
	bool have_l = false, live_l, loser = false;
	bool revert = false, present = false; /* §11 */
	struct record l, n;
	int rc;

	record_init(&l);
	record_init(&n);
	rc = journal__get(c->j, &in->uid, &l);
	if (rc == 0)
		have_l = true;
	else if (rc != -ENOENT)
		return rc;
	live_l = have_l && !l.tombstone;
	/* §11: a read-only member's scan reverted this version (the local object moved aside,
	 * or only its metadata differs): it is installed again, not ignored as known */
	if (live_l)
		revert = journal__reverted_locked(c->j, &l, &present);
	if (have_l && l.type != in->type) {
		refuse(c, in, "type of a known object changed");
		goto out_release;
	}
	rc = record_copy(&n, in);
	if (rc < 0)
		goto out_release;
	n.seq = 0;
	if (have_l) {
		enum version_cmp cmp = version_vector_compare(&l.vv, &in->vv);

		if ((cmp == VERSION_EQUAL && !revert) || cmp == VERSION_DOMINATES) /* §2.1 */
			goto out_release;
		if (cmp == VERSION_DOMINATED && live_l && !in->tombstone && lost_elsewhere(&l, in))
			loser = l.type != RECORD_DIR &&
				!(same_place(&l, in) && memcmp(l.hash, in->hash, HASH_LEN) == 0);
		if (cmp == VERSION_CONCURRENT) {
			rc = keep_origin(&n);
			if (rc == 0)
				rc = version_vector_merge(&n.vv, &l.vv);
			if (rc < 0)
				goto out_release;
			if (l.tombstone && in->tombstone) { /* §6 */
				rc = update_wins(in, &l)
					     ? journal__write_locked(c->j, &n, JOURNAL_OP_DELETE, 0)
					     : keep_local(c, &l, &in->vv, 0);
				goto out_release;
			}
			/*
			 * §5 where the local live version outlives a delete: a new version. Its
			 * vector now covers the tombstone, but under its old GVSN no member that
			 * already holds that version would ever receive it. With three versions
			 * (P beats X by §3, X outlives the tombstone T by §5, T dominates P)
			 * members would otherwise settle on different ones depending on arrival
			 * order; the new version dominates all three and ends it.
			 */
			if (in->tombstone) {
				rc = keep_local(c, &l, &in->vv, JOURNAL__NEWVER);
				goto out_release;
			}
			if (!l.tombstone && !update_wins(in, &l)) { /* §3: the local version wins */
				rc = keep_local(c, &l, &in->vv, 0);
				goto out_release;
			}
			/* §3 the update wins; the local live version is preserved if it differs.
			 * §5 (the local version is a tombstone): the update is installed. */
			loser = live_l && l.type != RECORD_DIR &&
				!(same_place(&l, in) && memcmp(l.hash, in->hash, HASH_LEN) == 0);
		}
	}
	if (revert && !in->tombstone) {
		loser = false; /* the scan preserved the local object already */
		if (present)   /* l's data, other metadata: apply n's again */
			memset(l.hash, 0, HASH_LEN);
		else
			live_l = false; /* nothing is there: install as new */
	}
	if (in->tombstone)
		rc = apply_delete(c, &n, &l, live_l);
	else
		rc = apply_live(c, &n, &l, live_l, loser);
	if (revert && rc == 0 && c->v == REPLICA_DONE)
		journal__revert_done_locked(c->j, &l.uid);
	if (rc == 0 && c->v != REPLICA_WAIT)
		stale_forget(c, &in->uid);
out_release:
	record_release(&n);
	record_release(&l);
	return rc;
}

/* Checks that need no database: false if the update is refused or ignored (filtered). */
static bool precheck(struct ctx *c)
{
	const struct record *in = &c->u->rec;
	const struct dfsr_uid *root = journal_root_uid(c->j);

	if (replica_update_check(c->u) < 0) {
		refuse(c, in, "malformed update");
		return false;
	}
	if (dfsr_uid_equal(&in->uid, root) || dfsr_uid_is_zero(&in->uid)) {
		refuse(c, in, "the folder root as an object");
		return false;
	}
	if (dfsr_uid_equal(&in->uid, &in->parent) || dfsr_uid_is_zero(&in->parent)) {
		refuse(c, in, "invalid parent");
		return false;
	}
	if (!record_name_valid(in->name)) {
		refuse(c, in, "invalid name");
		return false;
	}
	if (in->type != RECORD_FILE && in->type != RECORD_DIR && in->type != RECORD_LINK) {
		refuse(c, in, "invalid type");
		return false;
	}
	if (dfsr_uid_equal(&in->parent, root) && strcmp(in->name, LAYOUT_PRIVATE) == 0) {
		refuse(c, in, "DfsrPrivate at the root");
		return false;
	}
	/* a filtered name is not replicated here: decided, nothing to do */
	return journal__tracked(c->j, &in->parent, in->name, in->type);
}

static void ctx_init(struct ctx *c, struct replica *r, const struct replica_update *u, int fd)
{
	struct stage_key k = { .uid = u->rec.uid, .gvsn = u->rec.gvsn };

	memset(c, 0, sizeof(*c));
	c->r = r;
	c->j = r->j;
	c->u = u;
	c->fd = fd;
	c->v = REPLICA_DONE;
	c->defer_dfd = -1;
	record_init(&c->defer_rec);
	stage_asm_name(&k, c->asm_name);
}

/* ---- installs decided in batches --------------------------------------------------- */

/*
 * Each install ends with a rename into place, an fsync of that directory and the write of
 * the record, all under the journal's lock; the fsync is most of the time held, so with
 * many small files the installs queue on it one by one. install_batched() decides the
 * installs that wait for the lock meanwhile in one hold of it (flat combining: the first
 * waiter decides for all, the others sleep until theirs is done): a new file's rename is
 * done as it is decided, and its directory fsync and record write are deferred to the end
 * of the batch (batch_flush()), where every directory is fsync'd once, then the records
 * are written, each in its own database batch as before.
 *
 * Crash safety is unchanged (DESIGN.md "Crash safety"): the data is fsync'd before its
 * rename (replica_install(), outside the lock), and no record is written before the
 * fsync of the directory its rename went into has returned, so the database never claims
 * an install whose data or name may still be lost. A crash between the renames and the
 * writes leaves files that have no record, as the window between one rename and its write
 * always did: the consistency scan takes them as local creations. The lock is held from
 * the first rename to the last write, so no local operation (a lookup through the mount
 * records an unknown name as a new file) sees a name without its record.
 *
 * A decision reads the database, which lacks the deferred records until the flush: once
 * something is deferred, an install is decided in the same batch only if nothing it reads
 * can be one of them: its UID and its (parent, name) unknown to the database, its parent
 * a live directory, and no deferred record with its UID or its name. Otherwise the
 * deferred part is flushed first. Such an install writes nothing but its own record.
 */
struct batch_job {
	struct ctx *c;
	struct batch_job *next;
	int rc;
	bool done;
};

static bool batch_simple(struct ctx *c, const struct batch_job *from, const struct batch_job *to)
{
	const struct record *in = &c->u->rec;
	struct dfsr_uid other;
	struct record p;
	bool ok;

	for (const struct batch_job *b = from; b != to; b = b->next) {
		const struct ctx *d = b->c;

		if (d->deferred && (dfsr_uid_equal(&d->defer_rec.uid, &in->uid) ||
				    strcmp(d->defer_rec.name, in->name) == 0))
			return false;
	}
	record_init(&p);
	if (journal__get(c->j, &in->uid, &p) != -ENOENT ||
	    journal__name_get(c->j, &in->parent, in->name, &other) != -ENOENT) {
		record_release(&p);
		return false;
	}
	if (dfsr_uid_equal(&in->parent, journal_root_uid(c->j)))
		return true;
	ok = journal__get(c->j, &in->parent, &p) == 0 && !p.tombstone && p.type == RECORD_DIR;
	record_release(&p);
	return ok;
}

/* The deferred part of the jobs from @from up to @to (excluded): each directory fsync'd
 * once, then the records written. Lock held. */
static void batch_flush(struct batch_job *from, struct batch_job *to)
{
	for (struct batch_job *b = from; b != to; b = b->next) {
		struct ctx *c = b->c;
		int rc = 1; /* not fsync'd yet */

		if (!c->deferred)
			continue;
		for (struct batch_job *e = from; e != b && rc == 1; e = e->next)
			if (e->c->deferred &&
			    dfsr_uid_equal(&e->c->defer_rec.parent, &c->defer_rec.parent))
				rc = e->rc < 0 ? e->rc : 0; /* that directory's fsync */
		if (rc == 1)
			rc = fsync_dir(c->defer_dfd);
		b->rc = rc;
	}
	for (struct batch_job *b = from; b != to; b = b->next) {
		struct ctx *c = b->c;

		if (!c->deferred)
			continue;
		if (b->rc == 0)
			b->rc = journal__write_locked(c->j, &c->defer_rec, JOURNAL_OP_CREATE,
						      JOURNAL__ENTRY);
		close(c->defer_dfd);
		c->defer_dfd = -1;
		record_release(&c->defer_rec);
		c->deferred = false;
	}
}

/* Decide @jobs in one hold of the lock. */
static void batch_run(struct replica *r, struct batch_job *jobs)
{
	struct batch_job *from = jobs;
	bool pending = false;

	journal__lock(r->j);
	for (struct batch_job *b = jobs; b; b = b->next) {
		if (pending && !batch_simple(b->c, from, b)) {
			batch_flush(from, b);
			from = b;
			pending = false;
		}
		b->c->batched = true;
		b->rc = decide(b->c);
		pending |= b->c->deferred;
	}
	batch_flush(from, NULL);
	journal__unlock(r->j);
}

/* decide(@c) under the lock, in a batch with the installs waiting meanwhile. */
static int install_batched(struct replica *r, struct ctx *c)
{
	struct batch_job me = { .c = c };

	pthread_mutex_lock(&r->batch_lock);
	*r->batch_tail = &me;
	r->batch_tail = &me.next;
	for (;;) {
		struct batch_job *jobs, **tail = &r->batch_head;
		size_t n = 0;

		while (!me.done && r->batching)
			pthread_cond_wait(&r->batch_cond, &r->batch_lock);
		if (me.done)
			break;
		jobs = r->batch_head;
		/* the next batch: up to REPLICA_BATCH_MAX from the head (maybe not this job) */
		while (*tail && n < REPLICA_BATCH_MAX) {
			tail = &(*tail)->next;
			n++;
		}
		r->batch_head = *tail;
		if (!r->batch_head)
			r->batch_tail = &r->batch_head;
		*tail = NULL;
		r->batching = true;
		pthread_mutex_unlock(&r->batch_lock);
		batch_run(r, jobs);
		pthread_mutex_lock(&r->batch_lock);
		for (struct batch_job *b = jobs, *next; b; b = next) {
			next = b->next; /* @b is gone once done is seen */
			b->done = true;
		}
		r->batching = false;
		pthread_cond_broadcast(&r->batch_cond);
	}
	pthread_mutex_unlock(&r->batch_lock);
	return me.rc;
}

/* ---- content too old (docs/conflicts.md §12) ----------------------------------------- */

/* Note that a partner offered @u in a stale initial sync. Return: 0 or -ENOMEM. */
static int seen_add(struct replica *r, const struct dfsr_uid *u)
{
	int rc;

	pthread_mutex_lock(&r->seen_lock);
	rc = dfsr_uid_set_add(&r->seen, u);
	pthread_mutex_unlock(&r->seen_lock);
	return rc;
}

struct stale_obj {
	struct dfsr_uid uid;
	struct version_gvsn gvsn;
	bool dir;
};

/* The live records no partner offered, that we did not change since we became stale, and
 * whose UID we did not make after our last completed sync (the group never saw those: the
 * files made while we were away, found by the scan before we turned stale). */
static int stale_list(struct replica *r, uint64_t counter, struct stale_obj **out, size_t *n)
{
	struct db_iter *it = db_iter_new(journal__db(r->j), NULL, DB_CF_RECORDS);
	const struct dfsr_uid *own = journal_db_id(r->j);
	int64_t since = journal_stale_since(r->j);
	size_t cap = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!it)
		return -ENOMEM;
	pthread_mutex_lock(&r->seen_lock);
	for (db_iter_seek_first(it); rc == 0 && db_iter_valid(it); db_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *val = db_iter_value(it, &vlen);
		struct record rec;

		(void)db_iter_key(it, &klen);
		if (klen != DFSR_UID_LEN)
			continue;
		record_init(&rec);
		if (record_decode(&rec, val, vlen) == 0 && !rec.tombstone &&
		    !dfsr_uid_equal(&rec.uid, journal_root_uid(r->j)) &&
		    !dfsr_uid_set_has(&r->seen, &rec.uid) &&
		    !(dfsr_uid_equal(&rec.gvsn.db, own) && rec.gvsn.counter > counter) &&
		    !(since > 0 && rec.create_time_ns > since)) {
			if (*n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct stale_obj *nv = realloc(*out, nc * sizeof(*nv));

				if (!nv)
					rc = -ENOMEM;
				else
					*out = nv, cap = nc;
			}
			if (rc == 0) {
				(*out)[*n].uid = rec.uid;
				(*out)[*n].gvsn = rec.gvsn;
				(*out)[(*n)++].dir = rec.type == RECORD_DIR;
			}
		}
		record_release(&rec);
	}
	pthread_mutex_unlock(&r->seen_lock);
	if (rc == 0)
		rc = db_iter_status(it);
	db_iter_free(it);
	return rc;
}

/*
 * One stale object, if it is still as listed: a file or link goes to PreExisting (type
 * preexisting) and its record is dropped; a directory is removed with its record only if
 * empty by then (-ENOTEMPTY otherwise: it holds something kept). Lock held.
 */
static int stale_drop_locked(struct ctx *c, const struct stale_obj *o)
{
	struct record rec;
	int dfd = -1, rc;

	record_init(&rec);
	rc = journal__get(c->j, &o->uid, &rec);
	if (rc < 0 || rec.tombstone || version_gvsn_cmp(&rec.gvsn, &o->gvsn) != 0)
		goto out_release; /* changed meanwhile: no longer stale */
	rc = open_dir(c, &rec.parent, &dfd);
	if (rc < 0)
		goto out_release;
	if (o->dir) {
		rc = unlinkat(dfd, rec.name, AT_REMOVEDIR) < 0 ? -errno : fsync_dir(dfd);
		if (rc == -ENOENT)
			rc = 0;
		if (rc == 0)
			add_inval(c, dfd, rec.name);
	} else {
		rc = preserve(c, dfd, &rec, MANIFEST_PREEXISTING, MANIFEST_TYPE_PREEXISTING, NULL);
		if (rc == -ENOENT)
			rc = 0; /* gone from disk already: only the record goes */
	}
	if (rc == 0)
		rc = journal__drop_locked(c->j, &o->uid);
out_release:
	if (dfd >= 0)
		close(dfd);
	record_release(&rec);
	return rc < 0 && rc != -ENOENT ? rc : 0;
}

/*
 * The end of a stale initial sync: what no partner has any more (deleted and forgotten by
 * the group, as far as we can tell) must not come back to life by replicating out: files
 * and links go to PreExisting, directories that are then empty go; nothing is deleted.
 * Return: how many objects were moved or removed, or -ENOMEM / -EIO.
 */
static ssize_t stale_cleanup(struct replica *r, uint64_t counter)
{
	struct stale_obj *v;
	size_t n, moved = 0;
	struct ctx c;
	int rc;

	rc = stale_list(r, counter, &v, &n);
	if (rc < 0)
		return rc;
	memset(&c, 0, sizeof(c));
	c.r = r;
	c.j = r->j;
	c.fd = -1;
	c.v = REPLICA_DONE;
	c.defer_dfd = -1;
	record_init(&c.defer_rec);
	for (size_t i = 0; i < n; i++) {
		if (v[i].dir)
			continue;
		journal__lock(r->j);
		rc = stale_drop_locked(&c, &v[i]);
		journal__unlock(r->j);
		moved += rc == 0;
		run_invals(&c);
	}
	/* then the directories, pass after pass: one emptied by a pass goes in the next */
	for (bool progress = true; progress;) {
		progress = false;
		for (size_t i = 0; i < n; i++) {
			if (!v[i].dir)
				continue;
			journal__lock(r->j);
			rc = stale_drop_locked(&c, &v[i]);
			journal__unlock(r->j);
			if (rc == 0) {
				struct record probe;

				record_init(&probe);
				if (journal__get(r->j, &v[i].uid, &probe) == -ENOENT) {
					v[i].dir = false; /* done: out of the next passes */
					moved++;
					progress = true;
				}
				record_release(&probe);
			}
			run_invals(&c);
		}
	}
	free(v);
	record_release(&c.defer_rec);
	return (ssize_t)moved;
}

int replica_offer(struct replica *r, const struct replica_update *u, enum replica_verdict *v)
{
	struct ctx c;
	int rc = 0;

	if (journal_stale(r->j, NULL)) {
		rc = seen_add(r, &u->rec.uid);
		if (rc < 0)
			return rc;
	}
	ctx_init(&c, r, u, -1);
	if (precheck(&c)) {
		journal__lock(r->j);
		rc = decide(&c);
		journal__unlock(r->j);
	}
	run_invals(&c);
	*v = rc < 0 ? REPLICA_DONE : c.v;
	return rc;
}

int replica_install(struct replica *r, const struct replica_update *u, int fd,
		    enum replica_verdict *v)
{
	return replica_install_digest(r, u, fd, NULL, v);
}

int replica_install_digest(struct replica *r, const struct replica_update *u, int fd,
			   const uint8_t content[HASH_LEN], enum replica_verdict *v)
{
	struct hash_result h;
	struct ctx c;
	int rc = 0;

	ctx_init(&c, r, u, fd);
	*v = REPLICA_DONE;
	if (!precheck(&c))
		goto out_unlink;
	if (u->rec.type != RECORD_FILE || u->rec.tombstone) {
		refuse(&c, &u->rec, "data for an object that is not a file");
		goto out_unlink;
	}
	/* outside the lock: the data is ours alone in Installing */
	rc = apply_meta_fd(fd, u);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc == 0)
		rc = hash_fd(fd, content, &h);
	if (rc < 0) {
		install_failed(&c, &u->rec, "metadata", rc);
		return rc == -ENOSPC || rc == -ENOMEM ? rc : -EIO;
	}
	if (memcmp(h.hash, u->rec.hash, HASH_LEN) != 0) {
		refuse(&c, &u->rec, "replication hash mismatch");
		goto out_unlink;
	}
	rc = install_batched(r, &c);
	run_invals(&c);
	if (rc < 0)
		return rc;
	*v = c.v;
	if (c.placed || c.v == REPLICA_BUSY || c.v == REPLICA_WAIT)
		return 0;
out_unlink:
	*v = c.v;
	(void)unlinkat(r->installing_fd, c.asm_name, 0);
	return 0;
}

int replica_merge(struct replica *r, const struct version_vector *upstream, bool upstream_normal)
{
	return replica_merge_from(r, upstream, upstream_normal, true);
}

int replica_merge_from(struct replica *r, const struct version_vector *upstream,
		       bool upstream_normal, bool asked_all)
{
	bool ended = false;
	int rc;

	uint64_t counter;
	ssize_t moved;

	rc = journal__merge_knowledge(r->j, upstream, upstream_normal, asked_all, &ended);
	if (rc == -E2BIG)
		rc = -EIO;
	if (rc == 0 && ended && journal_stale(r->j, &counter)) {
		moved = stale_cleanup(r, counter);
		if (moved < 0)
			return (int)moved; /* still stale: the next merge tries again */
		rc = journal_stale_done(r->j);
		if (rc == 0)
			journal_event(r->j, EV_INITIAL_SYNC_DONE,
				      "content was too old: objects the group no longer has, moved "
				      "to PreExisting or removed if empty directories: %zd",
				      moved);
		return rc;
	}
	if (rc == 0 && ended)
		journal_event(r->j, EV_INITIAL_SYNC_DONE, NULL);
	return rc;
}

int replica_knowledge(struct replica *r, struct version_vector *out)
{
	return journal__knowledge(r->j, out);
}

int replica_hello_knowledge(struct replica *r, struct version_vector *out)
{
	return journal__revert_knowledge(r->j, out);
}

/* ---- after a restore: the preserved object goes (§9) ------------------------------- */

struct unpreserve_find {
	const char *name;
	char *path; /* original path of the first entry of @name */
	bool found;
};

static int unpreserve_visit(void *arg, const struct manifest_entry *e)
{
	struct unpreserve_find *f = arg;

	if (!e->preserved || strcmp(e->preserved, f->name) != 0 || f->found)
		return 0;
	f->found = true;
	f->path = strdup(e->path ? e->path : "");
	return f->path ? 0 : -ENOMEM;
}

int replica_unpreserve(struct replica *r, enum manifest_kind kind, const char *name)
{
	struct unpreserve_find f = { .name = name };
	int dir, rc;

	if (kind != MANIFEST_CONFLICT && kind != MANIFEST_PREEXISTING)
		return -EINVAL;
	if (!name || !record_name_valid(name))
		return -EINVAL;
	dir = kind == MANIFEST_CONFLICT ? r->conflict_fd : r->preexist_fd;
	/* the lock preserve() and conflict_cleanup() hold: no manifest update is lost */
	journal__lock(r->j);
	rc = manifest_list(r->private_fd, kind, unpreserve_visit, &f);
	if (rc == -ENOENT || (rc == 0 && !f.found))
		rc = -ENOENT;
	if (rc == 0)
		rc = dfsr_remove_tree(dir, name);
	if (rc == 0)
		rc = fsync_dir(dir);
	if (rc == 0)
		rc = manifest_remove(r->private_fd, kind, name);
	journal__unlock(r->j);
	if (rc == 0)
		journal_event(r->j, EV_PRESERVED_RESTORED, "kind=%s path=\"%s\" preserved=\"%s\"",
			      kind == MANIFEST_CONFLICT ? "conflict" : "preexisting", f.path, name);
	free(f.path);
	return rc;
}
