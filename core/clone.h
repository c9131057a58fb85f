/*
 * clone.h - database cloning (`dfsr clone export` / `dfsr clone import`), as DFSR's: a
 * new member of a large folder starts from a copy of a running member's database over
 * preseeded data, instead of an initial sync that would compare every file over the wire.
 *
 * Export: a consistent copy (RocksDB checkpoint, core/db.h db_checkpoint()) of one folder's
 * database, taken while the member runs, plus a description file, in a directory:
 *   DIR/db/             the checkpoint (a RocksDB database, as DfsrPrivate/db)
 *   DIR/DfsrClone.xml   folder, source member, source database id, time, record counts
 * (docs/on-disk.md, "Clone exports"). Event 2402 on the source member.
 *
 * Import, before the new member's first start, over the local path already filled with
 * the folder's data (e.g. `rsync -aAX`): the checkpoint is copied into DfsrPrivate under a
 * temporary name, adopted there (a new database id, state normal: core/internal.h,
 * journal__clone_adopt()), checked against the local path, and only then renamed to
 * DfsrPrivate/db, so a failed import leaves no database at all. Validation:
 *  - none:  the local path is trusted as it is;
 *  - basic: each live record's object exists with the record's type; a file's size and
 *           mtime equal the record's, and its replication hash taken with the record's
 *           content digest (metadata read, data not) equals the record's; a link's
 *           replication hash (its target read: copying tools do not all keep a link's
 *           mtime) equals the record's;
 *  - full:  the replication hash is taken from the data too.
 * A record whose object is missing, or whose object differs (moved to PreExisting first,
 * with a PreExistingManifest.xml entry, as initial sync does, docs/conflicts.md §10), is
 * forgotten (no tombstone) with everything below it, and the knowledge is lowered below its
 * GVSN, so that partners send the group's version again (journal__clone_forget()). A
 * directory whose mode or owner differs gets the record's back. Local objects the clone
 * does not know are left in place: like a non-primary member's after initial sync (§10)
 * they are recorded by the first start's consistency scan and replicate out. Matched
 * records get the local stat data (ctime), so that scan re-reads nothing. Event 2404 with
 * the counts.
 *
 * Thread: init (commands; the export runs on a pool thread of the running member, with its
 * journal as any other reader).
 */
#ifndef DFSR_CORE_CLONE_H
#define DFSR_CORE_CLONE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/journal.h"
#include "core/util.h"

#define CLONE_DESC_FILE  "DfsrClone.xml"
#define CLONE_DB_DIR     "db"
#define CLONE_ERR_LEN    1024
#define CLONE_NAME_MAX   255
#define CLONE_DESC_BYTES (64 * 1024) /* a larger description file is refused */

/* What DfsrClone.xml says. */
struct clone_info {
	char folder[CLONE_NAME_MAX + 1]; /* the replicated folder's name */
	char member[CLONE_NAME_MAX + 1]; /* the source member's name */
	struct dfsr_uid db_id;           /* the source's database id (never reused) */
	int64_t time_ns;                 /* when the checkpoint was taken */
	uint64_t records;                /* files + folders + tombstones */
	uint64_t files, folders, tombstones;
};

/**
 * clone_info_write() - Write DfsrClone.xml into directory @dirfd (temporary name, fsync,
 * rename).
 * Return: 0, -ENOMEM, or an -errno of writing.
 */
int clone_info_write(int dirfd, const struct clone_info *ci);

/**
 * clone_info_read() - Read and check DfsrClone.xml in directory @dirfd. The file is
 * untrusted: at most CLONE_DESC_BYTES, no network, no DTD, every element present once.
 * Return: 0, -ENOENT (no such file), -EBADMSG (not a clone description), -ENOMEM, -errno.
 */
int clone_info_read(int dirfd, struct clone_info *out);

/**
 * clone_export() - Export the open folder database @j into @dir.
 * @member: this member's name (for the description)
 * @dir:    absolute path; created if missing (its parent must exist), else must be an
 *          empty directory
 * @out:    receives the description written
 * @err:    receives one line saying what failed
 *
 * Logs 2402 (CLONE_EXPORTED). On failure whatever was made in @dir is removed again.
 * Thread: any but the loop (blocks on disk).
 * Return: 0, -EINVAL (relative @dir), -ENOTEMPTY, -ENOTDIR, -EEXIST, -ENOSPC, -EIO,
 *         -ENOMEM, or the -errno of making @dir.
 */
int clone_export(struct journal *j, const char *member, const char *dir, struct clone_info *out,
		 char err[static CLONE_ERR_LEN]);

enum clone_validation {
	CLONE_VALIDATE_NONE = 0,
	CLONE_VALIDATE_BASIC = 1,
	CLONE_VALIDATE_FULL = 2,
};

/* "none", "basic", "full". Return: 0, or -EINVAL for any other text. */
int clone_validation_parse(const char *s, enum clone_validation *out);
const char *clone_validation_name(enum clone_validation v);

enum clone_finding {
	CLONE_MISMATCHED = 0, /* differs: moved to PreExisting (@preserved), group's version
			       * fetched; a directory: its metadata (see @preserved NULL) */
	CLONE_MISSING = 1,    /* not in the local path: fetched */
	CLONE_EXTRA = 2,      /* local object the clone does not know: kept, replicates out */
};

/* One finding of an import: @path relative to the folder root; @preserved the name under
 * PreExisting or NULL. */
typedef void (*clone_report_fn)(void *arg, enum clone_finding what, const char *path,
				const char *preserved);

struct clone_import_opts {
	const struct config *cfg;           /* borrowed */
	const struct config_folder *folder; /* borrowed: the folder to import into */
	int root_fd;                        /* O_PATH|O_DIRECTORY of its local path; borrowed */
	const char *dir;                    /* the export */
	enum clone_validation validation;
	clone_report_fn report; /* may be NULL */
	void *arg;
};

struct clone_import_result {
	struct clone_info info; /* the export's description */
	struct dfsr_uid db_id;  /* this member's new database id */
	uint64_t checked;       /* live records compared: matched + mismatched + missing */
	uint64_t matched, mismatched, missing, extra;
};

/**
 * clone_import() - Adopt the export @o->dir as the folder's database (see above).
 * @out: receives the counts
 * @err: receives one line saying what failed
 *
 * The caller makes sure the member is not running. Logs 2404 (CLONE_IMPORTED) into the
 * new database. Objects moved to PreExisting before a failure stay there, listed in the
 * manifest; no database is left behind (a second import starts over).
 * Return: 0, -EEXIST (the folder has a database already), -ENOENT (@o->dir is not an
 *         export), -EBADMSG (its description or database is damaged), -EINVAL (an export
 *         of another folder), -ENOSPC, -EIO, -ENOMEM, or another -errno of the disk.
 */
int clone_import(const struct clone_import_opts *o, struct clone_import_result *out,
		 char err[static CLONE_ERR_LEN]);

#endif
