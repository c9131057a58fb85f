/*
 * scan.h - the initial build and the consistency scan of a folder.
 *
 * First start over an existing tree (state initial-build): every file and folder under the
 * local path gets a record and a replication hash. Every later start: the tree is compared
 * with the records, directory by directory (the (parent UID, name) index gives a
 * directory's recorded children in order, so no global "seen" set is kept in memory):
 *  - an entry whose stat (type, size, mtime, ctime, mode, owner) differs from its record is
 *    re-hashed (data re-read only when size or mtime changed) and, if the hash differs,
 *    gets a new version;
 *  - a recorded name that is gone becomes a tombstone (with everything below it);
 *  - a new name gets a record.
 * DfsrPrivate, filtered names and everything under filtered directories are skipped.
 * Every recorded non-directory with st_nlink > 1 is registered in the journal's map of hard
 * links (journal_link_note()), which lives in memory only and is filled again here.
 * A read-only folder (docs/conflicts.md §11) makes no local version of a version it
 * received: an object with other data or of another type, and (state normal) a new one,
 * is moved to ConflictAndDeleted, one whose metadata alone changed stays (event 1206 for
 * each), and the record is marked to be installed again from a partner (core/internal.h,
 * journal__revert_mark()).
 * Progress (files and bytes done, totals once counted) is visible through
 * journal_get_status() while the scan runs.
 *
 * Thread: init (runs before the mount answers, so nothing else changes the tree through
 * dfsr meanwhile).
 */
#ifndef DFSR_CORE_SCAN_H
#define DFSR_CORE_SCAN_H

#include <stdint.h>

#include "core/journal.h"

struct scan_result {
	uint64_t created;  /* records made */
	uint64_t changed;  /* new versions of existing records */
	uint64_t removed;  /* tombstones made */
	uint64_t reverted; /* read-only folder: objects reverted (docs/conflicts.md §11) */
	uint64_t skipped;  /* entries that could not be read (event 1205 each) */
	uint64_t files;    /* entries visited */
};

/**
 * scan_folder() - Run the initial build (state initial-build) or the consistency scan.
 * @j:   an open, writable journal
 * @out: receives the counts; may be NULL
 *
 * Logs 1202/1203 around an initial build and 1204 after a scan. Entries that cannot be read
 * are skipped with event 1205 and do not fail the scan.
 * Return: 0, -EIO if the database failed, -ENOMEM.
 */
int scan_folder(struct journal *j, struct scan_result *out);

#endif
