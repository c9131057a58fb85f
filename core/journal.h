/*
 * journal.h - one replicated folder's database: records, the outbound journal, the
 * knowledge vector and the event log, and the change API through which every change made
 * through the mount is recorded.
 *
 * A `struct journal` is one open folder database (RocksDB under DfsrPrivate/db, reached
 * only through core/db.c). The filesystem reports each change *after* the backing
 * operation succeeded, naming objects by (parent UID, name) or by UID, and handing an
 * O_PATH descriptor of the object so that the journal can stat and hash it itself.
 * Each change commits its record, its new GVSN, the knowledge vector and its journal
 * entry in one atomic write batch (DESIGN.md, "Crash safety").
 *
 * Invariants:
 *  - The folder root has a fixed UID, the same on every member:
 *    the first 16 bytes of SHA-256("dfsr-root\0" || folder name). It has no record.
 *  - Every live record is reachable from the root through the (parent UID, name) index,
 *    and the index holds live records only. Tombstones keep their last parent and name.
 *  - A new version (a new GVSN, a journal entry) is made only when the replication hash,
 *    the parent or the name changes, or on create and delete. A change that leaves all
 *    three as they were (a bare `touch`) only refreshes the stored stat fields.
 *  - Names matching the folder's file filter (files) or subfolder filter (directories), and
 *    everything under an untracked directory, get no record: their UID is all zero, and
 *    every call given a zero UID is a successful no-op.
 *  - Nothing under DfsrPrivate is ever journaled.
 *
 * Thread: every function is safe from any thread; changes are serialised by a mutex
 * inside the journal (one short RocksDB batch per change). Hashing happens in the caller's
 * thread before the mutex is taken. No function calls back into another layer.
 */
#ifndef DFSR_CORE_JOURNAL_H
#define DFSR_CORE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/config.h"
#include "core/event.h"
#include "core/hash.h"
#include "core/util.h"

#define JOURNAL_NAME_MAX 255 /* bytes of one name component */
#define JOURNAL_ERR_LEN  512

struct journal;
struct space;

enum journal_state {
	JOURNAL_STATE_INITIAL_BUILD = 0,
	JOURNAL_STATE_INITIAL_SYNC = 1,
	JOURNAL_STATE_NORMAL = 2,
	JOURNAL_STATE_ERROR = 3,
};

/* "initial-build", "initial-sync", "normal", "error" (CONTRACT.md). */
const char *journal_state_name(enum journal_state s);

struct journal_opts {
	const struct config *cfg;           /* borrowed; must outlive the journal */
	const struct config_folder *folder; /* borrowed; must outlive the journal */
	int root_fd;    /* O_PATH|O_DIRECTORY descriptor of the local path, opened before
			 * the mount covers it; borrowed. The database lives at
			 * /proc/self/fd/<root_fd>/DfsrPrivate/db, which stays reachable when
			 * the mount point equals the local path. */
	bool read_only; /* open for reading while the member may be running (commands) */

	/* NULL: DfsrPrivate/db under root_fd (always, but for `dfsr clone import`, which
	 * builds the adopted database aside and renames it into place, core/clone.h). */
	const char *db_path;
};

/**
 * journal_open() - Open (or create, on first start) a folder's database.
 * @o:   options
 * @out: receives the journal
 * @err: receives one line saying what failed (e.g. "DfsrPrivate/db is locked by another
 *       dfsr process")
 *
 * On first start a new random database id is made and the state is initial-build. Unless
 * read-only, the database is marked running; journal_was_unclean() tells whether the
 * previous run ended without journal_close() (the caller then logs 2212 and runs the scan).
 *
 * Thread: init.
 * Return: 0, -EBUSY if another process holds the database, -ENOENT if read-only and there is
 *         no database, -EIO, -ENOMEM.
 */
int journal_open(const struct journal_opts *o, struct journal **out,
		 char err[static JOURNAL_ERR_LEN]);

/**
 * journal_close() - Mark a clean stop, flush and close. NULL-safe.
 * Thread: init (after every other thread stopped using @j).
 */
void journal_close(struct journal *j);

/* True when the previous run did not close the database cleanly. */
bool journal_was_unclean(const struct journal *j);

const struct dfsr_uid *journal_root_uid(const struct journal *j);
const struct dfsr_uid *journal_db_id(const struct journal *j);
const struct config_folder *journal_folder(const struct journal *j);

/**
 * journal_set_folder() - Use a reloaded folder configuration (file and subfolder filters,
 * quotas) from now on. Changes already recorded are not revisited; the next consistency
 * scan applies new filters to what is on disk.
 * @folder: the same folder (same name and path) from a newer config; borrowed, and must
 *          stay alive until journal_close() (the member keeps every loaded config)
 *
 * Thread: any.
 */
void journal_set_folder(struct journal *j, const struct config_folder *folder);
int journal_root_fd(const struct journal *j);

/* The reserve kept for the database on the local path's disk (core/space.h): dfsr's own
 * writes of file data ask it first. NULL for a read-only journal (space_take() allows
 * NULL). Thread: any. */
struct space *journal_space(struct journal *j);

enum journal_state journal_state(const struct journal *j);
/* Persists the state. Return: 0 or -EIO. */
int journal_set_state(struct journal *j, enum journal_state s);

/*
 * Tombstones and content freshness (docs/conflicts.md §12). The database keeps the wall
 * clock of its last completed sync: the last merge of a normal partner's Done.
 */

/**
 * journal_freshness() - At start: is the content older than the tombstone lifetime?
 * @lifetime_ns: the folder's tombstone lifetime
 * @now_ns:      the wall clock
 * @stale:       receives true if the folder was `normal` and its last sync is more than
 *               @lifetime_ns ago: it is then put in state initial-sync, marked stale
 *               (journal_stale()), and asks its partners for everything again
 *               (journal__revert_knowledge() is our own versions only)
 *
 * A database that never synced starts counting now. A sync noted in memory since the last
 * database write (journal_note_contact()) is written. Thread: any (takes the lock).
 * Return: 0 or -EIO.
 */
int journal_freshness(struct journal *j, int64_t lifetime_ns, int64_t now_ns, bool *stale);

/* True while in the initial sync journal_freshness() started; *@counter (if not NULL)
 * receives our database's counter when it did: versions of ours above it were made since. */
bool journal_stale(struct journal *j, uint64_t *counter);
/* The last completed sync (wall clock) when the folder turned stale; 0 if not stale or not
 * known (a database from before the field). An object made after it (its UID's
 * create_time_ns) is one the group never saw, so not one it deleted. */
int64_t journal_stale_since(struct journal *j);
/* The stale initial sync is over. Return: 0 or -EIO. */
int journal_stale_done(struct journal *j);
/**
 * journal_stale_lift() - The administrator's way out of a stale initial sync (§12): if the
 * folder is stale and its last completed sync *when it turned stale* is now within
 * @lifetime_ns (the tombstone lifetime was raised), it is no longer stale and goes back to
 * `normal` with what it holds, as DFSR does when MaxOfflineTimeInDays is raised. Syncs
 * noted since it turned stale do not count: only a longer lifetime lifts it.
 * @lifted: receives true if it did
 * Thread: any (takes the lock). Return: 0 or -EIO.
 */
int journal_stale_lift(struct journal *j, int64_t lifetime_ns, int64_t now_ns, bool *lifted);
/**
 * journal_tombstone_care() - journal_stale_lift() (event 1207 if it lifts), then
 * journal_freshness() with a lifetime of @days (event 4012 if the folder turns stale), then
 * journal_purge_tombstones() of what is older than that.
 * Run at start and every hour by a member that has partners.
 * Thread: any (not the loop: it takes the lock). Return: 0, -EIO, -ENOMEM.
 */
int journal_tombstone_care(struct journal *j, uint32_t days);

/* Wall clock of the last completed sync (0: none yet). Thread: any, lock-free. */
int64_t journal_last_sync(struct journal *j);
/* A partner acknowledged our changes, or we are connected to a `normal` partner whose Done
 * we merged on that connection (it sends us every change as it is made): that counts as a
 * completed sync too (a member whose partners are all read-only never merges a Done, and a
 * quiet group sends none). Kept in memory, written with the next meta commit or by the
 * hourly journal_freshness(). Thread: any, lock-free (the loop thread may call it). */
void journal_note_contact(struct journal *j);

/**
 * journal_purge_tombstones() - Remove the tombstones whose delete was made before
 * @before_ns (wall clock; now minus the tombstone lifetime). Nothing is journaled: a
 * partner that still lacks such a delete has been away longer than the lifetime, and
 * journal_freshness() keeps it from resurrecting the object.
 * @purged: receives how many were removed
 * Thread: any (takes the lock per tombstone). Return: 0, -EIO, -ENOMEM.
 */
int journal_purge_tombstones(struct journal *j, int64_t before_ns, uint64_t *purged);

/**
 * journal_resend_below() - Make a new version (same content and place, JOURNAL_OP_META) of
 * every live object below directory @dir, so that partners get them again: the directory's
 * attributes were too large to replicate, so outbound skipped it and everything below it
 * (event 1401), while the partners' knowledge came to claim those versions; now that they
 * shrank, the directory's own change is sent, and these go with it (event 1208). Partners
 * that hold an object already install the new version without fetching its data.
 * @count: receives how many objects got a new version (may be NULL)
 * Thread: any (takes the lock). Return: 0, -EIO, -ENOMEM.
 */
int journal_resend_below(struct journal *j, const struct dfsr_uid *dir, uint64_t *count);

/**
 * journal_lookup() - The UID of the live record at (@parent, @name).
 * @out: receives the UID; all zero when the parent is untracked or the name is filtered
 *
 * A name with no record is asked again under the lock, after any replica decision under
 * way (which may be installing that very name) has committed.
 * Thread: any (takes the lock only for a name with no record).
 * Return: 0 (also for untracked names), -ENOENT if the parent is tracked and the name is
 *         not filtered but has no record (e.g. made behind the mount's back), -EIO.
 */
int journal_lookup(struct journal *j, const struct dfsr_uid *parent, const char *name,
		   struct dfsr_uid *out);

/**
 * journal_set_changed() - Call @fn(@arg) after every batch that appended to the outbound
 * journal (local changes, installs from partners), after the commit, with no core lock
 * held; replication sessions wake on it. NULL @fn turns it off.
 * Thread: init (before changes flow), or any with @fn NULL.
 */
void journal_set_changed(struct journal *j, void (*fn)(void *arg), void *arg);

/* ---- the change API (called by fs/ after the backing operation succeeded) ---------- */

/**
 * journal_note_new() - A new object appeared at (@parent, @name): create, mkdir, mknod,
 * symlink, link, or a name that is now tracked.
 * @fd:  O_PATH|O_NOFOLLOW descriptor of the new object
 * @out: receives its UID (zero if untracked)
 *
 * A directory that already has entries (moved in from an untracked place) is walked and
 * recorded with everything below it.
 * Return: 0, -EIO, -ENOMEM, or an -errno from hashing (the change is then logged, event
 *         1601, and left for the next consistency scan).
 */
int journal_note_new(struct journal *j, const struct dfsr_uid *parent, const char *name, int fd,
		     struct dfsr_uid *out);

/**
 * journal_note_new_stat() - journal_note_new() given the caller's lstat of @fd's object
 * (@st, taken just before the call; NULL: stat it here). The hash takes it as its first
 * look at the object (hash_fd_stat()), which saves a stat or two per new object.
 */
int journal_note_new_stat(struct journal *j, const struct dfsr_uid *parent, const char *name,
			  int fd, const struct stat *st, struct dfsr_uid *out);

enum journal_change_flags {
	JOURNAL_DATA = 1u << 0,  /* the data may have changed: read it again */
	JOURNAL_NAMES = 1u << 1, /* one of several names the caller knows for the object */
};

/**
 * journal_note_change() - The object @uid changed: its data was written and the last
 * writable handle closed (JOURNAL_DATA), or its mode, owner, xattrs/ACLs, size or times.
 * @fd: O_PATH descriptor of the object
 *
 * Without JOURNAL_DATA the stored content digest is reused when the size and mtime still
 * match the record. A zero @uid, an unknown UID, a tombstone, or an object that has no
 * name left (unlinked or replaced, st_nlink == 0) is a no-op; so is a hard-linked object
 * (st_nlink > 1, or JOURNAL_NAMES: the caller changes it through several names it knew,
 * and some may have left it, down to a single link) whose record's path no longer reaches
 * it (that name was given to another object: the change is not that record's; it is also
 * dropped from the map of hard links below). A rename of that name racing with the change
 * can make it miss a name, which the next consistency scan catches up.
 * Return: 0, -EIO, -ENOMEM, or an -errno from hashing (logged, left for the scan).
 */
int journal_note_change(struct journal *j, const struct dfsr_uid *uid, int fd, unsigned flags);

/**
 * journal_note_remove() - (@parent, @name) was unlinked or removed: its record becomes a
 * tombstone (with every live record below it, for a directory).
 * Return: 0 (also when nothing was recorded there), -EIO.
 */
int journal_note_remove(struct journal *j, const struct dfsr_uid *parent, const char *name);

struct journal_rename {
	const struct dfsr_uid *old_parent;
	const char *old_name;
	const struct dfsr_uid *new_parent;
	const char *new_name;
	bool exchange; /* RENAME_EXCHANGE: the two objects swapped names */
	int fd;        /* O_PATH descriptor of the object now at new_name */
	int other_fd;  /* exchange: the object now at old_name; otherwise -1 */
};

/**
 * journal_note_rename() - A rename succeeded. The moved record keeps its UID and gets a
 * new version with its new parent and name; a replaced tracked target becomes a tombstone;
 * for an exchange both records move. Moving into an untracked place (a filtered name, an
 * untracked directory) tombstones the object and everything below it; moving out of one
 * records it as new, as journal_note_new() does — except the editor's save pattern: an
 * untracked name ("x.tmp") renamed over a tracked object of the same type keeps the
 * target's UID and makes a new version of it (MODIFY or META), so a save is not a delete
 * plus a create.
 * @out:       receives the UID of the object now at new_name (zero if untracked)
 * @other_out: exchange: receives the UID of the object now at old_name; may be NULL
 *
 * Return: 0, -EIO, -ENOMEM.
 */
int journal_note_rename(struct journal *j, const struct journal_rename *r, struct dfsr_uid *out,
			struct dfsr_uid *other_out);

/* ---- hard links: the other names of one object --------------------------------------- */

/*
 * Each name of a hard-linked file is its own record, and a change of the file made through
 * one name must be journaled on all of them. The journal keeps in memory which records name
 * which backing object, (st_dev, st_ino), for objects with st_nlink > 1 (core/linkmap.h):
 * the consistency scan registers every hard-linked object it visits at start, every change
 * recorded from a fresh hash registers its record, and the filesystem registers the names
 * it knows of an object when it links it (journal_link_note()). The filesystem asks for the
 * names it does not know yet (journal_link_others()) when a changed object has more links
 * than names known to it: after the kernel forgot the inode, or after a restart.
 * Limits: at most JOURNAL_LINKS_MAX names are held (further ones are not registered); names
 * made behind the mount are recorded, and registered, by the next start's scan only. What
 * the map misses is left to that scan, as every change that could not be journaled.
 */
#define JOURNAL_LINKS_MAX 131072 /* ~64 bytes each: 8 MiB at most */

/**
 * journal_link_note() - Remember that record @uid names the object @st describes. A no-op
 * for a zero @uid, a directory, or st_nlink < 2. Nothing is written to the database.
 * @st: stat of the object (st_dev, st_ino, st_nlink, st_mode are used)
 *
 * Thread: any (a leaf mutex of its own; may be called with or without the journal's lock).
 */
void journal_link_note(struct journal *j, const struct stat *st, const struct dfsr_uid *uid);

/**
 * journal_link_others() - The records registered for the object @st describes that are not
 * in @known, each verified first: a live non-directory record whose path, resolved from the
 * local path now, is still that very object. A registered UID that fails (its record gone
 * or a tombstone, its name now another object: inode numbers are reused after a delete, and
 * names change behind the mount) is dropped from the map.
 * @known:  UIDs the caller knows already (skipped); @nknown of them
 * @out:    receives up to @max verified UIDs
 *
 * The answer can be stale by the time it is used (a name replaced meanwhile);
 * journal_note_change() checks each name again.
 * Thread: any (not with the journal's lock held: it reads records and stats paths).
 * Return: how many were written to @out, or -EIO, -ENOMEM.
 */
int journal_link_others(struct journal *j, const struct stat *st, const struct dfsr_uid *known,
			size_t nknown, struct dfsr_uid *out, size_t max);

/* ---- reading: status, the journal, events -------------------------------------------- */

struct journal_status {
	enum journal_state state; /* JOURNAL_STATE_ERROR while the database takes no change
				   * (the last one failed: event 1201); journal_state() is
				   * the replication state underneath */
	uint64_t files;           /* live regular files and symbolic links */
	uint64_t folders;         /* live directories (the root not counted) */
	uint64_t bytes;           /* sum of live files' sizes */
	uint64_t tombstones;      /* records of deleted objects still kept */
	uint64_t journal;         /* entries in the outbound journal */
	uint64_t next_seq;        /* sequence number the next journal entry will get */
	bool stale;               /* §12: in the initial sync that journal_freshness() started */
	int64_t last_sync_ns;     /* wall clock of the last completed sync (0: none yet) */
	/* progress of the initial build or consistency scan, while one runs */
	bool scanning;
	uint64_t scan_files_done;
	uint64_t scan_bytes_done;
	uint64_t scan_files_total; /* estimate; 0 while unknown */
	uint64_t scan_bytes_total;
	int64_t scan_started_ns;
};

/* A snapshot of the counters (kept in memory, persisted with every batch). Thread: any. */
void journal_get_status(struct journal *j, struct journal_status *out);

enum journal_op {
	JOURNAL_OP_CREATE = 1,
	JOURNAL_OP_MODIFY = 2, /* data (and possibly metadata) */
	JOURNAL_OP_META = 3,   /* mode, owner, xattrs/ACLs */
	JOURNAL_OP_RENAME = 4, /* new parent or name (possibly with a new hash) */
	JOURNAL_OP_DELETE = 5, /* tombstone */
};

/* "create", "modify", "meta", "rename", "delete". */
const char *journal_op_name(enum journal_op op);

struct journal_entry_info {
	uint64_t seq; /* local order of the journal */
	enum journal_op op;
	struct dfsr_uid uid;
	struct dfsr_uid gvsn_db;
	uint64_t gvsn_counter;
	int64_t time_ns;  /* when the change was recorded */
	char type;        /* 'f', 'd' or 'l' */
	const char *path; /* relative to the folder root, at the time of the change */
};

typedef int (*journal_entry_fn)(void *arg, const struct journal_entry_info *e);

/**
 * journal_list() - Visit journal entries with seq >= @from, oldest first, at most @max
 * (0 = all). The callback's non-zero return stops the walk and is returned.
 * Thread: any (reads a RocksDB snapshot).
 * Return: 0, the callback's value, -EIO.
 */
int journal_list(struct journal *j, uint64_t from, size_t max, journal_entry_fn fn, void *arg);

/**
 * journal_event() - Store an event in the folder's event log and send it to syslog.
 * @ev:  event id
 * @fmt: printf format of the key=value details, or NULL
 *
 * Thread: any. Never fails visibly (a failed store is reported on syslog only).
 */
void journal_event(struct journal *j, enum dfsr_event ev, const char *fmt, ...) DFSR_PRINTF(3, 4);

struct journal_event_info {
	int64_t time_ns;
	int id;
	const char *folder;
	const char *message; /* fixed text and details */
};

typedef int (*journal_event_fn)(void *arg, const struct journal_event_info *e);

/* Visit stored events with time >= @since_ns, oldest first. Return: 0, callback's, -EIO. */
int journal_list_events(struct journal *j, int64_t since_ns, journal_event_fn fn, void *arg);

/**
 * journal_path() - The relative path of record @uid ("docs/a.txt"), from the index.
 * Return: 0, -ENOENT, -EIO, -ENOMEM.
 */
int journal_path(struct journal *j, const struct dfsr_uid *uid, struct dfsr_buf *out);

/**
 * journal_live() - Is record @uid live (not a tombstone)? Taken under the journal's mutex,
 * so never in the middle of a replica decision (a delete from a partner moves a file to
 * ConflictAndDeleted and buries its record in one).
 * Return: 1 live, 0 a tombstone, -ENOENT for a UID the journal does not know, or another
 * -errno.
 */
int journal_live(struct journal *j, const struct dfsr_uid *uid);

#endif
