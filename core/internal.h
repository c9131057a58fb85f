/*
 * internal.h - sharing between the core .c files only (STYLE rule 2); fs/ and net/ never
 * include it.
 *
 * journal <-> scan: the consistency scan (core/scan.c) walks directories and reports what
 * it finds through the journal's change primitives below, and the journal records a
 * directory moved in from an untracked place by asking the scan to walk it. Both sides
 * name directories by descriptor (openat-relative, never by path) and UID.
 *
 * scan -> replica, journal -> replica: on a read-only folder the scan reverts what changed
 * behind dfsr (docs/conflicts.md §11): it preserves through the replica's preserving code
 * and marks records in the journal, and replica_offer() installs marked versions again.
 *
 * Thread: as core/journal.h (any), unless said otherwise.
 */
#ifndef DFSR_CORE_INTERNAL_H
#define DFSR_CORE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/hash.h"
#include "core/journal.h"
#include "core/layout.h"
#include "core/record.h"
#include "core/scan.h"
#include "core/version.h"

/* ---- journal.c, for scan.c ---------------------------------------------------------- */

enum journal__what {
	JOURNAL__NONE = 0,    /* nothing new (stat fields may have been refreshed) */
	JOURNAL__CREATED = 1, /* a record was made */
	JOURNAL__CHANGED = 2, /* a new version of an existing record */
};

/**
 * journal__tracked() - Whether (@parent, @name) of type @type ('f', 'd', 'l') would be
 * recorded, judged by name only: zero parent, DfsrPrivate at the root, invalid names and
 * the folder's filters. (Whether the parent itself is live is checked when recording.)
 */
bool journal__tracked(const struct journal *j, const struct dfsr_uid *parent, const char *name,
		      char type);

/**
 * journal__sync_entry() - Record what @h says is at (@parent, @name): a new record, a new
 * version of the live record already there (same type), or nothing new when the hash is
 * unchanged (stat fields refreshed). A recorded object of another type is tombstoned first.
 * @out:  receives the UID (zero if untracked)
 * @what: receives enum journal__what
 *
 * Return: 0, -EIO, -ENOMEM.
 */
int journal__sync_entry(struct journal *j, const struct dfsr_uid *parent, const char *name,
			const struct hash_result *h, struct dfsr_uid *out, int *what);

/**
 * journal__apply_hash() - A fresh hash of the live record @uid: a new version if it
 * differs, else a refresh of the stat fields. @what as above.
 * Return: 0 (also when @uid is gone or a tombstone: *what = NONE), -EIO, -ENOMEM.
 */
int journal__apply_hash(struct journal *j, const struct dfsr_uid *uid, const struct hash_result *h,
			int *what);

/**
 * journal__remove() - Tombstone the live record @uid and everything live below it.
 * @removed: incremented by the number of tombstones made; may be NULL
 * Return: 0, -EIO, -ENOMEM.
 */
int journal__remove(struct journal *j, const struct dfsr_uid *uid, uint64_t *removed);

/* Read record @uid. Return: 0, -ENOENT, -EIO (a record that does not decode), -ENOMEM. */
int journal__get(struct journal *j, const struct dfsr_uid *uid, struct record *out);

/* The database, for read-only iteration of the names index. */
struct db *journal__db(struct journal *j);

/* The knowledge vector (copied). Return: 0 or -ENOMEM. */
int journal__knowledge(struct journal *j, struct version_vector *out);

/* Scan progress shown by journal_get_status(). */
void journal__scan_begin(struct journal *j, uint64_t files_total, uint64_t bytes_total);
void journal__scan_add(struct journal *j, uint64_t files, uint64_t bytes);
void journal__scan_end(struct journal *j);

/* ---- journal.c, for replica.c ------------------------------------------------------- */

/*
 * The replica decides and applies an update under the journal's mutex, so that no local
 * change is recorded between its decision and its batch. journal__unlock() calls the
 * changed hook (journal_set_changed()) when a batch with a journal entry committed.
 * Functions named *_locked need the lock held; journal__get() and journal__name_get()
 * work with or without it. Never call a public journal function while holding it.
 */
void journal__lock(struct journal *j);
void journal__unlock(struct journal *j);
enum journal_state journal__state_locked(struct journal *j);

/* The UID indexed at (@parent, @name). Return: 0, -ENOENT, -EIO, -ENOMEM. */
int journal__name_get(struct journal *j, const struct dfsr_uid *parent, const char *name,
		      struct dfsr_uid *out);

enum journal__write_flags {
	JOURNAL__ENTRY = 1u << 0,  /* append a journal entry (r->seq gets the next seq) */
	JOURNAL__NEWVER = 1u << 1, /* a new local version: next own counter as GVSN, now as
				    * change time, own entry raised in r->vv; implies ENTRY */
};

/**
 * journal__write_locked() - Store @r as the record of r->uid in one batch with the names
 * index (the old name dropped if it still names r->uid, the new one set if @r is live),
 * the status counters and the meta. Without flags the record is rewritten quietly (no
 * entry, GVSN kept: stat refresh, a resolution every member makes alike); with
 * JOURNAL__ENTRY it is forwarded like a local change (@op names it) but keeps its GVSN
 * and vector (installs from partners); JOURNAL__NEWVER makes it a new local version
 * (docs/conflicts.md §7 resurrections). The knowledge vector is not raised for foreign
 * GVSNs (replica_merge() does that).
 * Return: 0, -EIO, -ENOMEM.
 */
int journal__write_locked(struct journal *j, struct record *r, enum journal_op op, unsigned flags);

/**
 * journal__adopt_locked() - The local object recorded as @old_uid becomes @r (another
 * UID) in one batch: @old_uid's names entry is dropped and, for a directory, its live
 * children are re-parented under r->uid. Without @tombstone_old (initial sync,
 * docs/conflicts.md §10: never sent) the children are rewritten quietly and @old_uid's
 * record is deleted without a tombstone; with it (a directory merged by §4) the children
 * and @old_uid's tombstone are new local versions, so that the merge replicates.
 * @r is written with a journal entry (op @op), keeping its GVSN, or as a new local version
 * with @flags JOURNAL__NEWVER (a §7 resurrection that takes over a losing directory).
 * Return: 0, -ENOENT (no @old_uid record), -EIO, -ENOMEM.
 */
int journal__adopt_locked(struct journal *j, const struct dfsr_uid *old_uid, bool tombstone_old,
			  struct record *r, enum journal_op op, unsigned flags);

/**
 * journal__drop_locked() - Delete record @uid and its names entry without a tombstone
 * (initial sync: a local object never sent, moved to PreExisting). Children are not
 * touched: drop them first.
 * Return: 0 (also when there is no record), -EIO, -ENOMEM.
 */
int journal__drop_locked(struct journal *j, const struct dfsr_uid *uid);

/**
 * journal__merge_knowledge() - Raise the knowledge vector by @vv (persisted). With
 * @end_initial_sync, a folder in initial sync becomes normal in the same write; a stale
 * one (§12) only with @end_stale too.
 * @ended: receives whether the state changed to normal here
 * Return: 0, -E2BIG, -EIO, -ENOMEM (then nothing changed).
 */
int journal__merge_knowledge(struct journal *j, const struct version_vector *vv,
			     bool end_initial_sync, bool end_stale, bool *ended);

/* ---- journal.c: reverting a read-only folder (docs/conflicts.md §11) ------------------- */

/*
 * On a read-only folder the consistency scan never makes a local version of a version the
 * member received (its GVSN is another database's): it moves a local object with other
 * data aside (one whose metadata alone changed stays in place) and *marks* the record,
 * which keeps the group's GVSN, so that the version is
 * installed again when a partner sends it. Partners send it because the Hello announces
 * the knowledge lowered below every marked GVSN (journal__revert_knowledge()), and
 * replica_offer() installs a marked version instead of ignoring it as known. Marks live
 * in memory only: every start's scan finds the same objects again (gone, or a directory
 * whose metadata still differs).
 */

/**
 * journal__revert_mark() - Mark the live record @r: its version is to be installed again.
 * @present: the object is still in place with the record's data (only its metadata
 *           changed); otherwise nothing is at the record's place any more
 * Return: 0 or -ENOMEM.
 */
int journal__revert_mark(struct journal *j, const struct record *r, bool present);

/**
 * journal__revert_missing() - The live record @uid is gone from the local path: mark it
 * and every live record below it. Records of versions this member made (never received,
 * so nobody can send them again) are tombstoned instead, as journal__remove() would.
 * @marked, @removed: incremented by the marks and tombstones made; may be NULL
 * Return: 0, -EIO, -ENOMEM.
 */
int journal__revert_missing(struct journal *j, const struct dfsr_uid *uid, uint64_t *marked,
			    uint64_t *removed);

/* True if the live record @l is marked at its own GVSN; *present as marked. Lock held. */
bool journal__reverted_locked(struct journal *j, const struct record *l, bool *present);

/* The marked version of @uid has been installed again (or superseded). Lock held. */
void journal__revert_done_locked(struct journal *j, const struct dfsr_uid *uid);

/**
 * journal__revert_knowledge() - The knowledge vector (as journal__knowledge()) with each
 * database's entry lowered below the smallest counter of its marked GVSNs.
 * Return: 0 or -ENOMEM.
 */
int journal__revert_knowledge(struct journal *j, struct version_vector *out);

/* How many marked versions wait to be installed again. */
size_t journal__revert_pending(struct journal *j);

/* ---- journal.c, for clone.c: adopting another member's database (core/clone.h) ------- */

/**
 * journal__clone_adopt() - Make the open database, a clone of another member's, this
 * member's own, in one synced batch: a new random database id (GVSNs made by two members
 * under one id would collide), no version of its own yet (counter 0), state normal, the
 * source's event log emptied, not stale. Records, tombstones, the knowledge vector, the
 * outbound journal and the last sync time (§12: the clone is as fresh as its source) are
 * kept.
 * Thread: init. Return: 0, -EIO, -ENOMEM.
 */
int journal__clone_adopt(struct journal *j);

/**
 * journal__clone_forget() - The live record @uid and everything live below it are not
 * held locally after a clone import (missing, or moved to PreExisting): their records and
 * names entries are deleted without tombstones (nothing was deleted in the group), and the
 * knowledge vector is lowered below each one's GVSN and persisted, so that a partner's
 * Hello walk sends those versions again and replica_offer() installs them as new.
 * @forgotten: incremented by the number of records dropped; may be NULL
 * Return: 0, -EIO, -ENOMEM.
 */
int journal__clone_forget(struct journal *j, const struct dfsr_uid *uid, uint64_t *forgotten);

/* ---- replica.c, for scan.c ---------------------------------------------------------- */

/**
 * replica__preserve_local() - Move the object @rec->name in directory @dfd into
 * ConflictAndDeleted with a manifest entry (docs/conflicts.md §9, §11): preserved name from
 * @rec's name, UID and GVSN counter, never replacing an earlier preserved object (a "~N"
 * is added to the name part when that name is taken); manifest entry of @type for the
 * original path @path, size rec->size; quota cleanup as for every preserve.
 * @pname: receives the preserved name
 * Thread: init (the scan of a read-only folder, before the replica exists).
 * Return: 0, -ENOMEM, or the -errno of opening DfsrPrivate or of the rename.
 */
int replica__preserve_local(struct journal *j, int dfd, const struct record *rec, const char *path,
			    enum manifest_type type, char pname[static RECORD_NAME_MAX + 1]);

/**
 * replica__preexist_local() - As replica__preserve_local(), into PreExisting with a
 * PreExistingManifest.xml entry of type preexisting (no quota): a clone import (core/clone.h)
 * moves a local object that is not the clone's version there before the group's version is
 * installed, as initial sync does (docs/conflicts.md §10).
 * Thread: init.
 * Return: 0, -ENOMEM, or the -errno of opening DfsrPrivate or of the rename.
 */
int replica__preexist_local(struct journal *j, int dfd, const struct record *rec, const char *path,
			    char pname[static RECORD_NAME_MAX + 1]);

/* ---- scan.c, for journal.c ---------------------------------------------------------- */

/**
 * scan__dir() - Reconcile the directory @fd (any descriptor of it, O_PATH included) whose
 * UID is @uid with its recorded children, recursively.
 * @res: counts are added here; may be NULL
 *
 * Return: 0, -EIO, -ENOMEM (unreadable entries are skipped with event 1205).
 */
int scan__dir(struct journal *j, int fd, const struct dfsr_uid *uid, struct scan_result *res);

#endif
