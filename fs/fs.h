/*
 * fs.h - the dfsr filesystem of one replicated folder: a FUSE low-level passthrough over
 * the local path that reports every change to the folder's journal.
 *
 * One `struct fs` is one mount. fs_new() creates the FUSE session and mounts it;
 * fs_run() serves requests on libfuse's worker threads until the mount goes away
 * (fs_stop(), `dfsr umount`, `fusermount3 -u`); fs_free() tears down.
 *
 * The view: exactly the local path, with DfsrPrivate hidden from readdir of the root,
 * reachable by name, and read-only (EROFS for any change under it, EPERM for renaming or
 * removing DfsrPrivate itself). The kernel checks permissions (default_permissions, POSIX
 * ACLs), so with allow_other every user sees exactly the local path's permissions.
 *
 * Thread: fs_new() and fs_free() init; fs_run() on the thread that owns the mount
 * (it returns when the session ends); fs_stop() any.
 */
#ifndef DFSR_FS_FS_H
#define DFSR_FS_FS_H

#include <stdbool.h>
#include <sys/stat.h>

#include "core/config.h"
#include "core/journal.h"

#define FS_ERR_LEN 512

struct fs;

struct fs_opts {
	struct journal *journal;            /* borrowed; outlives the fs */
	const struct config_folder *folder; /* borrowed */
	int root_fd;                        /* O_PATH|O_DIRECTORY of the local path; borrowed */
	bool debug;                         /* libfuse debug output on stderr */
	unsigned threads;                   /* maximum worker threads; 0 = default */
};

/**
 * fs_new() - Create the FUSE session for a folder and mount it on folder->mount.
 * @o:   options
 * @out: receives the fs
 * @err: receives one line naming the problem (mount point busy, not empty, missing ...)
 *
 * The mount point must be an empty directory that is not already a mount, or the local
 * path itself (CONTRACT.md: mount may equal path).
 * Thread: init.
 * Return: 0, -ENOTEMPTY, -EBUSY, -ENOENT, -ENOTDIR, -EACCES, -EIO, -ENOMEM.
 */
int fs_new(const struct fs_opts *o, struct fs **out, char err[static FS_ERR_LEN]);

/**
 * fs_run() - Serve requests until the session ends (unmounted or fs_stop()).
 * Thread: the mount's own thread; blocks.
 * Return: 0 after a clean end, -errno if the session failed.
 */
int fs_run(struct fs *fs);

/* Ask the session to end and unmount (lazily if the mount is busy). Thread: any. */
void fs_stop(struct fs *fs);

/**
 * fs_invalidate() - Tell the kernel that something changed in the local path behind the
 * mount's back (an install, a conflict move, a restore), since it caches entries and
 * attributes for an hour.
 * @parent: stat of the directory whose entry @name changed (appeared, vanished, was
 *          replaced by a rename); NULL to skip the entry
 * @name:   the entry's name in @parent
 * @obj:    stat of an object whose data or metadata changed in place; NULL to skip
 *
 * Objects the kernel never looked up need nothing and are ignored.
 * Thread: any thread except a FUSE worker (the kernel may need the directory lock that a
 * request in flight holds).
 */
void fs_invalidate(struct fs *fs, const struct stat *parent, const char *name,
		   const struct stat *obj);

/**
 * fs_busy() - Is the backing object @st open for writing through the mount right now?
 * @st: stat of the object on the local path (only st_dev and st_ino are used)
 *
 * Replication asks before an install replaces a file (docs/conflicts.md §8): a file an
 * application is writing is not replaced under it. The answer is a snapshot: a writer may
 * open the file right after it; such a writer works on whichever inode its open found
 * (the old one, or the installed one after the install's rename) and its change is
 * journaled when its handle is closed, as any other.
 * A file whose last writer has closed it is busy until that close is journaled (the
 * journal may be waiting for the replica's lock meanwhile): taken then, the writer's change
 * would find the record gone and never replicate.
 * Objects the kernel never looked up, and objects only read, are not busy.
 * Thread: any (takes only the inode table's leaf lock; never waits on the kernel).
 * Return: true if at least one open handle of the object may write.
 */
bool fs_busy(struct fs *fs, const struct stat *st);

/**
 * fs_preserved() - The backing regular file @st was moved into ConflictAndDeleted or
 * PreExisting by replication (a conflict loser, a file a partner deleted), or with a
 * directory moved there whole (replication tells of every regular file below it).
 * @st: stat of the object at its preserved name (only st_dev and st_ino are used)
 *
 * Its node, if the kernel still holds one for the old name (a cached dentry, a reader's
 * descriptor reopened through /proc/self/fd), is marked: an open for writing through it
 * fails with ESTALE (the kernel looks the name up again and finds what is there now), and
 * no change made through it otherwise (attributes, xattrs) is journaled on the record of
 * its old name, which a conflict loser shares with the winner installed there
 * (docs/conflicts.md §9). Replication calls this with the journal's mutex held, in the
 * decision that moved the file (which asked fs_busy() first, for a delete or a conflict);
 * an open for writing counts itself busy before it checks the mark (and the journal, which
 * waits for that mutex), so one of the two always sees the other.
 * Thread: any (takes only the inode table's leaf lock).
 */
void fs_preserved(struct fs *fs, const struct stat *st);

/**
 * fs_adopted() - The backing object @st, which was the record @old, is now the record @uid:
 * replication gave it another record's identity (§10 initial sync adopting a preseeded
 * file or directory, §4 a losing directory that stays on disk as the winner, §7.2 a live
 * directory that becomes a resurrected one; docs/conflicts.md §9).
 * @st: stat of the object (only st_dev and st_ino are used)
 *
 * Its node, if the kernel still holds one, takes @uid: changes made through it are
 * journaled on the record that names the object now, and names made in a directory are
 * journaled under it (with @old, a record dropped or buried, they would never replicate).
 * Replication calls this with the journal's mutex held, in the decision that adopted the
 * object.
 * Thread: any (takes only the inode table's leaf lock).
 */
void fs_adopted(struct fs *fs, const struct stat *st, const struct dfsr_uid *old,
		const struct dfsr_uid *uid);

/**
 * fs_unsaved() - Whether files written through the mount are not journaled yet: still open
 * for writing with changed data, being journaled by their last close right now, or made by
 * CREATE and waiting for their creating handle's release (the kernel sends RELEASE after
 * close(2) has returned, so a change can be on disk a moment before dfsr has seen it
 * closed). `dfsr wait` counts them as pending.
 * Thread: any. Return: 0 when there are none; else a snapshot count of changed nodes plus
 * pending creates (a new file that was written counts twice).
 */
unsigned fs_unsaved(struct fs *fs);

/* Unmount if still mounted, destroy the session, free. NULL-safe. Thread: init. */
void fs_free(struct fs *fs);

#endif
