/*
 * journal.c - one folder's database seen as records, versions and an outbound journal;
 * the change API through which the filesystem reports every change.
 *
 * Every change is one transaction: under the journal mutex we read what is recorded,
 * decide, and write the new record, the (parent, name) index, the journal entry and the
 * folder meta (next counter, next seq, knowledge, status counters) in one RocksDB batch.
 * The in-memory copies of those counters are only updated after the batch committed, so
 * a failed write leaves memory and disk agreeing. Status counters travel in the same
 * batch, so they are right after a crash without a recount.
 *
 * Hashing (reading file data) happens in the caller's thread before the mutex is taken;
 * the mutex only covers a few RocksDB reads and one write. The directory records that
 * every change's path and parent check walk through are kept in memory under the mutex
 * ("the directories' cache" below), so a new file costs one read (its name in the index)
 * and a removal two (the name, the record). The one long hold is tombstoning a large
 * subtree, which writes one batch per record, children first, so the "every live record
 * is reachable" invariant holds after each batch.
 *
 * Identity: a rename keeps the UID. A tracked object replaced by a rename from an
 * untracked name (the "write x.tmp, rename over x" save pattern) keeps the target's UID
 * and gets a new version, as DFSR keeps the NTFS identity across ReplaceFile; a tracked
 * object replaced by another tracked object becomes a tombstone.
 *
 * Meta lives under one key ("folder") of the meta column family as a Meta message.
 *
 * Hard links (journal.h): besides the database, the journal keeps in memory which records
 * name which hard-linked backing object (core/linkmap.h), under a leaf mutex of its own
 * (links_lock, taken inside the journal mutex or alone, never around it). It is filled by
 * the scan and by every change recorded from a hash, and read by the filesystem, which
 * has each UID verified against the local path before use. It is a hint kept beside the
 * one-batch-per-change rule, not part of it: nothing of it is written to the database.
 */
#include "core/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/db.h"
#include "core/dfsr.pb-c.h"
#include "core/htab.h"
#include "core/internal.h"
#include "core/layout.h"
#include "core/linkmap.h"
#include "core/record.h"
#include "core/space.h"
#include "core/version.h"

#define META_KEY                "folder"
#define PATH_DEPTH_MAX          4096 /* guards parent-chain walks against a corrupt cycle */
/* Registered names of one object looked at per journal_link_others(): the callers know
 * fewer (fs/ keeps 1 + FS_LINK_UIDS per node); more names are left to the scan. */
#define JOURNAL_LINK_CANDIDATES 64
/* Directory records kept in memory (dir_get()); full, the cache starts afresh. */
#define JOURNAL_DIRS_MAX        4096
#define JOURNAL_DIRS_BUCKETS    64

/* A version a read-only folder must install again (journal__revert_mark()). */
struct revert_mark {
	struct dfsr_uid uid;
	struct version_gvsn gvsn; /* counter 0: installed again since */
	uint64_t order;           /* later marks of the same UID replace earlier ones */
	bool present;             /* a directory left in place with other metadata */
};

struct journal_counts {
	uint64_t files;
	uint64_t folders;
	uint64_t bytes;
	uint64_t tombstones;
	uint64_t journal;
};

struct journal {
	const struct config *cfg; /* immutable */
	/* Swapped whole by journal_set_folder() on a reload (quotas, filters); every use
	 * loads it once. The member keeps superseded configs alive until exit. */
	const struct config_folder *_Atomic folder;
	int root_fd;              /* immutable */
	bool read_only;           /* immutable */
	bool unclean;             /* immutable after open */
	struct db *db;            /* immutable; thread-safe */
	struct space *space;      /* immutable; thread-safe; NULL if read-only */
	struct dfsr_uid root_uid; /* immutable */
	struct dfsr_uid db_id;    /* immutable */
	uint64_t event_n;         /* atomic */

	/* Hard links (journal_link_note()): a leaf mutex, taken with or without @lock held,
	 * never the other way round. */
	pthread_mutex_t links_lock;
	struct linkmap *links; /* protected by links_lock */

	pthread_mutex_t lock; /* protects everything below; innermost lock of core but for
			       * links_lock above */
	uint64_t counter;     /* last counter used by db_id */
	uint64_t next_seq;
	struct version_vector knowledge;
	enum journal_state state;
	_Atomic int64_t last_sync_ns; /* §12, see dfsr.proto Meta; any thread */
	bool stale;                   /* §12: in initial sync because the content was too old */
	uint64_t stale_counter;       /* counter when it became stale */
	int64_t stale_last_sync_ns;   /* last_sync_ns when it became stale (0: unknown) */
	int64_t last_sync_put_ns;     /* last_sync_ns in the meta batch being written (lock) */
	int64_t last_sync_saved_ns;   /* last_sync_ns as last written (txn_apply(); lock) */
	bool running;
	struct journal_counts counts;
	struct htab dirs;       /* struct dir_ent by UID (dir_get()) */
	bool dirs_ok;           /* dirs is set up (else not used) */
	struct db_batch *batch; /* scratch for one transaction */
	bool scanning;
	uint64_t scan_files_done, scan_bytes_done, scan_files_total, scan_bytes_total;
	int64_t scan_started_ns;
	void (*changed_fn)(void *arg); /* journal_set_changed() */
	void *changed_arg;
	bool changed;            /* a journal entry was committed since the lock was taken */
	bool db_failing;         /* the last change the database was given failed */
	int64_t wfail_logged_ns; /* the last 1201 (write_failed()) */
	uint64_t wfail_repeats;  /* 1201s not logged since */
	/* Read-only folders: versions to install again (docs/conflicts.md §11), marked by the
	 * consistency scan. In memory only: every start's scan finds them again. */
	struct revert_mark *marks;
	size_t nmarks, marks_cap;
	uint64_t marks_added;
	bool marks_sorted;
};

/* The pending values of one transaction; copied into the journal after commit. */
struct txn {
	uint64_t counter;
	uint64_t next_seq;
	struct journal_counts counts;
	enum journal_state state;
	bool running;
};

/* What a record was before a change (for counters and the names index). */
struct rec_before {
	bool exists;
	bool tombstone;
	char type;
	uint64_t size;
	struct dfsr_uid parent;
	char name[RECORD_NAME_MAX + 1];
	bool indexed; /* the index at (parent, name) is known to name this record */
};

const char *journal_state_name(enum journal_state s)
{
	switch (s) {
	case JOURNAL_STATE_INITIAL_BUILD:
		return "initial-build";
	case JOURNAL_STATE_INITIAL_SYNC:
		return "initial-sync";
	case JOURNAL_STATE_NORMAL:
		return "normal";
	case JOURNAL_STATE_ERROR:
		return "error";
	}
	return "error";
}

const char *journal_op_name(enum journal_op op)
{
	switch (op) {
	case JOURNAL_OP_CREATE:
		return "create";
	case JOURNAL_OP_MODIFY:
		return "modify";
	case JOURNAL_OP_META:
		return "meta";
	case JOURNAL_OP_RENAME:
		return "rename";
	case JOURNAL_OP_DELETE:
		return "delete";
	}
	return "unknown";
}

static ProtobufCBinaryData bin(const void *p, size_t len)
{
	ProtobufCBinaryData b = { .len = len, .data = (uint8_t *)(uintptr_t)p };

	return b;
}

static void txn_begin(const struct journal *j, struct txn *t)
{
	t->counter = j->counter;
	t->next_seq = j->next_seq;
	t->counts = j->counts;
	t->state = j->state;
	t->running = j->running;
}

static void txn_apply(struct journal *j, const struct txn *t)
{
	j->counter = t->counter;
	j->next_seq = t->next_seq;
	j->counts = t->counts;
	j->state = t->state;
	j->running = t->running;
	j->last_sync_saved_ns = j->last_sync_put_ns; /* every meta batch is committed here */
	j->db_failing = false;
	/* Cannot grow past the first change (the entry exists then); failure only delays it. */
	if (t->counter)
		(void)version_vector_raise(&j->knowledge, &j->db_id, t->counter);
}

/*
 * Release the lock, then tell the changed hook (journal_set_changed()) if a batch that
 * appended a journal entry committed while it was held. Every unlock goes through here.
 */
static void journal_unlock(struct journal *j)
{
	void (*fn)(void *arg) = j->changed ? j->changed_fn : NULL;
	void *arg = j->changed_arg;

	j->changed = false;
	pthread_mutex_unlock(&j->lock);
	if (fn)
		fn(arg);
}

void journal_set_changed(struct journal *j, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&j->lock);
	j->changed_fn = fn;
	j->changed_arg = arg;
	pthread_mutex_unlock(&j->lock);
}

/* ---- meta ---------------------------------------------------------------------------- */

static int meta_put(struct journal *j, struct db_batch *b, const struct txn *t)
{
	Dfsr__Meta m = DFSR__META__INIT;
	struct version_vector kv;
	Dfsr__Gvsn *ent = NULL, **ptr = NULL;
	uint8_t *buf = NULL;
	size_t len;
	int rc;

	version_vector_init(&kv);
	rc = version_vector_copy(&kv, &j->knowledge);
	if (rc == 0 && t->counter)
		rc = version_vector_raise(&kv, &j->db_id, t->counter);
	if (rc < 0)
		goto out_free;
	ent = calloc(kv.n + 1, sizeof(*ent));
	ptr = calloc(kv.n + 1, sizeof(*ptr));
	if (!ent || !ptr) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (size_t i = 0; i < kv.n; i++) {
		dfsr__gvsn__init(&ent[i]);
		ent[i].db = bin(kv.v[i].db.b, DFSR_UID_LEN);
		ent[i].counter = kv.v[i].counter;
		ptr[i] = &ent[i];
	}
	m.db_id = bin(j->db_id.b, DFSR_UID_LEN);
	m.n_knowledge = kv.n;
	m.knowledge = ptr;
	m.counter = t->counter;
	m.next_seq = t->next_seq;
	m.state = (uint32_t)t->state;
	m.running = t->running;
	m.files = t->counts.files;
	m.folders = t->counts.folders;
	m.bytes = t->counts.bytes;
	m.tombstones = t->counts.tombstones;
	m.journal = t->counts.journal;
	m.folder = bin(j->folder->name, strlen(j->folder->name));
	m.last_sync_ns = atomic_load(&j->last_sync_ns);
	j->last_sync_put_ns = m.last_sync_ns; /* saved by txn_apply() once committed */
	m.stale = j->stale;
	m.stale_counter = j->stale_counter;
	m.stale_last_sync_ns = j->stale_last_sync_ns;
	len = dfsr__meta__get_packed_size(&m);
	buf = malloc(len ? len : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_free;
	}
	dfsr__meta__pack(&m, buf);
	db_batch_put(b, DB_CF_META, META_KEY, strlen(META_KEY), buf, len);
out_free:
	free(buf);
	free(ptr);
	free(ent);
	version_vector_release(&kv);
	return rc;
}

static int meta_load_msg(struct journal *j, const Dfsr__Meta *m)
{
	if (m->db_id.len != DFSR_UID_LEN || m->state > JOURNAL_STATE_ERROR ||
	    m->n_knowledge > VERSION_VV_MAX || m->next_seq == 0)
		return -EBADMSG;
	memcpy(j->db_id.b, m->db_id.data, DFSR_UID_LEN);
	if (dfsr_uid_is_zero(&j->db_id))
		return -EBADMSG;
	for (size_t i = 0; i < m->n_knowledge; i++) {
		struct dfsr_uid id;

		if (m->knowledge[i]->db.len != DFSR_UID_LEN)
			return -EBADMSG;
		memcpy(id.b, m->knowledge[i]->db.data, DFSR_UID_LEN);
		if (version_vector_raise(&j->knowledge, &id, m->knowledge[i]->counter) < 0)
			return -EBADMSG;
	}
	j->counter = m->counter;
	j->next_seq = m->next_seq;
	j->state = (enum journal_state)m->state;
	j->running = m->running;
	j->counts.files = m->files;
	j->counts.folders = m->folders;
	j->counts.bytes = m->bytes;
	j->counts.tombstones = m->tombstones;
	j->counts.journal = m->journal;
	atomic_store(&j->last_sync_ns, m->last_sync_ns);
	j->last_sync_saved_ns = m->last_sync_ns;
	j->stale = m->stale;
	j->stale_counter = m->stale_counter;
	j->stale_last_sync_ns = m->stale_last_sync_ns;
	return 0;
}

/* Return: 0 (loaded), -ENOENT (no meta yet), -EBADMSG, -EIO, -ENOMEM. */
static int meta_load(struct journal *j)
{
	struct dfsr_buf v;
	Dfsr__Meta *m;
	int rc;

	dfsr_buf_init(&v);
	rc = db_get(j->db, NULL, DB_CF_META, META_KEY, strlen(META_KEY), &v);
	if (rc < 0)
		goto out_release;
	m = dfsr__meta__unpack(NULL, v.len, (const uint8_t *)v.p);
	if (!m) {
		rc = -EBADMSG;
		goto out_release;
	}
	rc = meta_load_msg(j, m);
	dfsr__meta__free_unpacked(m, NULL);
out_release:
	dfsr_buf_release(&v);
	return rc;
}

/* Write the meta alone (open, close, state changes). Called with the lock held. */
static int meta_commit_locked(struct journal *j, const struct txn *t, bool sync)
{
	int rc;

	db_batch_clear(j->batch);
	rc = meta_put(j, j->batch, t);
	if (rc == 0)
		rc = db_batch_commit(j->batch, sync);
	db_batch_clear(j->batch);
	if (rc == 0)
		txn_apply(j, t);
	return rc;
}

/* ---- reading records and the index ---------------------------------------------------- */

int journal__get(struct journal *j, const struct dfsr_uid *uid, struct record *out)
{
	struct dfsr_buf v;
	int rc;

	dfsr_buf_init(&v);
	rc = db_get(j->db, NULL, DB_CF_RECORDS, uid->b, DFSR_UID_LEN, &v);
	if (rc == 0) {
		rc = record_decode(out, (const uint8_t *)v.p, v.len);
		if (rc == -EBADMSG) {
			char hex[DFSR_UID_HEX_LEN];

			dfsr_uid_hex(uid, hex);
			journal_event(j, EV_DB_CORRUPT_RECORD, "uid=%s", hex);
			rc = -EIO;
		}
	}
	dfsr_buf_release(&v);
	return rc;
}

/* The UID indexed at (@parent, @name). Return: 0, -ENOENT, -EIO, -ENOMEM. */
static int name_get(struct journal *j, const struct dfsr_uid *parent, const char *name,
		    struct dfsr_uid *out)
{
	uint8_t key[DB_KEY_NAME_MAX];
	size_t klen = db_key_name(key, parent, name);
	struct dfsr_buf v;
	int rc;

	if (!klen)
		return -ENOENT;
	dfsr_buf_init(&v);
	rc = db_get(j->db, NULL, DB_CF_NAMES, key, klen, &v);
	if (rc == 0 && v.len != DFSR_UID_LEN)
		rc = -EIO;
	if (rc == 0)
		memcpy(out->b, v.p, DFSR_UID_LEN);
	dfsr_buf_release(&v);
	return rc;
}

/* ---- the directories' cache (lock held) ---------------------------------------------- */

/*
 * Every version's journal entry carries its path, built through the records of its
 * ancestors, and every new object asks whether its parent is a live directory: a RocksDB
 * read per ancestor per change (four reads per create of a file two levels down, three of
 * them of the same two directories). So the journal keeps what those walks need of the
 * directory records it reads (parent, name, tombstone) in memory, by UID.
 *
 * It holds committed rows only, and is used with the lock held only:
 *  - an entry is made from a database read under the lock while the transaction's batch is
 *    still empty (dir_note()): the read then shows the database as committed, and no
 *    writer can change it before the lock is released;
 *  - every row a batch is given for a record (put_encoded_record(), and the two deletes)
 *    drops that UID's entry first, whether or not the batch then commits: a failed commit
 *    leaves nothing stale, and a record put earlier in the same batch is read from the
 *    database (as committed) and not kept;
 *  - readers without the lock (journal_lookup(), journal_path(), the hard-link checks)
 *    never see it: such a reader could put back a row a writer has just replaced.
 * Bounded by JOURNAL_DIRS_MAX entries; when full it is emptied and fills again.
 */
struct dir_ent {
	struct htab_node node;
	struct dfsr_uid uid;
	struct dfsr_uid parent;
	bool tombstone;
	char name[]; /* NUL-terminated */
};

/* What a walk needs of one record (a directory, but for a corrupt chain). */
struct dir_view {
	struct dfsr_uid parent;
	bool tombstone;
	char type;
	char name[RECORD_NAME_MAX + 1];
};

static size_t uid_hash(const struct dfsr_uid *u)
{
	uint64_t a, b;

	memcpy(&a, u->b, 8);
	memcpy(&b, u->b + 8, 8);
	return htab_hash_u64x2(a, b);
}

static size_t dir_node_hash(const struct htab_node *n)
{
	return uid_hash(&dfsr_container_of_const(n, struct dir_ent, node)->uid);
}

static void dir_free(void *arg, struct htab_node *n)
{
	(void)arg;
	free(dfsr_container_of(n, struct dir_ent, node));
}

static struct dir_ent *dirs_find(struct journal *j, const struct dfsr_uid *uid)
{
	if (!j->dirs_ok)
		return NULL;
	for (struct htab_node *p = htab_first(&j->dirs, uid_hash(uid)); p; p = p->next) {
		struct dir_ent *e = dfsr_container_of(p, struct dir_ent, node);

		if (dfsr_uid_equal(&e->uid, uid))
			return e;
	}
	return NULL;
}

/* A row for @uid goes into the batch: its entry no longer holds. Lock held. */
static void dirs_forget(struct journal *j, const struct dfsr_uid *uid)
{
	struct dir_ent *e = dirs_find(j, uid);

	if (e) {
		htab_del(&j->dirs, &e->node);
		free(e);
	}
}

/* Keep directory record @r, just read from the database with the lock held. */
static void dir_note(struct journal *j, const struct record *r)
{
	size_t len = strlen(r->name) + 1;
	struct dir_ent *e;

	if (!j->dirs_ok || r->type != RECORD_DIR || db_batch_count(j->batch) != 0 ||
	    dirs_find(j, &r->uid))
		return;
	if (j->dirs.count >= JOURNAL_DIRS_MAX) {
		htab_release(&j->dirs, dir_free, NULL);
		j->dirs_ok = htab_init(&j->dirs, JOURNAL_DIRS_BUCKETS, dir_node_hash) == 0;
		if (!j->dirs_ok)
			return;
	}
	e = malloc(sizeof(*e) + len);
	if (!e)
		return; /* a cache: the next walk reads the database again */
	e->uid = r->uid;
	e->parent = r->parent;
	e->tombstone = r->tombstone;
	memcpy(e->name, r->name, len);
	htab_add(&j->dirs, &e->node);
}

/* Record @uid as a walk needs it: from the cache if @locked (the caller holds the lock),
 * else (or on a miss) from the database. Return: 0, -ENOENT, -EIO, -ENOMEM. */
static int dir_get(struct journal *j, const struct dfsr_uid *uid, bool locked, struct dir_view *v)
{
	struct dir_ent *e = locked ? dirs_find(j, uid) : NULL;
	struct record r;
	int rc;

	if (e) {
		v->parent = e->parent;
		v->tombstone = e->tombstone;
		v->type = RECORD_DIR;
		snprintf(v->name, sizeof(v->name), "%s", e->name);
		return 0;
	}
	rc = journal__get(j, uid, &r);
	if (rc < 0)
		return rc;
	v->parent = r.parent;
	v->tombstone = r.tombstone;
	v->type = r.type;
	snprintf(v->name, sizeof(v->name), "%s", r.name);
	if (locked)
		dir_note(j, &r);
	record_release(&r);
	return 0;
}

/* Prepend "@s/" (or "@s" to an empty buffer). */
static int path_prepend(struct dfsr_buf *b, const char *s)
{
	size_t n = strlen(s), add = b->len ? n + 1 : n, old = b->len;
	int rc;

	rc = dfsr_buf_add(b, s, n);
	if (rc == 0 && old)
		rc = dfsr_buf_add(b, "/", 1);
	if (rc < 0)
		return rc;
	memmove(b->p + add, b->p, old);
	memcpy(b->p, s, n);
	if (old)
		b->p[n] = '/';
	return 0;
}

/* Relative path of (@parent, @name) through the records' parent chain; @locked: the caller
 * holds the lock (the walk may use the directories' cache). */
static int build_path_at(struct journal *j, const struct dfsr_uid *parent, const char *name,
			 bool locked, struct dfsr_buf *out)
{
	struct dfsr_uid cur = *parent;
	struct dir_view v;
	int rc;

	out->len = 0;
	rc = dfsr_buf_add(out, name, strlen(name));
	for (int depth = 0; rc == 0 && !dfsr_uid_equal(&cur, &j->root_uid); depth++) {
		if (depth > PATH_DEPTH_MAX)
			return -EIO;
		rc = dir_get(j, &cur, locked, &v);
		if (rc < 0)
			return rc == -ENOENT ? -EIO : rc;
		rc = path_prepend(out, v.name);
		cur = v.parent;
	}
	return rc;
}

static int build_path(struct journal *j, const struct dfsr_uid *parent, const char *name,
		      struct dfsr_buf *out)
{
	return build_path_at(j, parent, name, false, out);
}

static int build_path_locked(struct journal *j, const struct dfsr_uid *parent, const char *name,
			     struct dfsr_buf *out)
{
	return build_path_at(j, parent, name, true, out);
}

/* ---- hard links (journal.h): the in-memory map of other names ------------------------ */

void journal_link_note(struct journal *j, const struct stat *st, const struct dfsr_uid *uid)
{
	if (dfsr_uid_is_zero(uid) || S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return;
	pthread_mutex_lock(&j->links_lock);
	/* -ENOSPC past JOURNAL_LINKS_MAX, -ENOMEM: the name is left to the next scan */
	(void)linkmap_set(j->links, (uint64_t)st->st_dev, (uint64_t)st->st_ino, uid);
	pthread_mutex_unlock(&j->links_lock);
}

/* The record of @uid became a tombstone: its name no longer names any object. */
static void link_forget(struct journal *j, const struct dfsr_uid *uid)
{
	pthread_mutex_lock(&j->links_lock);
	linkmap_forget(j->links, uid);
	pthread_mutex_unlock(&j->links_lock);
}

/*
 * Does the path of record @r, resolved from the local path now, reach the object @st?
 * Return: 0 with *@ok set, or -EIO, -ENOMEM (nothing decided).
 */
static int path_reaches(struct journal *j, const struct record *r, const struct stat *st, bool *ok)
{
	struct dfsr_buf path;
	struct stat cur;
	int rc;

	*ok = false;
	dfsr_buf_init(&path);
	rc = build_path(j, &r->parent, r->name, &path);
	if (rc == 0 && fstatat(j->root_fd, path.p, &cur, AT_SYMLINK_NOFOLLOW) == 0)
		*ok = cur.st_dev == st->st_dev && cur.st_ino == st->st_ino;
	dfsr_buf_release(&path);
	return rc;
}

/* Is record @uid a live non-directory name of the object @st now? Return: as above. */
static int link_verify(struct journal *j, const struct dfsr_uid *uid, const struct stat *st,
		       bool *ok)
{
	struct record r;
	int rc;

	*ok = false;
	rc = journal__get(j, uid, &r);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	if (!r.tombstone && r.type != RECORD_DIR)
		rc = path_reaches(j, &r, st, ok);
	record_release(&r);
	return rc;
}

/* Record @uid is not a name of the object @st (any more): drop that entry of the map. */
static void link_drop(struct journal *j, const struct stat *st, const struct dfsr_uid *uid)
{
	pthread_mutex_lock(&j->links_lock);
	linkmap_del(j->links, (uint64_t)st->st_dev, (uint64_t)st->st_ino, uid);
	pthread_mutex_unlock(&j->links_lock);
}

/* ---- writing one version ---------------------------------------------------------- */

static void before_of(const struct record *r, struct rec_before *b)
{
	b->exists = true;
	b->tombstone = r->tombstone;
	b->type = r->type;
	b->size = r->size;
	b->parent = r->parent;
	memcpy(b->name, r->name, sizeof(b->name));
	b->indexed = false;
}

static void counts_add(struct journal_counts *c, bool tombstone, char type, uint64_t size, int sign)
{
	uint64_t *n = tombstone ? &c->tombstones : type == RECORD_DIR ? &c->folders : &c->files;

	if (sign > 0) {
		(*n)++;
		if (!tombstone && type != RECORD_DIR)
			c->bytes += size;
		return;
	}
	if (*n)
		(*n)--;
	if (!tombstone && type != RECORD_DIR)
		c->bytes = c->bytes >= size ? c->bytes - size : 0;
}

static void fill_stat(struct record *r, const struct hash_result *h)
{
	memcpy(r->hash, h->hash, HASH_LEN);
	memcpy(r->content, h->content, HASH_LEN);
	r->type = record_type_of(h->st.st_mode);
	r->size = r->type == RECORD_DIR ? 0 : (uint64_t)h->st.st_size;
	r->mode = (uint32_t)h->st.st_mode & 07777u;
	r->owner = h->st.st_uid;
	r->group = h->st.st_gid;
	r->mtime_ns = (int64_t)h->st.st_mtim.tv_sec * 1000000000 + h->st.st_mtim.tv_nsec;
	r->ctime_ns = (int64_t)h->st.st_ctim.tv_sec * 1000000000 + h->st.st_ctim.tv_nsec;
}

static bool stat_fields_equal(const struct record *r, const struct hash_result *h)
{
	struct record n = *r;

	fill_stat(&n, h);
	return n.size == r->size && n.mode == r->mode && n.owner == r->owner &&
	       n.group == r->group && n.mtime_ns == r->mtime_ns && n.ctime_ns == r->ctime_ns;
}

/* Every record row goes into a batch here (lock held). */
static int put_encoded_record(struct journal *j, const struct record *r)
{
	struct dfsr_buf v;
	int rc;

	dirs_forget(j, &r->uid);
	dfsr_buf_init(&v);
	rc = record_encode(r, &v);
	if (rc == 0)
		db_batch_put(j->batch, DB_CF_RECORDS, r->uid.b, DFSR_UID_LEN, v.p, v.len);
	dfsr_buf_release(&v);
	return rc;
}

static int put_entry(struct db_batch *b, const struct record *r, enum journal_op op,
		     const struct dfsr_buf *path)
{
	Dfsr__JournalEntry e = DFSR__JOURNAL_ENTRY__INIT;
	Dfsr__Gvsn g = DFSR__GVSN__INIT;
	uint8_t key[8], *buf;
	size_t len;

	g.db = bin(r->gvsn.db.b, DFSR_UID_LEN);
	g.counter = r->gvsn.counter;
	e.uid = bin(r->uid.b, DFSR_UID_LEN);
	e.gvsn = &g;
	e.op = (uint32_t)op;
	e.time_ns = r->change_time_ns;
	e.type = (uint32_t)(unsigned char)r->type;
	e.path = bin(path->p, path->len);
	len = dfsr__journal_entry__get_packed_size(&e);
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	dfsr__journal_entry__pack(&e, buf);
	db_put_be64(key, r->seq);
	db_batch_put(b, DB_CF_JOURNAL, key, sizeof(key), buf, len);
	free(buf);
	return 0;
}

/* Index changes of a version: drop the old name (if it still names us), add the new. */
static int index_update(struct journal *j, const struct record *r, const struct rec_before *old)
{
	uint8_t key[DB_KEY_NAME_MAX];
	struct dfsr_uid cur;
	size_t klen;
	int rc;

	if (old->exists && !old->tombstone &&
	    (r->tombstone || !dfsr_uid_equal(&old->parent, &r->parent) ||
	     strcmp(old->name, r->name) != 0)) {
		cur = r->uid;
		rc = old->indexed ? 0 : name_get(j, &old->parent, old->name, &cur);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		if (rc == 0 && dfsr_uid_equal(&cur, &r->uid)) {
			klen = db_key_name(key, &old->parent, old->name);
			db_batch_delete(j->batch, DB_CF_NAMES, key, klen);
		}
	}
	if (!r->tombstone) {
		klen = db_key_name(key, &r->parent, r->name);
		db_batch_put(j->batch, DB_CF_NAMES, key, klen, r->uid.b, DFSR_UID_LEN);
	}
	return 0;
}

/*
 * Event 1201 for a change the database did not take (it is on disk; the next start's scan
 * records it). While writes keep failing (a full disk) at most one a minute, and the next
 * one logged counts those that were not. The folder shows as "error" (journal_get_status())
 * until a change is written again. Lock held.
 */
static void write_failed(struct journal *j, const char *path, const char *op, int rc)
{
	int64_t now = dfsr_mono_ns();

	j->db_failing = true; /* state "error" until a change is written again */
	if (j->wfail_logged_ns && now - j->wfail_logged_ns < 60 * (int64_t)1000000000) {
		j->wfail_repeats++;
		return;
	}
	if (j->wfail_repeats)
		journal_event(j, EV_JOURNAL_WRITE_FAILED,
			      "path=\"%s\" op=%s error=\"%s\" also_failed=%" PRIu64, path, op,
			      dfsr_strerror(rc), j->wfail_repeats);
	else
		journal_event(j, EV_JOURNAL_WRITE_FAILED, "path=\"%s\" op=%s error=\"%s\"", path,
			      op, dfsr_strerror(rc));
	j->wfail_logged_ns = now;
	j->wfail_repeats = 0;
}

/*
 * Give @r a new version and commit it with its journal entry, index and meta. @old says
 * what was recorded before (exists == false for a create). Called with the lock held.
 */
static int put_version_locked(struct journal *j, struct record *r, const struct rec_before *old,
			      enum journal_op op)
{
	struct dfsr_buf path;
	struct txn t;
	int rc;

	txn_begin(j, &t);
	t.counter++;
	r->gvsn.db = j->db_id;
	r->gvsn.counter = t.counter;
	r->seq = t.next_seq++;
	r->change_time_ns = dfsr_now_ns();
	version_vector_release(&r->origin); /* a new version has seen all of vv */
	rc = version_vector_raise(&r->vv, &j->db_id, t.counter);
	if (rc < 0)
		return rc;
	if (old->exists)
		counts_add(&t.counts, old->tombstone, old->type, old->size, -1);
	counts_add(&t.counts, r->tombstone, r->type, r->size, 1);
	t.counts.journal++;
	dfsr_buf_init(&path);
	rc = build_path_locked(j, &r->parent, r->name, &path);
	db_batch_clear(j->batch);
	if (rc == 0)
		rc = index_update(j, r, old);
	if (rc == 0)
		rc = put_encoded_record(j, r);
	if (rc == 0)
		rc = put_entry(j->batch, r, op, &path);
	if (rc == 0)
		rc = meta_put(j, j->batch, &t);
	if (rc == 0)
		rc = db_batch_commit(j->batch, false);
	db_batch_clear(j->batch);
	if (rc == 0) {
		txn_apply(j, &t);
		j->changed = true;
		if (r->tombstone)
			link_forget(j, &r->uid);
	} else {
		write_failed(j, path.p ? path.p : r->name, journal_op_name(op), rc);
	}
	dfsr_buf_release(&path);
	return rc;
}

/* Rewrite @r's stat fields only (no version). Called with the lock held. */
static int refresh_locked(struct journal *j, struct record *r, const struct hash_result *h)
{
	int rc;

	if (stat_fields_equal(r, h))
		return 0;
	fill_stat(r, h);
	db_batch_clear(j->batch);
	rc = put_encoded_record(j, r);
	if (rc == 0)
		rc = db_batch_commit(j->batch, false);
	db_batch_clear(j->batch);
	return rc;
}

/* ---- change primitives (lock held) ---------------------------------------------------- */

bool journal__tracked(const struct journal *j, const struct dfsr_uid *parent, const char *name,
		      char type)
{
	if (dfsr_uid_is_zero(parent) || !record_name_valid(name) || !type)
		return false;
	if (dfsr_uid_equal(parent, &j->root_uid) && strcmp(name, LAYOUT_PRIVATE) == 0)
		return false;
	if (type == RECORD_DIR)
		return !filter_match(&j->folder->subfolder_filter, name);
	return !filter_match(&j->folder->file_filter, name);
}

/* True if @parent is the root or a live directory record; @locked as for dir_get(). */
static int parent_live(struct journal *j, const struct dfsr_uid *parent, bool locked, bool *live)
{
	struct dir_view v;
	int rc;

	*live = false;
	if (dfsr_uid_equal(parent, &j->root_uid)) {
		*live = true;
		return 0;
	}
	if (dfsr_uid_is_zero(parent))
		return 0;
	rc = dir_get(j, parent, locked, &v);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	*live = !v.tombstone && v.type == RECORD_DIR;
	return 0;
}

static int tracked_locked(struct journal *j, const struct dfsr_uid *parent, const char *name,
			  char type, bool *tracked)
{
	*tracked = false;
	if (!journal__tracked(j, parent, name, type))
		return 0;
	return parent_live(j, parent, true, tracked);
}

static int remove_seen_locked(struct journal *j, const struct dfsr_uid *uid, uint64_t *removed,
			      int depth, struct version_vector *seen,
			      const struct dfsr_uid *at_parent, const char *at_name);

/* Called by each_child() for one entry of a directory; @k/@klen is its names-index key. */
typedef int (*child_fn)(struct journal *j, const struct dfsr_uid *child, const uint8_t *k,
			size_t klen, void *arg);

/* Call @fn for every entry of directory @dir in the names index, stopping at the first
 * error. */
static int each_child(struct journal *j, const struct dfsr_uid *dir, child_fn fn, void *arg)
{
	struct db_iter *it = db_iter_new(j->db, NULL, DB_CF_NAMES);
	int rc = 0;

	if (!it)
		return -ENOMEM;
	for (db_iter_seek(it, dir->b, DFSR_UID_LEN); rc == 0 && db_iter_valid(it);
	     db_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = db_iter_key(it, &klen), *v = db_iter_value(it, &vlen);
		struct dfsr_uid child;

		if (klen < DFSR_UID_LEN || memcmp(k, dir->b, DFSR_UID_LEN) != 0)
			break;
		if (vlen != DFSR_UID_LEN)
			continue;
		memcpy(child.b, v, DFSR_UID_LEN);
		rc = fn(j, &child, k, klen, arg);
	}
	if (rc == 0)
		rc = db_iter_status(it);
	db_iter_free(it);
	return rc;
}

struct remove_ctx {
	uint64_t *removed;
	int depth;
	struct version_vector *seen;
};

static int remove_child(struct journal *j, const struct dfsr_uid *child, const uint8_t *k,
			size_t klen, void *arg)
{
	struct remove_ctx *x = arg;

	(void)k;
	(void)klen;
	return remove_seen_locked(j, child, x->removed, x->depth + 1, x->seen, NULL, NULL);
}

/* Tombstone every live child of directory @uid (children first); @seen collects their
 * tombstones' vectors. */
static int remove_children_locked(struct journal *j, const struct dfsr_uid *uid, uint64_t *removed,
				  int depth, struct version_vector *seen)
{
	struct remove_ctx x = { .removed = removed, .depth = depth, .seen = seen };

	return each_child(j, uid, remove_child, &x);
}

/*
 * Tombstone @uid, everything below it first. A directory's tombstone also takes in the
 * vectors of the tombstones made below it, so that it dominates every descendant version
 * the deleting member saw: a partner receiving it tells those (deleted with it) from what
 * is new to the deleter (docs/conflicts.md §7). @seen (may be NULL) collects the vector of
 * the tombstone made here. @at_parent and @at_name (or NULL): where the caller found @uid
 * in the names index with the lock held, which spares index_update() reading it again.
 */
static int remove_seen_locked(struct journal *j, const struct dfsr_uid *uid, uint64_t *removed,
			      int depth, struct version_vector *seen,
			      const struct dfsr_uid *at_parent, const char *at_name)
{
	struct version_vector below;
	struct rec_before before;
	struct record r;
	int rc;

	if (depth > PATH_DEPTH_MAX)
		return -EIO;
	rc = journal__get(j, uid, &r);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	version_vector_init(&below);
	if (r.tombstone)
		goto out_release;
	if (r.type == RECORD_DIR) {
		rc = remove_children_locked(j, uid, removed, depth, &below);
		if (rc == 0)
			rc = version_vector_merge(&r.vv, &below);
		if (rc < 0)
			goto out_release;
	}
	before_of(&r, &before);
	/* the children's batches (above) never touch the index at the record's own name */
	before.indexed = at_parent && dfsr_uid_equal(at_parent, &r.parent) &&
			 strcmp(at_name, r.name) == 0;
	r.tombstone = true;
	rc = put_version_locked(j, &r, &before, JOURNAL_OP_DELETE);
	if (rc == 0 && removed)
		(*removed)++;
	if (rc == 0 && seen)
		rc = version_vector_merge(seen, &r.vv);
out_release:
	version_vector_release(&below);
	record_release(&r);
	return rc;
}

static int remove_locked(struct journal *j, const struct dfsr_uid *uid, uint64_t *removed,
			 int depth)
{
	return remove_seen_locked(j, uid, removed, depth, NULL, NULL, NULL);
}

/* remove_locked() of @uid, which name_get() found at (@parent, @name) with the lock held. */
static int remove_at_locked(struct journal *j, const struct dfsr_uid *uid,
			    const struct dfsr_uid *parent, const char *name)
{
	return remove_seen_locked(j, uid, NULL, 0, NULL, parent, name);
}

static int create_locked(struct journal *j, const struct dfsr_uid *parent, const char *name,
			 const struct hash_result *h, struct dfsr_uid *out)
{
	struct rec_before none = { .exists = false };
	struct record r;
	int rc;

	record_init(&r);
	dfsr_uid_random(&r.uid);
	r.parent = *parent;
	snprintf(r.name, sizeof(r.name), "%s", name);
	fill_stat(&r, h);
	r.create_time_ns = dfsr_now_ns();
	rc = put_version_locked(j, &r, &none, JOURNAL_OP_CREATE);
	if (rc == 0)
		*out = r.uid;
	record_release(&r);
	return rc;
}

/* A fresh hash of the live record @r: new version if it differs, else refresh. */
static int apply_locked(struct journal *j, struct record *r, const struct hash_result *h, int *what)
{
	struct rec_before before;
	enum journal_op op;

	*what = JOURNAL__NONE;
	if (memcmp(r->hash, h->hash, HASH_LEN) == 0)
		return refresh_locked(j, r, h);
	op = memcmp(r->content, h->content, HASH_LEN) ? JOURNAL_OP_MODIFY : JOURNAL_OP_META;
	before_of(r, &before);
	fill_stat(r, h);
	*what = JOURNAL__CHANGED;
	return put_version_locked(j, r, &before, op);
}

static int sync_entry_locked(struct journal *j, const struct dfsr_uid *parent, const char *name,
			     const struct hash_result *h, struct dfsr_uid *out, int *what)
{
	char type = record_type_of(h->st.st_mode);
	struct dfsr_uid uid;
	struct record r;
	bool tracked;
	int rc;

	*what = JOURNAL__NONE;
	memset(out, 0, sizeof(*out));
	rc = tracked_locked(j, parent, name, type, &tracked);
	if (rc < 0 || !tracked)
		return rc;
	rc = name_get(j, parent, name, &uid);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (rc == 0) {
		rc = journal__get(j, &uid, &r);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		if (rc == 0 && !r.tombstone && r.type == type) {
			rc = apply_locked(j, &r, h, what);
			if (rc == 0)
				*out = uid;
			record_release(&r);
			return rc;
		}
		if (rc == 0)
			record_release(&r);
		rc = remove_at_locked(j, &uid, parent, name);
		if (rc < 0)
			return rc;
	}
	rc = create_locked(j, parent, name, h, out);
	if (rc == 0)
		*what = JOURNAL__CREATED;
	return rc;
}

/* ---- internal API for scan.c ---------------------------------------------------------- */

int journal__sync_entry(struct journal *j, const struct dfsr_uid *parent, const char *name,
			const struct hash_result *h, struct dfsr_uid *out, int *what)
{
	int rc;

	pthread_mutex_lock(&j->lock);
	rc = sync_entry_locked(j, parent, name, h, out, what);
	journal_unlock(j);
	if (rc == 0)
		journal_link_note(j, &h->st, out);
	return rc;
}

int journal__apply_hash(struct journal *j, const struct dfsr_uid *uid, const struct hash_result *h,
			int *what)
{
	struct record r;
	int rc;

	*what = JOURNAL__NONE;
	pthread_mutex_lock(&j->lock);
	rc = journal__get(j, uid, &r);
	if (rc == -ENOENT) {
		rc = 0;
		goto out_unlock;
	}
	if (rc < 0)
		goto out_unlock;
	if (!r.tombstone && r.type == record_type_of(h->st.st_mode)) {
		rc = apply_locked(j, &r, h, what);
		if (rc == 0)
			journal_link_note(j, &h->st, uid);
	}
	record_release(&r);
out_unlock:
	journal_unlock(j);
	return rc;
}

int journal__remove(struct journal *j, const struct dfsr_uid *uid, uint64_t *removed)
{
	int rc;

	pthread_mutex_lock(&j->lock);
	rc = remove_locked(j, uid, removed, 0);
	journal_unlock(j);
	return rc;
}

struct db *journal__db(struct journal *j)
{
	return j->db;
}

int journal__knowledge(struct journal *j, struct version_vector *out)
{
	int rc;

	pthread_mutex_lock(&j->lock);
	rc = version_vector_copy(out, &j->knowledge);
	if (rc == 0 && j->counter)
		rc = version_vector_raise(out, &j->db_id, j->counter);
	journal_unlock(j);
	return rc;
}

void journal__scan_begin(struct journal *j, uint64_t files_total, uint64_t bytes_total)
{
	pthread_mutex_lock(&j->lock);
	j->scanning = true;
	j->scan_files_done = 0;
	j->scan_bytes_done = 0;
	j->scan_files_total = files_total;
	j->scan_bytes_total = bytes_total;
	j->scan_started_ns = dfsr_now_ns();
	journal_unlock(j);
}

void journal__scan_add(struct journal *j, uint64_t files, uint64_t bytes)
{
	pthread_mutex_lock(&j->lock);
	j->scan_files_done += files;
	j->scan_bytes_done += bytes;
	if (j->scan_files_total && j->scan_files_done > j->scan_files_total)
		j->scan_files_total = j->scan_files_done;
	if (j->scan_bytes_total && j->scan_bytes_done > j->scan_bytes_total)
		j->scan_bytes_total = j->scan_bytes_done;
	journal_unlock(j);
}

void journal__scan_end(struct journal *j)
{
	pthread_mutex_lock(&j->lock);
	j->scanning = false;
	journal_unlock(j);
}

/* ---- open and close ---------------------------------------------------------------- */

static int root_uid_of(const char *name, struct dfsr_uid *out)
{
	static const char tag[] = "dfsr-root"; /* hashed with its NUL */
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok;

	if (!c)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(c, hash_sha256(), NULL) && EVP_DigestUpdate(c, tag, sizeof(tag)) &&
	     EVP_DigestUpdate(c, name, strlen(name)) && EVP_DigestFinal_ex(c, md, &mdlen);
	EVP_MD_CTX_free(c);
	if (!ok || mdlen < DFSR_UID_LEN)
		return -EIO;
	memcpy(out->b, md, DFSR_UID_LEN);
	return 0;
}

static int load_or_create_meta(struct journal *j, char err[static JOURNAL_ERR_LEN])
{
	int rc = meta_load(j);

	if (rc == -ENOENT && j->read_only) {
		snprintf(err, JOURNAL_ERR_LEN, "DfsrPrivate/db of folder %s has no folder data",
			 j->folder->name);
		return -ENOENT;
	}
	if (rc == -ENOENT) {
		dfsr_uid_random(&j->db_id);
		j->counter = 0;
		j->next_seq = 1;
		j->state = JOURNAL_STATE_INITIAL_BUILD;
		return 0;
	}
	if (rc == -EBADMSG) {
		snprintf(err, JOURNAL_ERR_LEN,
			 "DfsrPrivate/db of folder %s: folder data is corrupt", j->folder->name);
		return -EIO;
	}
	if (rc < 0)
		snprintf(err, JOURNAL_ERR_LEN, "DfsrPrivate/db of folder %s: cannot read: %s",
			 j->folder->name, dfsr_strerror(rc));
	return rc;
}

/* core/space refused a write of file data (at most once a minute): event 1103. */
static void space_refused(void *arg, uint64_t free_bytes, uint64_t reserve)
{
	journal_event(arg, EV_DISK_RESERVE, "free_mib=%" PRIu64 " reserve_mib=%" PRIu64,
		      free_bytes >> 20, reserve >> 20);
}

int journal_open(const struct journal_opts *o, struct journal **out,
		 char err[static JOURNAL_ERR_LEN])
{
	char path[128];
	struct journal *j;
	struct txn t;
	int rc;

	err[0] = '\0';
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->cfg = o->cfg;
	j->folder = o->folder;
	j->root_fd = o->root_fd;
	j->read_only = o->read_only;
	j->event_n = (uint64_t)dfsr_mono_ns();
	version_vector_init(&j->knowledge);
	pthread_mutex_init(&j->lock, NULL);
	pthread_mutex_init(&j->links_lock, NULL);
	j->links = linkmap_new(JOURNAL_LINKS_MAX);
	if (!j->links) {
		rc = -ENOMEM;
		goto out_free;
	}
	/* without it every walk reads the database, as it did before the cache */
	j->dirs_ok = htab_init(&j->dirs, JOURNAL_DIRS_BUCKETS, dir_node_hash) == 0;
	rc = root_uid_of(o->folder->name, &j->root_uid);
	if (rc < 0)
		goto out_free;
	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s/%s", o->root_fd, LAYOUT_PRIVATE,
		 LAYOUT_DB);
	rc = db_open(o->db_path ? o->db_path : path, o->read_only, &j->db, err);
	if (rc < 0)
		goto out_free;
	j->batch = db_batch_new(j->db);
	if (!j->batch) {
		rc = -ENOMEM;
		goto out_close;
	}
	if (!j->read_only) {
		rc = space_new(o->root_fd, &j->space);
		if (rc < 0) {
			snprintf(err, JOURNAL_ERR_LEN, "folder %s: cannot measure its disk: %s",
				 o->folder->name, dfsr_strerror(rc));
			goto out_close;
		}
		space_set_notify(j->space, space_refused, j);
	}
	rc = load_or_create_meta(j, err);
	if (rc < 0)
		goto out_close;
	j->unclean = j->running;
	if (!j->read_only) {
		txn_begin(j, &t);
		t.running = true;
		rc = meta_commit_locked(j, &t, true);
		if (rc < 0) {
			snprintf(err, JOURNAL_ERR_LEN,
				 "DfsrPrivate/db of folder %s: cannot write: %s", j->folder->name,
				 dfsr_strerror(rc));
			goto out_close;
		}
	}
	*out = j;
	return 0;
out_close:
	space_free(j->space);
	db_batch_free(j->batch);
	db_close(j->db);
out_free:
	htab_release(&j->dirs, dir_free, NULL);
	version_vector_release(&j->knowledge);
	linkmap_free(j->links);
	pthread_mutex_destroy(&j->links_lock);
	pthread_mutex_destroy(&j->lock);
	free(j);
	return rc < 0 && rc != -EBUSY && rc != -ENOENT && rc != -ENOMEM ? -EIO : rc;
}

void journal_close(struct journal *j)
{
	struct txn t;

	if (!j)
		return;
	if (!j->read_only) {
		pthread_mutex_lock(&j->lock);
		txn_begin(j, &t);
		t.running = false;
		(void)db_flush(j->db);
		if (meta_commit_locked(j, &t, true) < 0)
			event_log(EV_DB_ERROR, "folder=%s op=close", j->folder->name);
		journal_unlock(j);
	}
	space_free(j->space);
	db_batch_free(j->batch);
	db_close(j->db);
	htab_release(&j->dirs, dir_free, NULL);
	version_vector_release(&j->knowledge);
	linkmap_free(j->links);
	pthread_mutex_destroy(&j->links_lock);
	pthread_mutex_destroy(&j->lock);
	free(j->marks);
	free(j);
}

bool journal_was_unclean(const struct journal *j)
{
	return j->unclean;
}

const struct dfsr_uid *journal_root_uid(const struct journal *j)
{
	return &j->root_uid;
}

const struct dfsr_uid *journal_db_id(const struct journal *j)
{
	return &j->db_id;
}

void journal_set_folder(struct journal *j, const struct config_folder *folder)
{
	atomic_store(&j->folder, folder);
}

const struct config_folder *journal_folder(const struct journal *j)
{
	return j->folder;
}

struct space *journal_space(struct journal *j)
{
	return j->space;
}

int journal_root_fd(const struct journal *j)
{
	return j->root_fd;
}

enum journal_state journal_state(const struct journal *j)
{
	struct journal *mj = (struct journal *)(uintptr_t)j; /* the lock is not part of the value */
	enum journal_state s;

	pthread_mutex_lock(&mj->lock);
	s = mj->state;
	journal_unlock(mj);
	return s;
}

int journal_freshness(struct journal *j, int64_t lifetime_ns, int64_t now_ns, bool *stale)
{
	int64_t last;
	struct txn t;
	int rc = 0;

	*stale = false;
	if (j->read_only)
		return -EIO;
	pthread_mutex_lock(&j->lock);
	last = atomic_load(&j->last_sync_ns);
	if (last == 0 || last > now_ns) {
		/* never synced (or the clock went back): the lifetime counts from now */
		atomic_store(&j->last_sync_ns, now_ns);
		txn_begin(j, &t);
		rc = meta_commit_locked(j, &t, false);
	} else if (j->state == JOURNAL_STATE_NORMAL && now_ns - last > lifetime_ns) {
		txn_begin(j, &t);
		t.state = JOURNAL_STATE_INITIAL_SYNC;
		j->stale = true;
		j->stale_counter = j->counter;
		j->stale_last_sync_ns = last;
		rc = meta_commit_locked(j, &t, false);
		if (rc < 0)
			j->stale = false;
		*stale = rc == 0;
	} else if (last != j->last_sync_saved_ns) {
		/* contact noted since the last write (a quiet group writes nothing else): keep
		 * it across a restart */
		txn_begin(j, &t);
		rc = meta_commit_locked(j, &t, false);
	}
	journal_unlock(j);
	return rc < 0 ? -EIO : 0;
}

bool journal_stale(struct journal *j, uint64_t *counter)
{
	bool stale;

	pthread_mutex_lock(&j->lock);
	stale = j->stale;
	if (counter)
		*counter = j->stale_counter;
	journal_unlock(j);
	return stale;
}

int64_t journal_stale_since(struct journal *j)
{
	int64_t since;

	pthread_mutex_lock(&j->lock);
	since = j->stale ? j->stale_last_sync_ns : 0;
	journal_unlock(j);
	return since;
}

int journal_stale_done(struct journal *j)
{
	struct txn t;
	int rc;

	pthread_mutex_lock(&j->lock);
	j->stale = false;
	txn_begin(j, &t);
	rc = meta_commit_locked(j, &t, false);
	if (rc < 0)
		j->stale = true;
	journal_unlock(j);
	return rc < 0 ? -EIO : 0;
}

int journal_stale_lift(struct journal *j, int64_t lifetime_ns, int64_t now_ns, bool *lifted)
{
	struct txn t;
	int rc = 0;

	*lifted = false;
	if (j->read_only)
		return -EIO;
	pthread_mutex_lock(&j->lock);
	if (j->stale && j->state == JOURNAL_STATE_INITIAL_SYNC && j->stale_last_sync_ns > 0 &&
	    j->stale_last_sync_ns <= now_ns && now_ns - j->stale_last_sync_ns <= lifetime_ns) {
		txn_begin(j, &t);
		t.state = JOURNAL_STATE_NORMAL; /* what it was when it turned stale */
		j->stale = false;
		rc = meta_commit_locked(j, &t, false);
		if (rc < 0)
			j->stale = true;
		*lifted = rc == 0;
	}
	journal_unlock(j);
	return rc < 0 ? -EIO : 0;
}

int journal_purge_tombstones(struct journal *j, int64_t before_ns, uint64_t *purged)
{
	struct db_iter *it;
	struct dfsr_uid *v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	*purged = 0;
	if (j->read_only)
		return -EIO;
	it = db_iter_new(j->db, NULL, DB_CF_RECORDS);
	if (!it)
		return -ENOMEM;
	for (db_iter_seek_first(it); rc == 0 && db_iter_valid(it); db_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = db_iter_key(it, &klen), *val = db_iter_value(it, &vlen);
		struct record rec;

		if (klen != DFSR_UID_LEN)
			continue;
		record_init(&rec);
		if (record_decode(&rec, val, vlen) == 0 && rec.tombstone &&
		    rec.change_time_ns < before_ns) {
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct dfsr_uid *nv = realloc(v, nc * sizeof(*nv));

				if (!nv)
					rc = -ENOMEM;
				else
					v = nv, cap = nc;
			}
			if (rc == 0)
				memcpy(v[n++].b, k, DFSR_UID_LEN);
		}
		record_release(&rec);
	}
	if (rc == 0)
		rc = db_iter_status(it);
	db_iter_free(it);
	/* dropped one by one under the lock, each checked again: it may have come back */
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct record rec;

		record_init(&rec);
		pthread_mutex_lock(&j->lock);
		rc = journal__get(j, &v[i], &rec);
		if (rc == 0 && rec.tombstone && rec.change_time_ns < before_ns) {
			rc = journal__drop_locked(j, &v[i]);
			*purged += rc == 0;
		} else if (rc == -ENOENT) {
			rc = 0;
		}
		journal_unlock(j);
		record_release(&rec);
	}
	free(v);
	return rc;
}

/* Event @ev (4012 or 1207) of the freshness check, with the last sync and the lifetime. */
static void freshness_event(struct journal *j, enum dfsr_event ev, int64_t last, uint32_t days,
			    const char *what)
{
	char when[32];

	dfsr_time_iso(last, when, sizeof(when));
	journal_event(j, ev, "last_sync=%s tombstone_days=%" PRIu32 ": %s", when, days, what);
}

int journal_tombstone_care(struct journal *j, uint32_t days)
{
	int64_t life = (int64_t)days * 86400 * 1000000000LL, now = dfsr_now_ns();
	int64_t last = journal_last_sync(j);
	uint64_t purged = 0;
	bool stale, lifted;
	int rc;

	rc = journal_stale_lift(j, life, now, &lifted);
	if (rc == 0 && lifted)
		freshness_event(j, EV_STALE_LIFTED, last, days,
				"replicating as before; content the group deleted and forgot may "
				"come back");
	if (rc == 0)
		rc = journal_freshness(j, life, now, &stale);
	if (rc == 0 && stale)
		freshness_event(j, EV_CONTENT_TOO_OLD, last, days,
				"syncing again as a non-primary member; what the group no longer "
				"has goes to PreExisting");
	if (rc == 0)
		rc = journal_purge_tombstones(j, now - life, &purged);
	return rc;
}

int64_t journal_last_sync(struct journal *j)
{
	return atomic_load(&j->last_sync_ns);
}

void journal_note_contact(struct journal *j)
{
	atomic_store(&j->last_sync_ns, dfsr_now_ns()); /* written with the next meta */
}

int journal_set_state(struct journal *j, enum journal_state s)
{
	struct txn t;
	int rc;

	if (j->read_only)
		return -EIO;
	pthread_mutex_lock(&j->lock);
	txn_begin(j, &t);
	t.state = s;
	rc = meta_commit_locked(j, &t, false);
	journal_unlock(j);
	return rc < 0 ? -EIO : 0;
}

/* ---- the change API ---------------------------------------------------------------- */

static int stat_fd(int fd, struct stat *st)
{
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

static int64_t mtime_ns_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int journal_lookup(struct journal *j, const struct dfsr_uid *parent, const char *name,
		   struct dfsr_uid *out)
{
	bool live;
	int rc;

	memset(out, 0, sizeof(*out));
	if (dfsr_uid_is_zero(parent) || !record_name_valid(name))
		return 0;
	if (dfsr_uid_equal(parent, &j->root_uid) && strcmp(name, LAYOUT_PRIVATE) == 0)
		return 0;
	rc = name_get(j, parent, name, out);
	if (rc != -ENOENT)
		return rc;
	memset(out, 0, sizeof(*out));
	if (filter_match(&j->folder->file_filter, name) ||
	    filter_match(&j->folder->subfolder_filter, name))
		return 0;
	rc = parent_live(j, parent, false, &live);
	if (rc < 0 || !live)
		return rc;
	/* No record yet, or one being made: replication renames an installed object into
	 * place before its batch commits, both under the lock. A node made now would know no
	 * UID for the record committed a moment later, and nothing made through it would ever
	 * be journaled (docs/conflicts.md §9). Ask again once that decision is over; only
	 * names with no record come here. */
	pthread_mutex_lock(&j->lock);
	rc = name_get(j, parent, name, out);
	journal_unlock(j);
	if (rc == -ENOENT)
		memset(out, 0, sizeof(*out));
	return rc;
}

static void hash_failed(struct journal *j, const char *name, int rc)
{
	journal_event(j, EV_HASH_FAILED, "name=\"%s\" error=\"%s\"", name, dfsr_strerror(rc));
}

int journal_note_new_stat(struct journal *j, const struct dfsr_uid *parent, const char *name,
			  int fd, const struct stat *st, struct dfsr_uid *out)
{
	struct hash_result h;
	struct dfsr_uid uid;
	struct stat own;
	int rc, what;

	memset(out, 0, sizeof(*out));
	if (j->read_only)
		return -EIO;
	if (!st) {
		rc = stat_fd(fd, &own);
		if (rc < 0)
			return rc;
		st = &own;
	}
	if (!journal__tracked(j, parent, name, record_type_of((uint32_t)st->st_mode)))
		return 0;
	rc = hash_fd_stat(fd, st, NULL, &h);
	if (rc < 0) {
		hash_failed(j, name, rc);
		return rc;
	}
	rc = journal__sync_entry(j, parent, name, &h, &uid, &what);
	if (rc < 0)
		return rc;
	if (what == JOURNAL__CREATED && S_ISDIR(h.st.st_mode))
		rc = scan__dir(j, fd, &uid, NULL);
	if (rc == 0)
		*out = uid;
	return rc;
}

int journal_note_new(struct journal *j, const struct dfsr_uid *parent, const char *name, int fd,
		     struct dfsr_uid *out)
{
	return journal_note_new_stat(j, parent, name, fd, NULL, out);
}

int journal_note_change(struct journal *j, const struct dfsr_uid *uid, int fd, unsigned flags)
{
	const uint8_t *content = NULL;
	struct hash_result h;
	struct record r;
	struct stat st;
	int rc, what;
	bool ok;

	if (dfsr_uid_is_zero(uid))
		return 0;
	if (j->read_only)
		return -EIO;
	rc = journal__get(j, uid, &r);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	if (r.tombstone)
		goto out_release;
	rc = stat_fd(fd, &st);
	if (rc < 0)
		goto out_release;
	/*
	 * An object with no name left was replaced or unlinked; whatever record @uid names now
	 * describes another object (e.g. the file an editor saved over it). Its late release or
	 * time update must not journal its stale content over that record.
	 */
	if (!S_ISDIR(st.st_mode) && st.st_nlink == 0)
		goto out_release;
	/*
	 * A hard-linked object is changed through every name its node knows, and one of those
	 * names may since have been given to another object (a save-by-rename over it, a
	 * partner's install): only a record whose path still reaches this object takes the
	 * change, or the other object's record would get this one's data. The object may be
	 * down to one link by then (the other name replaced): JOURNAL_NAMES says to check all
	 * the same.
	 */
	if (!S_ISDIR(st.st_mode) && (st.st_nlink > 1 || (flags & JOURNAL_NAMES))) {
		rc = path_reaches(j, &r, &st, &ok);
		if (rc == 0 && !ok)
			link_drop(j, &st, uid);
		if (rc < 0 || !ok)
			goto out_release;
	}
	/* A link's target never changes in place, so its digest holds whatever its times say;
	 * re-reading it would also move the link's atime under a utimensat(). */
	if (!(flags & JOURNAL_DATA) && (uint64_t)st.st_size == r.size &&
	    ((r.type == RECORD_FILE && S_ISREG(st.st_mode) && mtime_ns_of(&st) == r.mtime_ns) ||
	     (r.type == RECORD_LINK && S_ISLNK(st.st_mode))))
		content = r.content;
	rc = hash_fd(fd, content, &h);
	if (rc < 0) {
		hash_failed(j, r.name, rc);
		goto out_release;
	}
	rc = journal__apply_hash(j, uid, &h, &what);
out_release:
	record_release(&r);
	return rc;
}

static bool uid_in(const struct dfsr_uid *uid, const struct dfsr_uid *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (dfsr_uid_equal(uid, &v[i]))
			return true;
	return false;
}

int journal_link_others(struct journal *j, const struct stat *st, const struct dfsr_uid *known,
			size_t nknown, struct dfsr_uid *out, size_t max)
{
	struct dfsr_uid cand[JOURNAL_LINK_CANDIDATES];
	size_t n, k = 0;
	bool ok;
	int rc;

	if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return 0;
	pthread_mutex_lock(&j->links_lock);
	n = linkmap_get(j->links, (uint64_t)st->st_dev, (uint64_t)st->st_ino, cand,
			JOURNAL_LINK_CANDIDATES);
	pthread_mutex_unlock(&j->links_lock);
	if (n > JOURNAL_LINK_CANDIDATES)
		n = JOURNAL_LINK_CANDIDATES;
	for (size_t i = 0; i < n && k < max; i++) {
		if (uid_in(&cand[i], known, nknown) || uid_in(&cand[i], out, k))
			continue;
		rc = link_verify(j, &cand[i], st, &ok);
		if (rc < 0)
			return rc;
		if (ok)
			out[k++] = cand[i];
		else
			link_drop(j, st, &cand[i]); /* only if still under this key */
	}
	return (int)k;
}

int journal_note_remove(struct journal *j, const struct dfsr_uid *parent, const char *name)
{
	struct dfsr_uid uid;
	int rc;

	if (dfsr_uid_is_zero(parent) || !record_name_valid(name))
		return 0;
	if (j->read_only)
		return -EIO;
	pthread_mutex_lock(&j->lock);
	rc = name_get(j, parent, name, &uid);
	if (rc == 0)
		rc = remove_at_locked(j, &uid, parent, name);
	else if (rc == -ENOENT)
		rc = 0;
	journal_unlock(j);
	return rc;
}

/* journal_resend_below(): a new version of each live object below a directory. */
struct resend_ctx {
	uint64_t n;
	int depth;
};

static int resend_child(struct journal *j, const struct dfsr_uid *child, const uint8_t *k,
			size_t klen, void *arg)
{
	struct resend_ctx *x = arg;
	struct record r;
	int rc;

	(void)k;
	(void)klen;
	rc = journal__get(j, child, &r);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	if (!r.tombstone) {
		rc = journal__write_locked(j, &r, JOURNAL_OP_META, JOURNAL__NEWVER);
		x->n += rc == 0;
	}
	if (rc == 0 && !r.tombstone && r.type == RECORD_DIR) {
		if (x->depth >= PATH_DEPTH_MAX)
			rc = -EIO;
		x->depth++;
		if (rc == 0)
			rc = each_child(j, child, resend_child, x);
		x->depth--;
	}
	record_release(&r);
	return rc;
}

int journal_resend_below(struct journal *j, const struct dfsr_uid *dir, uint64_t *count)
{
	struct resend_ctx x = { 0 };
	int rc;

	if (j->read_only)
		return -EIO;
	pthread_mutex_lock(&j->lock);
	rc = each_child(j, dir, resend_child, &x);
	journal_unlock(j);
	if (x.n) {
		char hex[DFSR_UID_HEX_LEN];

		dfsr_uid_hex(dir, hex);
		journal_event(j, EV_JOURNAL_RESENT, "uid=%s objects=%" PRIu64, hex, x.n);
	}
	if (rc == 0 && count)
		*count = x.n;
	return rc;
}

/* One object taking part in a rename. */
struct moved {
	int fd;
	char type;
	bool have_hash;
	int hash_rc;
	bool walk; /* recorded as new directory: walk its contents after unlocking */
	struct hash_result h;
};

/* Hash the object now at @m->fd, if its new place is tracked; content reused from its
 * record when size and mtime still match (a rename never changes data). */
static void prehash(struct journal *j, const struct dfsr_uid *from_parent, const char *from_name,
		    const struct dfsr_uid *to_parent, const char *to_name, struct moved *m)
{
	const uint8_t *content = NULL;
	struct dfsr_uid uid;
	struct record r;
	struct stat st;

	record_init(&r);
	m->have_hash = false;
	m->walk = false;
	m->hash_rc = stat_fd(m->fd, &st);
	if (m->hash_rc < 0)
		return;
	m->type = record_type_of((uint32_t)st.st_mode);
	if (!journal__tracked(j, to_parent, to_name, m->type))
		return;
	if (!dfsr_uid_is_zero(from_parent) && record_name_valid(from_name) &&
	    name_get(j, from_parent, from_name, &uid) == 0 && journal__get(j, &uid, &r) == 0 &&
	    r.type == RECORD_FILE && S_ISREG(st.st_mode) && (uint64_t)st.st_size == r.size &&
	    mtime_ns_of(&st) == r.mtime_ns)
		content = r.content;
	m->hash_rc = hash_fd(m->fd, content, &m->h);
	m->have_hash = m->hash_rc == 0;
	record_release(&r);
}

/* Move record @uid (zero: an untracked object) to (@to_parent, @to_name). Lock held. */
static int move_locked(struct journal *j, const struct dfsr_uid *uid,
		       const struct dfsr_uid *to_parent, const char *to_name, struct moved *m,
		       struct dfsr_uid *out)
{
	struct rec_before before;
	struct record r;
	bool tracked;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = tracked_locked(j, to_parent, to_name, m->type, &tracked);
	if (rc < 0)
		return rc;
	if (!dfsr_uid_is_zero(uid)) {
		if (!tracked)
			return remove_locked(j, uid, NULL, 0);
		rc = journal__get(j, uid, &r);
		if (rc < 0)
			return rc == -ENOENT ? 0 : rc;
		if (!r.tombstone) {
			before_of(&r, &before);
			r.parent = *to_parent;
			snprintf(r.name, sizeof(r.name), "%s", to_name);
			if (m->have_hash && record_type_of((uint32_t)m->h.st.st_mode) == r.type)
				fill_stat(&r, &m->h);
			rc = put_version_locked(j, &r, &before, JOURNAL_OP_RENAME);
			if (rc == 0)
				*out = *uid;
		}
		record_release(&r);
		return rc;
	}
	if (!tracked)
		return 0;
	if (!m->have_hash)
		return m->hash_rc < 0 ? m->hash_rc : -EIO;
	rc = create_locked(j, to_parent, to_name, &m->h, out);
	m->walk = rc == 0 && m->type == RECORD_DIR;
	return rc;
}

/* Index lookup that treats untracked parents and invalid names as "nothing there". */
static int uid_at(struct journal *j, const struct dfsr_uid *parent, const char *name,
		  struct dfsr_uid *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (dfsr_uid_is_zero(parent) || !record_name_valid(name))
		return 0;
	rc = name_get(j, parent, name, out);
	if (rc == -ENOENT) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	return rc;
}

/*
 * A plain rename over a recorded target. An untracked file replacing a tracked file of the
 * same type keeps the target's UID (the save-by-rename pattern); otherwise the target
 * becomes a tombstone. Sets *kept when the target's UID was kept. Lock held.
 */
static int replace_target_locked(struct journal *j, const struct journal_rename *rn,
				 const struct dfsr_uid *src, const struct dfsr_uid *dst,
				 struct moved *a, bool *kept)
{
	struct record r;
	int rc, what;

	*kept = false;
	if (dfsr_uid_is_zero(src) && a->have_hash && a->type != RECORD_DIR &&
	    journal__tracked(j, rn->new_parent, rn->new_name, a->type)) {
		rc = journal__get(j, dst, &r);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		if (rc == 0 && !r.tombstone && r.type == a->type) {
			rc = apply_locked(j, &r, &a->h, &what);
			*kept = rc == 0;
			record_release(&r);
			return rc;
		}
		if (rc == 0)
			record_release(&r);
	}
	return remove_locked(j, dst, NULL, 0);
}

static int rename_locked(struct journal *j, const struct journal_rename *rn, struct moved *a,
			 struct moved *b, struct dfsr_uid *out, struct dfsr_uid *other_out)
{
	struct dfsr_uid ua, ub;
	bool kept = false;
	int rc;

	rc = uid_at(j, rn->old_parent, rn->old_name, &ua);
	if (rc == 0)
		rc = uid_at(j, rn->new_parent, rn->new_name, &ub);
	if (rc < 0)
		return rc;
	if (rn->exchange) {
		rc = move_locked(j, &ua, rn->new_parent, rn->new_name, a, out);
		if (rc == 0)
			rc = move_locked(j, &ub, rn->old_parent, rn->old_name, b, other_out);
		return rc;
	}
	if (!dfsr_uid_is_zero(&ub) && !dfsr_uid_equal(&ua, &ub)) {
		rc = replace_target_locked(j, rn, &ua, &ub, a, &kept);
		if (rc < 0)
			return rc;
		if (kept) {
			*out = ub;
			return 0;
		}
	}
	return move_locked(j, &ua, rn->new_parent, rn->new_name, a, out);
}

int journal_note_rename(struct journal *j, const struct journal_rename *r, struct dfsr_uid *out,
			struct dfsr_uid *other_out)
{
	struct moved a = { .fd = r->fd }, b = { .fd = r->other_fd };
	struct dfsr_uid o1, o2;
	int rc;

	memset(out, 0, sizeof(*out));
	if (other_out)
		memset(other_out, 0, sizeof(*other_out));
	if (dfsr_uid_is_zero(r->old_parent) && dfsr_uid_is_zero(r->new_parent))
		return 0;
	if (j->read_only)
		return -EIO;
	prehash(j, r->old_parent, r->old_name, r->new_parent, r->new_name, &a);
	if (r->exchange)
		prehash(j, r->new_parent, r->new_name, r->old_parent, r->old_name, &b);
	memset(&o2, 0, sizeof(o2));
	pthread_mutex_lock(&j->lock);
	rc = rename_locked(j, r, &a, &b, &o1, &o2);
	journal_unlock(j);
	if (rc < 0 && (a.hash_rc < 0 || b.hash_rc < 0))
		hash_failed(j, r->new_name, a.hash_rc < 0 ? a.hash_rc : b.hash_rc);
	if (rc == 0 && a.walk)
		rc = scan__dir(j, a.fd, &o1, NULL);
	if (rc == 0 && b.walk)
		rc = scan__dir(j, b.fd, &o2, NULL);
	if (rc < 0)
		return rc;
	*out = o1;
	if (other_out)
		*other_out = o2;
	return 0;
}

/* ---- reading ------------------------------------------------------------------------ */

void journal_get_status(struct journal *j, struct journal_status *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&j->lock);
	out->state = j->db_failing ? JOURNAL_STATE_ERROR : j->state;
	out->files = j->counts.files;
	out->folders = j->counts.folders;
	out->bytes = j->counts.bytes;
	out->tombstones = j->counts.tombstones;
	out->journal = j->counts.journal;
	out->next_seq = j->next_seq;
	out->stale = j->stale;
	out->last_sync_ns = atomic_load(&j->last_sync_ns);
	out->scanning = j->scanning;
	out->scan_files_done = j->scan_files_done;
	out->scan_bytes_done = j->scan_bytes_done;
	out->scan_files_total = j->scan_files_total;
	out->scan_bytes_total = j->scan_bytes_total;
	out->scan_started_ns = j->scan_started_ns;
	journal_unlock(j);
}

static int visit_entry(const Dfsr__JournalEntry *e, uint64_t seq, struct dfsr_buf *path,
		       journal_entry_fn fn, void *arg)
{
	struct journal_entry_info info;

	if (e->uid.len != DFSR_UID_LEN || !e->gvsn || e->gvsn->db.len != DFSR_UID_LEN ||
	    e->op < JOURNAL_OP_CREATE || e->op > JOURNAL_OP_DELETE ||
	    memchr(e->path.data, '\0', e->path.len))
		return 0; /* not ours to interpret: skipped */
	path->len = 0;
	if (dfsr_buf_add(path, e->path.data, e->path.len) < 0)
		return -ENOMEM;
	memset(&info, 0, sizeof(info));
	info.seq = seq;
	info.op = (enum journal_op)e->op;
	memcpy(info.uid.b, e->uid.data, DFSR_UID_LEN);
	memcpy(info.gvsn_db.b, e->gvsn->db.data, DFSR_UID_LEN);
	info.gvsn_counter = e->gvsn->counter;
	info.time_ns = e->time_ns;
	info.type = (char)e->type;
	info.path = path->p;
	return fn(arg, &info);
}

int journal_list(struct journal *j, uint64_t from, size_t max, journal_entry_fn fn, void *arg)
{
	struct db_iter *it = db_iter_new(j->db, NULL, DB_CF_JOURNAL);
	struct dfsr_buf path;
	uint8_t key[8];
	size_t n = 0;
	int rc = 0;

	if (!it)
		return -ENOMEM;
	dfsr_buf_init(&path);
	db_put_be64(key, from);
	for (db_iter_seek(it, key, sizeof(key)); rc == 0 && db_iter_valid(it) && (!max || n < max);
	     db_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = db_iter_key(it, &klen), *v = db_iter_value(it, &vlen);
		Dfsr__JournalEntry *e;

		if (klen != 8)
			continue;
		e = dfsr__journal_entry__unpack(NULL, vlen, v);
		if (!e)
			continue;
		rc = visit_entry(e, db_get_be64(k), &path, fn, arg);
		dfsr__journal_entry__free_unpacked(e, NULL);
		n++;
	}
	if (rc == 0)
		rc = db_iter_status(it);
	dfsr_buf_release(&path);
	db_iter_free(it);
	return rc;
}

static int store_event(struct journal *j, enum dfsr_event ev, int64_t now, const char *msg)
{
	Dfsr__Event e = DFSR__EVENT__INIT;
	uint8_t key[DB_KEY_EVENT_LEN], *buf;
	struct db_batch *b;
	size_t len;
	int rc;

	e.time_ns = now;
	e.id = (uint32_t)ev;
	e.folder = bin(j->folder->name, strlen(j->folder->name));
	e.message = bin(msg, strlen(msg));
	len = dfsr__event__get_packed_size(&e);
	buf = malloc(len ? len : 1);
	b = db_batch_new(j->db);
	if (!buf || !b) {
		rc = -ENOMEM;
		goto out_free;
	}
	dfsr__event__pack(&e, buf);
	db_key_event(key, now, __atomic_fetch_add(&j->event_n, 1, __ATOMIC_RELAXED));
	db_batch_put(b, DB_CF_EVENTS, key, sizeof(key), buf, len);
	rc = db_batch_commit(b, false);
out_free:
	db_batch_free(b);
	free(buf);
	return rc;
}

void journal_event(struct journal *j, enum dfsr_event ev, const char *fmt, ...)
{
	char msg[EVENT_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	event_vformat(msg, sizeof(msg), ev, fmt, ap);
	va_end(ap);
	/* a failed store is logged by the database (1101); the event still reaches syslog */
	if (!j->read_only && j->db)
		(void)store_event(j, ev, dfsr_now_ns(), msg);
	event_emit(ev, j->folder->name, msg);
}

static int visit_event(const Dfsr__Event *e, struct dfsr_buf *folder, struct dfsr_buf *msg,
		       journal_event_fn fn, void *arg)
{
	struct journal_event_info info;

	if (memchr(e->folder.data, '\0', e->folder.len) ||
	    memchr(e->message.data, '\0', e->message.len))
		return 0;
	folder->len = 0;
	msg->len = 0;
	if (dfsr_buf_add(folder, e->folder.data, e->folder.len) < 0 ||
	    dfsr_buf_add(msg, e->message.data, e->message.len) < 0)
		return -ENOMEM;
	info.time_ns = e->time_ns;
	info.id = (int)e->id;
	info.folder = folder->p;
	info.message = msg->p;
	return fn(arg, &info);
}

int journal_list_events(struct journal *j, int64_t since_ns, journal_event_fn fn, void *arg)
{
	struct db_iter *it = db_iter_new(j->db, NULL, DB_CF_EVENTS);
	struct dfsr_buf folder, msg;
	uint8_t key[DB_KEY_EVENT_LEN];
	int rc = 0;

	if (!it)
		return -ENOMEM;
	dfsr_buf_init(&folder);
	dfsr_buf_init(&msg);
	db_key_event(key, since_ns, 0);
	for (db_iter_seek(it, key, sizeof(key)); rc == 0 && db_iter_valid(it); db_iter_next(it)) {
		size_t vlen;
		const uint8_t *v = db_iter_value(it, &vlen);
		Dfsr__Event *e = dfsr__event__unpack(NULL, vlen, v);

		if (!e)
			continue;
		rc = visit_event(e, &folder, &msg, fn, arg);
		dfsr__event__free_unpacked(e, NULL);
	}
	if (rc == 0)
		rc = db_iter_status(it);
	dfsr_buf_release(&msg);
	dfsr_buf_release(&folder);
	db_iter_free(it);
	return rc;
}

int journal_path(struct journal *j, const struct dfsr_uid *uid, struct dfsr_buf *out)
{
	struct record r;
	int rc;

	if (dfsr_uid_equal(uid, &j->root_uid)) {
		out->len = 0;
		return dfsr_buf_add(out, "", 0);
	}
	rc = journal__get(j, uid, &r);
	if (rc < 0)
		return rc;
	rc = build_path(j, &r.parent, r.name, out);
	record_release(&r);
	return rc;
}

int journal_live(struct journal *j, const struct dfsr_uid *uid)
{
	struct record r;
	int rc;

	pthread_mutex_lock(&j->lock);
	rc = journal__get(j, uid, &r);
	if (rc == 0) {
		rc = r.tombstone ? 0 : 1;
		record_release(&r);
	}
	pthread_mutex_unlock(&j->lock);
	return rc;
}

/* ---- internal API for replica.c ---------------------------------------------------- */

void journal__lock(struct journal *j)
{
	pthread_mutex_lock(&j->lock);
}

void journal__unlock(struct journal *j)
{
	journal_unlock(j);
}

enum journal_state journal__state_locked(struct journal *j)
{
	return j->state;
}

int journal__name_get(struct journal *j, const struct dfsr_uid *parent, const char *name,
		      struct dfsr_uid *out)
{
	return name_get(j, parent, name, out);
}

/* What is recorded for @uid now (exists == false if nothing). */
static int before_get(struct journal *j, const struct dfsr_uid *uid, struct rec_before *b)
{
	struct record old;
	int rc;

	memset(b, 0, sizeof(*b));
	rc = journal__get(j, uid, &old);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	before_of(&old, b);
	record_release(&old);
	return 0;
}

static int write_into_batch(struct journal *j, struct record *r, const struct rec_before *old,
			    enum journal_op op, unsigned flags, struct txn *t);

struct reparent_ctx {
	const struct dfsr_uid *to;
	struct txn *t;
};

static int reparent_child(struct journal *j, const struct dfsr_uid *child, const uint8_t *k,
			  size_t klen, void *arg)
{
	struct reparent_ctx *x = arg;
	uint8_t key[DB_KEY_NAME_MAX];
	struct record c;
	int rc;

	rc = journal__get(j, child, &c);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	if (x->t) {
		struct rec_before cb;

		before_of(&c, &cb);
		c.parent = *x->to;
		rc = write_into_batch(j, &c, &cb, JOURNAL_OP_RENAME, JOURNAL__NEWVER, x->t);
		record_release(&c);
		return rc;
	}
	db_batch_delete(j->batch, DB_CF_NAMES, k, klen);
	c.parent = *x->to;
	db_batch_put(j->batch, DB_CF_NAMES, key, db_key_name(key, x->to, c.name), child->b,
		     DFSR_UID_LEN);
	rc = put_encoded_record(j, &c);
	record_release(&c);
	return rc;
}

/* Move every live child of @from in the index to @to: records rewritten quietly, or with
 * @t as new versions in that transaction. */
static int reparent_children(struct journal *j, const struct dfsr_uid *from,
			     const struct dfsr_uid *to, struct txn *t)
{
	struct reparent_ctx x = { .to = to, .t = t };

	return each_child(j, from, reparent_child, &x);
}

/* Adds @r with its entry to the batch (lock held, batch open). */
static int write_into_batch(struct journal *j, struct record *r, const struct rec_before *old,
			    enum journal_op op, unsigned flags, struct txn *t)
{
	struct dfsr_buf path;
	int rc;

	if (flags & JOURNAL__NEWVER) {
		t->counter++;
		r->gvsn.db = j->db_id;
		r->gvsn.counter = t->counter;
		r->change_time_ns = dfsr_now_ns();
		version_vector_release(&r->origin); /* a new version has seen all of vv */
		rc = version_vector_raise(&r->vv, &j->db_id, t->counter);
		if (rc < 0)
			return rc;
		flags |= JOURNAL__ENTRY;
	}
	if (old->exists)
		counts_add(&t->counts, old->tombstone, old->type, old->size, -1);
	counts_add(&t->counts, r->tombstone, r->type, r->size, 1);
	rc = index_update(j, r, old);
	if (rc < 0 || !(flags & JOURNAL__ENTRY))
		return rc < 0 ? rc : put_encoded_record(j, r);
	r->seq = t->next_seq++;
	t->counts.journal++;
	dfsr_buf_init(&path);
	rc = build_path_locked(j, &r->parent, r->name, &path);
	if (rc == -EIO) { /* parent unknown (a tombstone from a partner): the name alone */
		path.len = 0;
		rc = dfsr_buf_add(&path, r->name, strlen(r->name));
	}
	if (rc == 0)
		rc = put_encoded_record(j, r);
	if (rc == 0)
		rc = put_entry(j->batch, r, op, &path);
	dfsr_buf_release(&path);
	return rc;
}

static int commit_txn_locked(struct journal *j, const struct txn *t, bool entry, const char *name)
{
	int rc = meta_put(j, j->batch, t);

	if (rc == 0)
		rc = db_batch_commit(j->batch, false);
	db_batch_clear(j->batch);
	if (rc == 0) {
		txn_apply(j, t);
		if (entry)
			j->changed = true;
	} else {
		write_failed(j, name, "replicate", rc);
	}
	return rc;
}

int journal__write_locked(struct journal *j, struct record *r, enum journal_op op, unsigned flags)
{
	struct rec_before old;
	struct txn t;
	int rc;

	rc = before_get(j, &r->uid, &old);
	if (rc < 0)
		return rc;
	txn_begin(j, &t);
	db_batch_clear(j->batch);
	rc = write_into_batch(j, r, &old, op, flags, &t);
	if (rc < 0) {
		db_batch_clear(j->batch);
		return rc;
	}
	return commit_txn_locked(j, &t, flags != 0, r->name);
}

int journal__adopt_locked(struct journal *j, const struct dfsr_uid *old_uid, bool tombstone_old,
			  struct record *r, enum journal_op op, unsigned flags)
{
	struct rec_before before, none = { .exists = false }, *rb = &none;
	uint8_t key[DB_KEY_NAME_MAX];
	struct record old;
	struct txn t;
	int rc;

	rc = journal__get(j, old_uid, &old);
	if (rc < 0)
		return rc;
	txn_begin(j, &t);
	db_batch_clear(j->batch);
	before_of(&old, &before);
	if (!old.tombstone) {
		struct dfsr_uid cur;

		rc = name_get(j, &old.parent, old.name, &cur);
		if (rc == 0 && dfsr_uid_equal(&cur, old_uid))
			db_batch_delete(j->batch, DB_CF_NAMES, key,
					db_key_name(key, &old.parent, old.name));
		else if (rc != -ENOENT && rc < 0)
			goto out_clear;
		rc = 0;
		if (old.type == RECORD_DIR)
			rc = reparent_children(j, old_uid, &r->uid, tombstone_old ? &t : NULL);
		if (rc < 0)
			goto out_clear;
	}
	if (tombstone_old) {
		old.tombstone = true;
		rc = write_into_batch(j, &old, &before, JOURNAL_OP_DELETE, JOURNAL__NEWVER, &t);
	} else {
		counts_add(&t.counts, before.tombstone, before.type, before.size, -1);
		dirs_forget(j, old_uid);
		db_batch_delete(j->batch, DB_CF_RECORDS, old_uid->b, DFSR_UID_LEN);
	}
	if (rc == 0)
		rc = before_get(j, &r->uid, &before);
	if (rc == 0 && before.exists)
		rb = &before;
	if (rc == 0)
		rc = write_into_batch(j, r, rb, op, flags | JOURNAL__ENTRY, &t);
	if (rc < 0)
		goto out_clear;
	rc = commit_txn_locked(j, &t, true, r->name);
	record_release(&old);
	return rc;
out_clear:
	db_batch_clear(j->batch);
	record_release(&old);
	return rc;
}

int journal__drop_locked(struct journal *j, const struct dfsr_uid *uid)
{
	uint8_t key[DB_KEY_NAME_MAX];
	struct dfsr_uid cur;
	struct record old;
	struct txn t;
	int rc;

	rc = journal__get(j, uid, &old);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	txn_begin(j, &t);
	db_batch_clear(j->batch);
	if (!old.tombstone) {
		rc = name_get(j, &old.parent, old.name, &cur);
		if (rc == 0 && dfsr_uid_equal(&cur, uid))
			db_batch_delete(j->batch, DB_CF_NAMES, key,
					db_key_name(key, &old.parent, old.name));
		if (rc < 0 && rc != -ENOENT)
			goto out_clear;
	}
	counts_add(&t.counts, old.tombstone, old.type, old.size, -1);
	dirs_forget(j, uid);
	db_batch_delete(j->batch, DB_CF_RECORDS, uid->b, DFSR_UID_LEN);
	rc = commit_txn_locked(j, &t, false, old.name);
	record_release(&old);
	return rc;
out_clear:
	db_batch_clear(j->batch);
	record_release(&old);
	return rc;
}

int journal__merge_knowledge(struct journal *j, const struct version_vector *vv,
			     bool end_initial_sync, bool end_stale, bool *ended)
{
	struct version_vector saved, tmp;
	struct txn t;
	int rc;

	*ended = false;
	if (j->read_only)
		return -EIO;
	version_vector_init(&saved);
	pthread_mutex_lock(&j->lock);
	rc = version_vector_copy(&saved, &j->knowledge);
	if (rc == 0)
		rc = version_vector_merge(&j->knowledge, vv);
	if (rc == 0) {
		bool end;

		txn_begin(j, &t);
		end = end_initial_sync && t.state == JOURNAL_STATE_INITIAL_SYNC &&
		      (!j->stale || end_stale);
		if (end)
			t.state = JOURNAL_STATE_NORMAL;
		if (end_initial_sync)
			atomic_store(&j->last_sync_ns, dfsr_now_ns()); /* §12: a completed sync */
		rc = meta_commit_locked(j, &t, false);
		*ended = rc == 0 && end;
	}
	if (rc < 0) { /* memory and disk keep agreeing: the old vector comes back */
		tmp = j->knowledge;
		j->knowledge = saved;
		saved = tmp;
	}
	journal_unlock(j);
	version_vector_release(&saved);
	return rc;
}

/* ---- reverting a read-only folder (docs/conflicts.md §11) ------------------------------ */

static int cmp_mark(const void *a, const void *b)
{
	const struct revert_mark *x = a, *y = b;
	int d = dfsr_uid_cmp(&x->uid, &y->uid);

	if (d)
		return d;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Sort the marks by UID once the scan has added them, keeping the last mark of a UID. */
static void marks_sort_locked(struct journal *j)
{
	size_t out = 0;

	if (j->marks_sorted || !j->nmarks)
		return;
	qsort(j->marks, j->nmarks, sizeof(*j->marks), cmp_mark);
	for (size_t i = 0; i < j->nmarks; i++) {
		if (i + 1 < j->nmarks && dfsr_uid_equal(&j->marks[i].uid, &j->marks[i + 1].uid))
			continue;
		j->marks[out++] = j->marks[i];
	}
	j->nmarks = out;
	j->marks_sorted = true;
}

static struct revert_mark *mark_find_locked(struct journal *j, const struct dfsr_uid *uid)
{
	struct revert_mark key = { .uid = *uid };
	struct revert_mark *m;
	size_t lo = 0, hi;

	marks_sort_locked(j);
	hi = j->nmarks;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d;

		m = &j->marks[mid];
		d = dfsr_uid_cmp(&key.uid, &m->uid);
		if (d == 0)
			return m;
		if (d < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static int mark_add_locked(struct journal *j, const struct record *r, bool present)
{
	if (j->nmarks == j->marks_cap) {
		size_t cap = j->marks_cap ? j->marks_cap * 2 : 64;
		struct revert_mark *p = realloc(j->marks, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		j->marks = p;
		j->marks_cap = cap;
	}
	j->marks[j->nmarks] = (struct revert_mark){
		.uid = r->uid,
		.gvsn = r->gvsn,
		.order = j->marks_added++,
		.present = present,
	};
	j->nmarks++;
	j->marks_sorted = false;
	return 0;
}

int journal__revert_mark(struct journal *j, const struct record *r, bool present)
{
	int rc;

	pthread_mutex_lock(&j->lock);
	rc = mark_add_locked(j, r, present);
	journal_unlock(j);
	return rc;
}

static int revert_missing_locked(struct journal *j, const struct dfsr_uid *uid, uint64_t *marked,
				 uint64_t *removed, int depth);

struct revert_ctx {
	uint64_t *marked, *removed;
	int depth;
};

static int revert_child(struct journal *j, const struct dfsr_uid *child, const uint8_t *k,
			size_t klen, void *arg)
{
	struct revert_ctx *x = arg;

	(void)k;
	(void)klen;
	return revert_missing_locked(j, child, x->marked, x->removed, x->depth + 1);
}

static int revert_missing_locked(struct journal *j, const struct dfsr_uid *uid, uint64_t *marked,
				 uint64_t *removed, int depth)
{
	struct record r;
	int rc;

	if (depth > PATH_DEPTH_MAX)
		return -EIO;
	rc = journal__get(j, uid, &r);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	if (r.tombstone)
		goto out_release;
	if (dfsr_uid_equal(&r.gvsn.db, &j->db_id)) {
		/* a version only this member holds: nothing to fetch, the delete is recorded */
		rc = remove_locked(j, uid, removed, depth);
		goto out_release;
	}
	if (r.type == RECORD_DIR) {
		struct revert_ctx x = { .marked = marked, .removed = removed, .depth = depth };

		rc = each_child(j, uid, revert_child, &x);
		if (rc < 0)
			goto out_release;
	}
	rc = mark_add_locked(j, &r, false);
	if (rc == 0 && marked)
		(*marked)++;
out_release:
	record_release(&r);
	return rc;
}

int journal__revert_missing(struct journal *j, const struct dfsr_uid *uid, uint64_t *marked,
			    uint64_t *removed)
{
	int rc;

	pthread_mutex_lock(&j->lock);
	rc = revert_missing_locked(j, uid, marked, removed, 0);
	journal_unlock(j);
	return rc;
}

bool journal__reverted_locked(struct journal *j, const struct record *l, bool *present)
{
	struct revert_mark *m;

	*present = false;
	if (!j->nmarks || l->tombstone)
		return false;
	m = mark_find_locked(j, &l->uid);
	if (!m || !m->gvsn.counter || version_gvsn_cmp(&m->gvsn, &l->gvsn) != 0)
		return false;
	*present = m->present;
	return true;
}

void journal__revert_done_locked(struct journal *j, const struct dfsr_uid *uid)
{
	struct revert_mark *m = j->nmarks ? mark_find_locked(j, uid) : NULL;

	if (m)
		m->gvsn.counter = 0;
}

int journal__revert_knowledge(struct journal *j, struct version_vector *out)
{
	int rc;

	pthread_mutex_lock(&j->lock);
	marks_sort_locked(j);
	if (j->stale) {
		/* §12: whatever we hold may have been deleted and forgotten: ask for it all */
		version_vector_release(out);
		rc = j->counter ? version_vector_raise(out, &j->db_id, j->counter) : 0;
		journal_unlock(j);
		return rc;
	}
	rc = version_vector_copy(out, &j->knowledge);
	if (rc == 0 && j->counter)
		rc = version_vector_raise(out, &j->db_id, j->counter);
	for (size_t i = 0; rc == 0 && i < j->nmarks; i++) {
		const struct revert_mark *m = &j->marks[i];

		if (m->gvsn.counter && !dfsr_uid_equal(&m->gvsn.db, &j->db_id))
			version_vector_lower(out, &m->gvsn.db, m->gvsn.counter - 1);
	}
	journal_unlock(j);
	return rc;
}

size_t journal__revert_pending(struct journal *j)
{
	size_t n = 0;

	pthread_mutex_lock(&j->lock);
	marks_sort_locked(j);
	for (size_t i = 0; i < j->nmarks; i++)
		n += j->marks[i].gvsn.counter != 0;
	journal_unlock(j);
	return n;
}

/* ---- adopting a clone (core/clone.h, core/internal.h) ---------------------------------- */

int journal__clone_adopt(struct journal *j)
{
	struct db_iter *it;
	struct txn t;
	int rc;

	if (j->read_only)
		return -EIO;
	it = db_iter_new(j->db, NULL, DB_CF_EVENTS);
	if (!it)
		return -ENOMEM;
	pthread_mutex_lock(&j->lock);
	db_batch_clear(j->batch);
	/* the source member's event log is its own, not ours */
	for (db_iter_seek_first(it); db_iter_valid(it); db_iter_next(it)) {
		size_t klen;
		const uint8_t *k = db_iter_key(it, &klen);

		db_batch_delete(j->batch, DB_CF_EVENTS, k, klen);
	}
	rc = db_iter_status(it);
	if (rc == 0) {
		/* a GVSN made by two databases would collide: this member gets its own id */
		dfsr_uid_random(&j->db_id);
		/* the last sync time stays: the clone's content is as fresh as its source's */
		j->stale = false;
		j->stale_counter = 0;
		j->stale_last_sync_ns = 0;
		txn_begin(j, &t);
		t.counter = 0;
		t.state = JOURNAL_STATE_NORMAL;
		rc = meta_put(j, j->batch, &t);
	}
	if (rc == 0)
		rc = db_batch_commit(j->batch, true);
	db_batch_clear(j->batch);
	if (rc == 0) {
		txn_apply(j, &t);
		j->nmarks = 0;
	}
	journal_unlock(j);
	db_iter_free(it);
	return rc < 0 && rc != -ENOMEM ? -EIO : rc;
}

static int clone_forget_locked(struct journal *j, const struct dfsr_uid *uid, uint64_t *forgotten,
			       int depth);

struct forget_ctx {
	uint64_t *forgotten;
	int depth;
};

static int forget_child(struct journal *j, const struct dfsr_uid *child, const uint8_t *k,
			size_t klen, void *arg)
{
	struct forget_ctx *x = arg;

	(void)k;
	(void)klen;
	return clone_forget_locked(j, child, x->forgotten, x->depth + 1);
}

static int clone_forget_locked(struct journal *j, const struct dfsr_uid *uid, uint64_t *forgotten,
			       int depth)
{
	struct record r;
	int rc;

	if (depth > PATH_DEPTH_MAX)
		return -EIO;
	rc = journal__get(j, uid, &r);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	if (r.tombstone)
		goto out_release;
	if (r.type == RECORD_DIR) {
		struct forget_ctx x = { .forgotten = forgotten, .depth = depth };

		rc = each_child(j, uid, forget_child, &x);
		if (rc < 0)
			goto out_release;
	}
	/* persisted by the drop's batch: partners send this version again (Hello) */
	version_vector_lower(&j->knowledge, &r.gvsn.db, r.gvsn.counter - 1);
	rc = journal__drop_locked(j, uid);
	if (rc == 0 && forgotten)
		(*forgotten)++;
out_release:
	record_release(&r);
	return rc;
}

int journal__clone_forget(struct journal *j, const struct dfsr_uid *uid, uint64_t *forgotten)
{
	int rc;

	if (j->read_only)
		return -EIO;
	pthread_mutex_lock(&j->lock);
	rc = clone_forget_locked(j, uid, forgotten, 0);
	journal_unlock(j);
	return rc;
}
