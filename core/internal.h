/*
 * internal.h - sharing between the core .c files only (STYLE rule 2); fs/ and net/ never
 * include it.
 *
 * journal <-> scan: the consistency scan (core/scan.c) walks directories and reports what
 * it finds through the journal's change primitives below, and the journal records a
 * directory moved in from an untracked place by asking the scan to walk it. Both sides
 * name directories by descriptor (openat-relative, never by path) and UID.
 *
 * Thread: as core/journal.h (any), unless said otherwise.
 */
#ifndef DFSR_CORE_INTERNAL_H
#define DFSR_CORE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/hash.h"
#include "core/journal.h"
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
