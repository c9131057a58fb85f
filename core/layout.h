/*
 * layout.h - the hidden DfsrPrivate folder of a local path, and its manifests.
 *
 *   <path>/DfsrPrivate/                   0700 root; never replicated, never journaled
 *       db/                               the folder database (core/journal.c)
 *       Staging/                          staged file versions, under the staging quota
 *       Installing/                       downloads being assembled
 *       ConflictAndDeleted/               conflict losers and deleted files
 *       PreExisting/                      non-primary files that lost the initial sync
 *       ConflictAndDeletedManifest.xml    one <Resource> per preserved file
 *       PreExistingManifest.xml
 *
 * Manifests are XML documents written with libxml2, replaced atomically (write to a
 * temporary name, fsync, rename) so a reader never sees half of one. An empty manifest is
 * a valid document with an empty root element. The format is in docs/on-disk.md.
 *
 * Thread: layout_prepare() is init; the manifest functions are any, serialised per
 * manifest by the caller (the journal's mutex).
 */
#ifndef DFSR_CORE_LAYOUT_H
#define DFSR_CORE_LAYOUT_H

#include <stdint.h>

#include "core/util.h"

#define LAYOUT_PRIVATE           "DfsrPrivate"
#define LAYOUT_DB                "db"
#define LAYOUT_STAGING           "Staging"
#define LAYOUT_INSTALLING        "Installing"
#define LAYOUT_CONFLICT          "ConflictAndDeleted"
#define LAYOUT_PREEXISTING       "PreExisting"
#define LAYOUT_CONFLICT_MANIFEST "ConflictAndDeletedManifest.xml"
#define LAYOUT_PREEXIST_MANIFEST "PreExistingManifest.xml"
#define LAYOUT_ERR_LEN           512

/**
 * layout_prepare() - Create or repair DfsrPrivate under the local path.
 * @root_fd: O_PATH|O_DIRECTORY descriptor of the local path
 * @err:     receives one line naming what failed
 *
 * Creates what is missing (mode 0700, owner root), writes empty manifests where none
 * exist, fixes the mode of DfsrPrivate if it was loosened, and checks that it can write
 * there (a test file is created and removed).
 * Thread: init.
 * Return: 0, -EACCES/-EROFS/-ENOSPC/-ENOTDIR (DfsrPrivate is not a directory), -EIO.
 */
int layout_prepare(int root_fd, char err[static LAYOUT_ERR_LEN]);

enum manifest_kind {
	MANIFEST_CONFLICT = 0,    /* ConflictAndDeletedManifest.xml */
	MANIFEST_PREEXISTING = 1, /* PreExistingManifest.xml */
};

enum manifest_type {
	MANIFEST_TYPE_CONFLICT = 0,      /* "conflict" */
	MANIFEST_TYPE_NAME_CONFLICT = 1, /* "name-conflict" */
	MANIFEST_TYPE_DELETED = 2,       /* "deleted" */
	MANIFEST_TYPE_PREEXISTING = 3,   /* "preexisting" */
};

struct manifest_entry {
	int64_t time_ns;
	enum manifest_type type;
	const char *path;      /* original path, relative to the folder root */
	const char *preserved; /* name under ConflictAndDeleted/ or PreExisting/ */
	struct dfsr_uid uid;
	struct dfsr_uid gvsn_db;
	uint64_t gvsn_counter;
	uint64_t size;
};

const char *manifest_type_name(enum manifest_type t);

/**
 * manifest_append() - Add one entry to a manifest (atomic replace).
 * @private_fd: O_PATH|O_DIRECTORY descriptor of DfsrPrivate
 * Return: 0, -EIO, -ENOSPC, -ENOMEM, -EBADMSG if the existing manifest does not parse.
 */
int manifest_append(int private_fd, enum manifest_kind kind, const struct manifest_entry *e);

typedef int (*manifest_visit_fn)(void *arg, const struct manifest_entry *e);

/**
 * manifest_list() - Visit a manifest's entries in file order.
 * Return: 0, the callback's non-zero value, -ENOENT, -EBADMSG (not a manifest), -ENOMEM.
 */
int manifest_list(int private_fd, enum manifest_kind kind, manifest_visit_fn fn, void *arg);

/**
 * manifest_remove() - Drop the entries whose preserved name is @preserved (after a restore
 * or a quota cleanup). Return: 0, -ENOENT if none matched, -EIO, -ENOMEM, -EBADMSG.
 */
int manifest_remove(int private_fd, enum manifest_kind kind, const char *preserved);

#endif
