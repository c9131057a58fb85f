/*
 * ops.c - the FUSE low-level operations: a passthrough over the local path that reports
 * every change to the folder's journal.
 *
 * Every op follows one shape (STYLE rule 13): a do_<op>() that does the work and returns
 * 0 or -errno, and a thin fs_op_<op>() that sends exactly one reply. The backing store is
 * reached only through descriptors: each node's O_PATH descriptor for *at() calls, and
 * /proc/self/fd/N for the few calls that have no *at() form on an O_PATH descriptor (open,
 * chmod, truncate, utimens, xattrs). A node's descriptor is got with fs__inode_fd() and
 * given back with fs__inode_fd_put(), never read from the node: most files keep a kernel
 * file handle rather than a descriptor and are reopened per call (fs/inode.c). Nothing
 * ever goes through the mount point path, which may be the local path itself.
 *
 * Permissions: the daemon runs as root with default_permissions, so the kernel checks
 * access (and POSIX ACLs, FUSE_CAP_POSIX_ACL) before a request reaches us. New objects are
 * created as root and then given to the caller (fchownat); the caller's umask comes in the
 * request (FUSE_CAP_DONT_MASK) and is applied by the backing filesystem, which also applies
 * default ACLs, because each worker thread has its own fs_struct (unshare(CLONE_FS)) and
 * sets umask() for the duration of each create.
 *
 * Change capture (DESIGN.md "Change capture"): data writes only set the node's dirty flag;
 * when the last writable handle of a node is released, a dirty node is reported with
 * JOURNAL_DATA (like DFSR, a file replicates after it is closed). A file made by CREATE is
 * journaled when its creating handle is released, together with its data ("Deferred
 * creates" below). Metadata changes, other creates (mkdir, mknod, symlink, link), removes
 * and renames are reported at once, after the backing call succeeded.
 * A journal error never fails the user's operation: the change is on disk, the journal has
 * logged the failure, and the consistency scan at the next start catches it up. No fs lock
 * is held across a journal call.
 *
 * DfsrPrivate: hidden from readdir of the root, reachable by name, read-only (EROFS for any
 * change inside it), and neither removable nor renamable nor creatable at the root (EPERM).
 * Nodes remember whether they are DfsrPrivate or below it (fs_inode.private_), set at lookup.
 *
 * Performance: reads are spliced from the backing file to the FUSE device
 * (fuse_reply_data with an fd buffer), writes are spliced in (write_buf), the kernel runs a
 * writeback cache, and entries and attributes are cached for fs->timeout seconds because
 * every change to the view passes through here (absent names too: negative entries).
 * There is no flush operation: the kernel writes the cached pages back at close() by
 * itself, and after one ENOSYS it stops sending FLUSH, a round trip per close(2) saved.
 * docs/performance.md counts the round trips that remain per operation.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/event.h"
#include "core/layout.h"
#include "core/outbound.h"
#include "core/space.h"
#include "fs/internal.h"

#define FS_PROC_PATH_LEN 32
#define FS_FILE_MAGIC    0x66696c65u /* "file" */
#define FS_DIR_MAGIC     0x64697230u /* "dir0" */
#define FS_MAX_RW        (1u << 20)  /* max_write: 1 MiB requests */

/* Where a pending create is (see "Deferred creates" below). */
enum pending_state {
	PENDING_WAITING,  /* in fs->pending; nobody is journaling it */
	PENDING_FLUSHING, /* in fs->pending; one thread is journaling or dropping it */
	PENDING_DONE,     /* out of the list; only its handle still points to it */
};

/* A file made by CREATE and not journaled yet; owned by its creating handle. */
struct fs_pending {
	struct fs_handle_link link; /* first: in fs->pending until PENDING_DONE */
	enum pending_state state;   /* protected by fs->pending_lock */
	struct fs_inode *parent;    /* one lookup reference, held until PENDING_DONE */
	struct fs_inode *node;      /* kept alive by the creating handle's open reference */
	struct dfsr_uid uid;        /* the record made when it was journaled, else zero */
	struct stat st;             /* when journaled: the object's stat then (st_nlink 0: none) */
	char name[];                /* its name in @parent, as created */
};

/* An open regular file (fi->fh). */
struct fs_file {
	struct fs_handle_link link; /* first: fs__handles_release() walks the links */
	unsigned magic;
	int fd;                     /* owned; O_RDWR when the kernel runs a writeback cache */
	int fl;                     /* @fd's status flags (backing_flags(); data_fd() adds one) */
	bool writable;              /* counted in node->nwriters */
	struct fs_inode *node;      /* kept alive by node->nopen */
	struct fs_pending *pending; /* the creating handle of a create not journaled yet; owned */
};

/* An open directory (fi->fh). The kernel serialises readdir on one open directory. */
struct fs_dir {
	struct fs_handle_link link; /* first: fs__handles_release() walks the links */
	unsigned magic;
	DIR *dp;
	off_t offset;         /* position the next entry would be read from */
	struct dirent *entry; /* read but not yet returned (did not fit), or NULL */
};

/* Per worker thread: has this thread its own fs_struct (umask) yet, and its umask then. */
static _Thread_local bool thread_fs_unshared;
static _Thread_local mode_t thread_umask;

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fs_file *file_of(const struct fuse_file_info *fi)
{
	struct fs_file *f;

	if (!fi)
		return NULL;
	f = (struct fs_file *)(uintptr_t)fi->fh;
	return f && f->magic == FS_FILE_MAGIC ? f : NULL;
}

static struct fs_dir *dir_of(const struct fuse_file_info *fi)
{
	return (struct fs_dir *)(uintptr_t)fi->fh;
}

static void proc_path(int fd, char buf[static FS_PROC_PATH_LEN])
{
	snprintf(buf, FS_PROC_PATH_LEN, "/proc/self/fd/%d", fd);
}

static bool is_private_name(const struct fs *fs, const struct fs_inode *parent, const char *name)
{
	return parent == &fs->root && strcmp(name, LAYOUT_PRIVATE) == 0;
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static int refuse_private(const char *op)
{
	event_log(EV_PRIVATE_WRITE_DENIED, "op=%s", op);
	return -EROFS;
}

/* May a new name appear (or an old one vanish) at (@parent, @name)? */
static int check_name_change(struct fs *fs, const struct fs_inode *parent, const char *name,
			     const char *op)
{
	if (parent->private_)
		return refuse_private(op);
	if (is_private_name(fs, parent, name))
		return -EPERM;
	return 0;
}

static void handle_add(struct fs *fs, struct fs_handle_link *l)
{
	pthread_mutex_lock(&fs->lock);
	l->next = fs->handles.next;
	l->prev = &fs->handles;
	l->next->prev = l;
	fs->handles.next = l;
	pthread_mutex_unlock(&fs->lock);
}

static void handle_del(struct fs *fs, struct fs_handle_link *l)
{
	pthread_mutex_lock(&fs->lock);
	l->prev->next = l->next;
	l->next->prev = l->prev;
	pthread_mutex_unlock(&fs->lock);
}

static void mark_dirty(struct fs *fs, struct fs_inode *n)
{
	if (!atomic_load_explicit(&n->dirty, memory_order_relaxed) &&
	    !atomic_exchange(&n->dirty, true))
		atomic_fetch_add(&fs->unsaved, 1);
}

/*
 * Drop set-user-id (and set-group-id with group execute) after an unprivileged write or
 * truncate, as the kernel would. Needed because we write as root, for whom the backing
 * filesystem keeps the bits, and because with FUSE_HANDLE_KILLPRIV_V2 (fs.c) the kernel
 * leaves this to us.
 */
static bool kill_suid(const struct fs *fs, fuse_req_t req, int fd, const char *path)
{
	struct stat st;
	mode_t m;

	if (!fs->killpriv || fuse_req_ctx(req)->uid == 0 || fstat(fd, &st) < 0 ||
	    !S_ISREG(st.st_mode))
		return false;
	m = st.st_mode & ~(mode_t)S_ISUID;
	if ((m & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		m &= ~(mode_t)S_ISGID;
	if (m == st.st_mode)
		return false;
	/* On failure the write itself still succeeded; the bits stay, as for root. */
	return (path ? chmod(path, m & 07777) : fchmod(fd, m & 07777)) == 0;
}

/*
 * The kernel cached the mode before we changed it behind its back: drop its cached
 * attributes (a negative offset leaves the page cache alone, so this is safe from inside
 * a write, which holds page and inode locks).
 */
static void inval_attr(const struct fs *fs, const struct fs_inode *n)
{
	(void)fuse_lowlevel_notify_inval_inode(fs->se, n->id, -1, 0);
}

/* ---- journal glue: errors are logged by the journal and never fail the operation ------- */

static void journal_uid_of(struct fs *fs, struct fs_inode *parent, const char *name,
			   struct dfsr_uid *out)
{
	struct dfsr_uid puid;

	memset(out, 0, sizeof(*out));
	fs__inode_uid(fs, parent, &puid);
	if (dfsr_uid_is_zero(&puid))
		return;
	if (journal_lookup(fs->journal, &puid, name, out) < 0)
		memset(out, 0, sizeof(*out)); /* -ENOENT: no record yet; the scan adds it */
}

/*
 * Hard links. Each name of a hard-linked file is a record, and the node of the file keeps
 * the UIDs of the names it has seen: looked up (fs_op_lookup), linked (fs_op_link), or given
 * by the journal. A node made after the kernel forgot the inode (memory pressure), or after
 * a restart, has seen only the names looked up since; so when a changed object has more
 * links (st_nlink) than UIDs its node knows, the journal's map of hard links
 * (journal_link_others(), filled by the scan at start and by every change) gives the other
 * names, verified against the local path, and the node remembers them: the journal is asked
 * once per link count (fs__inode_ask_links()). A name a node knows may since have been
 * given to another object; the journal skips such a record (journal_note_change() checks
 * the path of each name of a hard-linked object). Names past FS_LINK_UIDS, and names made
 * behind the mount, are left to the consistency scan. Lock order: fs->lock is never held
 * across these journal calls (the journal's own mutexes are taken alone).
 */

/* Register the names @n knows as names of the object @st (a link through the mount gave it
 * one more: the journal's map then holds every name the mount has seen). */
static void note_links(struct fs *fs, struct fs_inode *n, const struct stat *st)
{
	struct dfsr_uid uids[1 + FS_LINK_UIDS];
	size_t k;

	if (n->private_ || S_ISDIR(st->st_mode) || !fs__inode_linked(fs, n, st->st_nlink) ||
	    st->st_nlink < 2)
		return;
	k = fs__inode_uids(fs, n, uids);
	for (size_t i = 0; i < k; i++)
		journal_link_note(fs->journal, st, &uids[i]);
}

/* A lookup of (@parent, @name) found the node @n of another name of a hard-linked object
 * (@st; or of one that was: its other names may have left it, fs__inode_linked()):
 * remember this name's record too. */
static void learn_link(struct fs *fs, struct fs_inode *parent, const char *name, struct fs_inode *n,
		       const struct stat *st)
{
	struct dfsr_uid uid;

	if (n->private_ || S_ISDIR(st->st_mode) || !fs__inode_linked(fs, n, st->st_nlink))
		return;
	journal_uid_of(fs, parent, name, &uid);
	fs__inode_add_uid(fs, n, &uid);
	journal_link_note(fs->journal, st, &uid);
}

/* A lookup of (@parent, @name) found @n, which knows no UID (made before the name had a
 * record, or by an untracked name): take the record's if it has one now, or nothing made
 * through the node would be journaled (docs/conflicts.md §9). */
static void learn_uid(struct fs *fs, struct fs_inode *parent, const char *name, struct fs_inode *n)
{
	struct dfsr_uid uid;

	fs__inode_uid(fs, n, &uid);
	if (n->private_ || !dfsr_uid_is_zero(&uid))
		return;
	journal_uid_of(fs, parent, name, &uid);
	if (!dfsr_uid_is_zero(&uid))
		fs__inode_add_uid(fs, n, &uid);
}

/* Complete @uids (@k of the node's UIDs) with the names of @n's object (@fd; @st its
 * attributes now, or NULL to read them) the node does not know, from the journal, and
 * remember them. Return: the new count. */
static size_t more_links(struct fs *fs, struct fs_inode *n, int fd, const struct stat *st,
			 struct dfsr_uid *uids, size_t k)
{
	struct stat own;
	int got;

	if (S_ISDIR(n->type))
		return k; /* directories have no hard links: no stat on their changes */
	if (!st) {
		if (fstatat(fd, "", &own, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return k;
		st = &own;
	}
	if (!fs__inode_ask_links(fs, n, st->st_nlink, k))
		return k;
	got = journal_link_others(fs->journal, st, uids, k, uids + k, 1 + FS_LINK_UIDS - k);
	for (int i = 0; i < got; i++)
		fs__inode_add_uid(fs, n, &uids[k + (size_t)i]);
	return got > 0 ? k + (size_t)got : k;
}

/*
 * Journal a change of @n on every record naming it: hard links are one object with several
 * names, and each name is a record (its other names found as "Hard links" above says). An
 * object with no name left (deleted, or replaced by a save-by-rename) is skipped by the
 * journal. @skip: a UID not to journal (a create journaled with its data just now), or
 * NULL. @data_fd: an open descriptor of @n to hash through (see data_fd()), or -1 to use
 * the node's own. @st: @n's attributes after the change if the caller has them (saves a
 * stat on the setattr path), else NULL.
 */
static void note_change_but(struct fs *fs, struct fs_inode *n, unsigned flags,
			    const struct dfsr_uid *skip, int data_fd, const struct stat *st)
{
	struct dfsr_uid uids[1 + FS_LINK_UIDS];
	size_t i, k;
	int fd, tmp = -1;

	if (n->private_ || fs__inode_preserved(fs, n))
		return; /* a preserved object's old record may be the winner's (fs_preserved()) */
	k = fs__inode_uids(fs, n, uids);
	if (k == 0)
		return; /* untracked */
	fd = data_fd >= 0 ? data_fd : fs__inode_fd(fs, n, &tmp);
	if (fd < 0)
		return; /* gone meanwhile; the scan catches up */
	k = more_links(fs, n, fd, st, uids, k);
	for (i = 0; skip && i < k; i++) {
		if (dfsr_uid_equal(&uids[i], skip))
			uids[i--] = uids[--k];
	}
	if (k > 1)
		flags |= JOURNAL_NAMES; /* a name may have left the object since (journal checks) */
	for (i = 0; i < k; i++)
		(void)journal_note_change(fs->journal, &uids[i], fd, flags);
	if (data_fd < 0)
		fs__inode_fd_put(fs, n, tmp);
}

static void note_change(struct fs *fs, struct fs_inode *n, unsigned flags)
{
	note_change_but(fs, n, flags, NULL, -1, NULL);
}

/*
 * The descriptor of a handle being released, made fit for hashing: the journal reads the
 * data and the xattrs through it instead of reopening the node's O_PATH descriptor through
 * /proc (an open, a close and a path walk per xattr call saved on every release that
 * journals). O_NOATIME, as the journal's own reopen: hashing must not move the atime.
 * Return: @f->fd, or -1 if it cannot be used (not readable, or its flags cannot be set;
 * the journal then reopens the node as before).
 */
static int data_fd(struct fs_file *f)
{
	if ((f->fl & O_ACCMODE) == O_WRONLY)
		return -1; /* write-only (no writeback cache): the journal reopens to read */
	if (!(f->fl & O_NOATIME)) {
		if (fcntl(f->fd, F_SETFL, f->fl | O_NOATIME) < 0)
			return -1;
		f->fl |= O_NOATIME;
	}
	return f->fd;
}

/*
 * Deferred creates. The kernel's CREATE is followed, for nearly every new file, by writes
 * and the release of the same handle, which journals the data anyway. So a file made by
 * CREATE is journaled once, when its creating handle is released (journal_note_new_stat() with
 * the data as it is then: one record, one version, one RocksDB batch and one hash instead
 * of a create and a modify), and not at CREATE. An empty file that is never written is
 * journaled the same way at its release. Until then the create is an entry in fs->pending
 * (its parent node and name), settled earlier by whatever must see the record first:
 *   - a rename from or onto the name journals it first, so the rename moves (or replaces)
 *     a record exactly as when the create had been journaled at once;
 *   - an unlink of the name drops it: a file removed before its creating handle was
 *     closed leaves no record behind (there is nothing to replicate, as in DFSR, which
 *     replicates a file once it is closed);
 *   - a link of the file needs nothing: the new name is journaled as a new record.
 * Other changes of a pending file (chmod, xattrs, truncate) are journaled with it at its
 * release. When the release journals it, the name is checked to still be that file (a
 * change behind the mount is left to the consistency scan, as any such change). If the
 * daemon dies first, the file is on disk without a record and the scan at the next start
 * records it, as for every journal error. Settling waits for an entry another thread is
 * journaling (PENDING_FLUSHING), so that the journal sees the create before the rename.
 */

/* Journal the new file (@parent, @name) if that name still is @node; hashed through
 * @dfd (an open descriptor of @node, see data_fd()) unless it is -1. *@st_out (if not
 * NULL) receives the stat the journal was given, or st_nlink 0 if none. */
static void pending_journal(struct fs *fs, struct fs_inode *parent, const char *name,
			    struct fs_inode *node, int dfd, struct dfsr_uid *out,
			    struct stat *st_out)
{
	struct dfsr_uid puid, uid;
	struct stat st;
	int pfd, ptmp, fd = -1;
	bool same;

	memset(out, 0, sizeof(*out));
	if (st_out)
		st_out->st_nlink = 0;
	fs__inode_uid(fs, parent, &puid);
	if (dfsr_uid_is_zero(&puid))
		return;
	pfd = fs__inode_fd(fs, parent, &ptmp);
	if (pfd < 0)
		return;
	/* With the handle's descriptor to hash through, the name only has to be checked (a
	 * stat by name: no open and close of an O_PATH descriptor per new file). */
	if (dfd < 0) {
		fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		same = fd >= 0 && fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0;
	} else {
		same = fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	}
	fs__inode_fd_put(fs, parent, ptmp);
	if (same && st.st_dev == node->dev && st.st_ino == node->ino &&
	    journal_note_new_stat(fs->journal, &puid, name, dfd >= 0 ? dfd : fd, &st, &uid) == 0) {
		fs__inode_add_uid(fs, node, &uid);
		*out = uid;
		if (st_out)
			*st_out = st;
	}
	if (fd >= 0)
		close(fd);
}

/* Journal (or drop) a pending create this thread set PENDING_FLUSHING, and take it out of
 * the list; @dfd as for pending_journal(). @p may be freed by its handle as soon as this
 * returns. */
static void pending_finish(struct fs *fs, struct fs_pending *p, bool journal, int dfd)
{
	struct fs_inode *parent = p->parent;

	if (journal)
		pending_journal(fs, parent, p->name, p->node, dfd, &p->uid, &p->st);
	pthread_mutex_lock(&fs->pending_lock);
	p->link.prev->next = p->link.next;
	p->link.next->prev = p->link.prev;
	p->state = PENDING_DONE;
	atomic_fetch_sub(&fs->npending, 1);
	pthread_cond_broadcast(&fs->pending_done);
	pthread_mutex_unlock(&fs->pending_lock);
	fs__inode_unref(fs, parent, 1, 0);
}

/* Make @f the creating handle of (@parent, @name): its create is journaled at release. */
static void pending_add(struct fs *fs, struct fs_file *f, struct fs_inode *parent, const char *name)
{
	size_t len = strlen(name) + 1;
	struct fs_pending *p = calloc(1, sizeof(*p) + len);
	struct dfsr_uid uid;

	if (!p) {
		/* journal it now instead */
		pending_journal(fs, parent, name, f->node, -1, &uid, NULL);
		return;
	}
	memcpy(p->name, name, len);
	p->state = PENDING_WAITING;
	p->parent = parent;
	p->node = f->node;
	fs__inode_hold(fs, parent);
	pthread_mutex_lock(&fs->pending_lock);
	p->link.next = fs->pending.next;
	p->link.prev = &fs->pending;
	p->link.next->prev = &p->link;
	fs->pending.next = &p->link;
	atomic_fetch_add(&fs->npending, 1);
	pthread_mutex_unlock(&fs->pending_lock);
	f->pending = p;
}

/*
 * The creating handle is being released: journal its create unless another thread did (or
 * dropped it), waiting for one that is at it; hashed through @dfd unless it is -1 (see
 * data_fd()). Frees the entry.
 * Return: true if it was journaled here, with *@uid the record made (zero if untracked) and
 * *@st the stat the journal was given (st_nlink 0 if none).
 */
static bool pending_release(struct fs *fs, struct fs_file *f, int dfd, struct dfsr_uid *uid,
			    struct stat *st)
{
	struct fs_pending *p = f->pending;
	bool mine = false;

	memset(uid, 0, sizeof(*uid));
	st->st_nlink = 0;
	if (!p)
		return false;
	pthread_mutex_lock(&fs->pending_lock);
	while (p->state == PENDING_FLUSHING)
		pthread_cond_wait(&fs->pending_done, &fs->pending_lock);
	if (p->state == PENDING_WAITING) {
		p->state = PENDING_FLUSHING;
		mine = true;
	}
	pthread_mutex_unlock(&fs->pending_lock);
	if (mine) {
		pending_finish(fs, p, true, dfd);
		*uid = p->uid;
		*st = p->st;
	}
	free(p);
	f->pending = NULL;
	return mine;
}

/* A rename (@journal) or unlink (!@journal) of (@parent, @name) is about to be journaled:
 * journal or drop a pending create of that name first. */
static void pending_settle(struct fs *fs, const struct fs_inode *parent, const char *name,
			   bool journal)
{
	struct fs_handle_link *l;

	if (atomic_load(&fs->npending) == 0)
		return;
	pthread_mutex_lock(&fs->pending_lock);
again:
	for (l = fs->pending.next; l != &fs->pending; l = l->next) {
		struct fs_pending *p = (struct fs_pending *)(void *)l;

		if (p->parent != parent || strcmp(p->name, name) != 0)
			continue;
		if (p->state == PENDING_FLUSHING) {
			pthread_cond_wait(&fs->pending_done, &fs->pending_lock);
			goto again;
		}
		p->state = PENDING_FLUSHING;
		pthread_mutex_unlock(&fs->pending_lock);
		pending_finish(fs, p, journal, -1);
		pthread_mutex_lock(&fs->pending_lock);
		goto again;
	}
	pthread_mutex_unlock(&fs->pending_lock);
}

static void file_close(struct fs *fs, struct fs_file *f);

void fs__handles_release(struct fs *fs)
{
	struct fs_handle_link *l = fs->handles.next;

	while (l && l != &fs->handles) {
		struct fs_handle_link *next = l->next;
		struct fs_file *f = (struct fs_file *)(void *)l;

		if (f->magic == FS_FILE_MAGIC) {
			/* As the kernel's release would: the last writer of a dirty file journals
			 * its data (`dfsr umount` with files open), a pending create is journaled
			 * (no worker is left to race). Frees @f. */
			file_close(fs, f);
		} else {
			struct fs_dir *d = (struct fs_dir *)(void *)l;

			closedir(d->dp);
			free(l);
		}
		l = next;
	}
	fs->handles.next = fs->handles.prev = &fs->handles;
}

/* ---- credentials of new objects ---------------------------------------------------------- */

/* Give this worker thread its own umask and set the caller's. */
static int creds_begin(fuse_req_t req)
{
	mode_t mask = fuse_req_ctx(req)->umask;

	if (!thread_fs_unshared) {
		if (unshare(CLONE_FS) < 0)
			return -errno;
		thread_fs_unshared = true;
		umask(022);
		thread_umask = 022;
	}
	/* Two system calls per create saved for the usual umask, which creds_end() keeps. */
	if (mask != thread_umask) {
		umask(mask);
		thread_umask = mask;
	}
	return 0;
}

/* Restore a neutral umask so that core's own files (RocksDB) are not shaped by a user's. */
static void creds_end(void)
{
	if (thread_umask != 022) {
		umask(022);
		thread_umask = 022;
	}
}

/*
 * Hand a new object to the caller. Created as root, it must become the caller's, except for
 * the group under a setgid directory, which the backing filesystem already inherited. A
 * chown of a non-directory clears set-id bits, so they are put back if they were asked for.
 */
static int own_new(fuse_req_t req, int parent_fd, int fd, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char path[FS_PROC_PATH_LEN];
	struct stat pst, st;
	gid_t gid = ctx->gid;
	mode_t lost;

	if (ctx->uid == 0 && ctx->gid == 0)
		return 0;
	if (fstatat(parent_fd, "", &pst, AT_EMPTY_PATH) < 0)
		return -errno;
	if (pst.st_mode & S_ISGID)
		gid = (gid_t)-1;
	if (fchownat(fd, "", ctx->uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!(mode & (S_ISUID | S_ISGID)))
		return 0;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	lost = mode & (S_ISUID | S_ISGID) & ~st.st_mode;
	if (!lost || S_ISLNK(st.st_mode))
		return 0;
	proc_path(fd, path);
	if (chmod(path, (st.st_mode | lost) & 07777) < 0)
		return -errno;
	return 0;
}

/* ---- lookup -------------------------------------------------------------------------------- */

static void fill_entry(const struct fs *fs, const struct fs_inode *n, const struct stat *st,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = n->id;
	e->generation = 0;
	e->attr = *st;
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
}

/*
 * Resolve (@parent, @name) to a node with one more lookup reference. @with_uid asks for the
 * journal's UID of the name when a node has to be made (skipped by creating ops, which get
 * the UID from journal_note_new_stat()).
 */
static int lookup_node(struct fs *fs, struct fs_inode *parent, const char *name, bool with_uid,
		       struct fs_inode **out, struct fuse_entry_param *e)
{
	struct dfsr_uid uid = { 0 };
	struct fs_inode *n = NULL;
	struct stat st;
	bool priv;
	int pfd, ptmp, fd, rc;

	pfd = fs__inode_fd(fs, parent, &ptmp);
	if (pfd < 0)
		return pfd;
	fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	rc = -errno;
	fs__inode_fd_put(fs, parent, ptmp);
	if (fd < 0)
		return rc;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	n = fs__inode_ref_existing(fs, fd, &st);
	if (n) {
		close(fd);
		if (with_uid) {
			learn_link(fs, parent, name, n, &st);
			learn_uid(fs, parent, name, n);
		}
		goto out_found;
	}
	priv = parent->private_ || is_private_name(fs, parent, name);
	if (with_uid && !priv)
		journal_uid_of(fs, parent, name, &uid);
	rc = fs__inode_insert_take(fs, fd, &st, priv, &uid, &n);
	if (rc < 0)
		return rc;
	if (!priv && !S_ISDIR(st.st_mode)) {
		journal_link_note(fs->journal, &st, &uid); /* a no-op unless hard-linked */
		(void)fs__inode_linked(fs, n, st.st_nlink);
	}
out_found:
	fill_entry(fs, n, &st, e);
	if (out)
		*out = n;
	return 0;
}

/* Reply with an entry; if the kernel never gets it, give the lookup reference back. */
static void reply_entry(fuse_req_t req, struct fs_inode *n, const struct fuse_entry_param *e)
{
	if (fuse_reply_entry(req, e) != 0 && n)
		fs__inode_unref(fs_of(req), n, 1, 0);
}

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *p = fs__inode_get(fs, parent);
	struct fuse_entry_param e;
	struct fs_inode *n = NULL;
	int rc;

	if (!p) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	rc = lookup_node(fs, p, name, true, &n, &e);
	if (rc == -ENOENT) {
		/* A negative entry: the kernel may cache the absence too. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, n, &e);
}

static void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *n = fs__inode_get(fs, ino);

	if (n)
		fs__inode_unref(fs, n, nlookup, 0);
	fuse_reply_none(req);
}

static void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	for (size_t i = 0; i < count; i++) {
		struct fs_inode *n = fs__inode_get(fs, forgets[i].ino);

		if (n)
			fs__inode_unref(fs, n, forgets[i].nlookup, 0);
	}
	fuse_reply_none(req);
}

/* ---- attributes ------------------------------------------------------------------------ */

static int stat_node(struct fs *fs, struct fs_inode *n, const struct fs_file *f, struct stat *st)
{
	int fd, tmp, rc;

	if (f)
		return fstat(f->fd, st) < 0 ? -errno : 0;
	fd = fs__inode_fd(fs, n, &tmp);
	if (fd < 0)
		return fd;
	rc = fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	fs__inode_fd_put(fs, n, tmp);
	return rc;
}

static void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *n = fs__inode_get(fs, ino);
	struct stat st;
	int rc;

	if (!n) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	rc = stat_node(fs, n, file_of(fi), &st);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

static int set_times(const struct fs_inode *n, int nfd, const struct fs_file *f,
		     const struct stat *attr, int valid)
{
	struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
	char path[FS_PROC_PATH_LEN];

	if (valid & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (valid & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (valid & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (valid & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
	if (f)
		return futimens(f->fd, tv) < 0 ? -errno : 0;
	/* On the O_PATH descriptor itself: no walk through /proc (a SETATTR of the times
	 * follows every unlink with the writeback cache, to flush the cached ctime). */
	if (utimensat(nfd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if (errno != EINVAL || n->type == S_IFLNK)
		return -errno;
	proc_path(nfd, path); /* a kernel without AT_EMPTY_PATH for utimensat() */
	return utimensat(AT_FDCWD, path, tv, 0) < 0 ? -errno : 0;
}

/* Apply the backing changes of a setattr, in the order chmod, chown, truncate, times. */
static int apply_setattr(const struct fs_inode *n, int nfd, const struct fs_file *f,
			 const struct stat *attr, int valid)
{
	char path[FS_PROC_PATH_LEN];
	int rc;

	proc_path(nfd, path);
	if (valid & FUSE_SET_ATTR_MODE) {
		rc = f ? fchmod(f->fd, attr->st_mode & 07777) : chmod(path, attr->st_mode & 07777);
		if (rc < 0)
			return -errno;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(nfd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		rc = f ? ftruncate(f->fd, attr->st_size) : truncate(path, attr->st_size);
		if (rc < 0)
			return -errno;
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))
		return set_times(n, nfd, f, attr, valid);
	return 0;
}

/*
 * Journal a setattr. A truncate is new data: journaled at once when nobody has the file
 * open for writing, else left to the last writer's release. Mode and owner changes are
 * journaled at once; times alone too (the journal makes no version for a bare touch),
 * except while writers are open, whose release journals the file anyway. An object with
 * no name left (@st: its attributes after the change) has no record to journal on: the
 * kernel flushes the cached times of every file it unlinks with such a SETATTR.
 */
static void note_setattr(struct fs *fs, struct fs_inode *n, int valid, const struct stat *st)
{
	bool writers = fs__inode_writers(fs, n) > 0;
	bool meta = valid & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID);
	bool times = valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME);

	if ((valid & FUSE_SET_ATTR_SIZE) && writers)
		mark_dirty(fs, n);
	if (!S_ISDIR(st->st_mode) && st->st_nlink == 0)
		return;
	if ((valid & FUSE_SET_ATTR_SIZE) && !writers)
		note_change_but(fs, n, JOURNAL_DATA, NULL, -1, st);
	else if (meta || (times && !writers))
		note_change_but(fs, n, 0, NULL, -1, st);
}

static int do_setattr(fuse_req_t req, fuse_ino_t ino, const struct stat *attr, int valid,
		      struct fuse_file_info *fi, struct stat *out)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *n = fs__inode_get(fs, ino);
	char path[FS_PROC_PATH_LEN];
	struct fs_file *f = file_of(fi);
	int nfd, tmp, rc;

	if (!n)
		return -ESTALE;
	if (n->private_)
		return refuse_private("setattr");
	if ((valid & FUSE_SET_ATTR_SIZE) && !f && fs__inode_preserved(fs, n))
		return -ESTALE; /* a truncate by name would change what was preserved (§9) */
	nfd = fs__inode_fd(fs, n, &tmp);
	if (nfd < 0)
		return nfd;
	rc = apply_setattr(n, nfd, f, attr, valid);
	if (rc == 0 && (valid & FUSE_SET_ATTR_SIZE) && !(valid & FUSE_SET_ATTR_MODE)) {
		proc_path(nfd, path);
		kill_suid(fs, req, f ? f->fd : nfd, f ? NULL : path);
	}
	fs__inode_fd_put(fs, n, tmp);
	if (rc < 0)
		return rc;
	rc = stat_node(fs, n, f, out);
	if (rc == 0)
		note_setattr(fs, n, valid, out);
	return rc;
}

static void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
			  struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	int rc = do_setattr(req, ino, attr, valid, fi, &st);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

/* Read the link target of node @ino into @buf (NUL-terminated). Return: 0 or -errno. */
static int do_readlink(struct fs *fs, fuse_ino_t ino, char *buf, size_t size)
{
	struct fs_inode *n = fs__inode_get(fs, ino);
	ssize_t len;
	int fd, tmp, rc = 0;

	if (!n)
		return -ESTALE;
	fd = fs__inode_fd(fs, n, &tmp);
	if (fd < 0)
		return fd;
	len = readlinkat(fd, "", buf, size);
	if (len < 0)
		rc = -errno;
	else if ((size_t)len == size)
		rc = -ENAMETOOLONG;
	else
		buf[len] = '\0';
	fs__inode_fd_put(fs, n, tmp);
	return rc;
}

static void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	int rc = do_readlink(fs_of(req), ino, buf, sizeof(buf));

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, buf);
}

/* ---- creating objects -------------------------------------------------------------------- */

/*
 * A new object exists at (@parent, @name) as @fd (O_PATH, taken): make its node, journal it
 * (unless !@journal: a create, journaled at release) and fill the entry.
 */
static int publish_new(struct fs *fs, struct fs_inode *parent, const char *name, int fd,
		       bool journal, struct fs_inode **out, struct fuse_entry_param *e)
{
	struct dfsr_uid zero = { 0 }, puid, uid;
	struct fs_inode *n = NULL;
	struct stat st;
	bool noted;
	int rc;

	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	/* Journaled while @fd is at hand (the node may keep only a handle). */
	fs__inode_uid(fs, parent, &puid);
	noted = journal && !dfsr_uid_is_zero(&puid) &&
		journal_note_new_stat(fs->journal, &puid, name, fd, &st, &uid) == 0;
	rc = fs__inode_insert_take(fs, fd, &st, false, &zero, &n);
	if (rc < 0)
		return rc;
	if (noted)
		fs__inode_add_uid(fs, n, &uid); /* a hard link: one more name of the node */
	note_links(fs, n, &st);
	fill_entry(fs, n, &st, e);
	*out = n;
	return 0;
}

enum make_kind {
	MAKE_DIR,
	MAKE_NOD,
	MAKE_SYMLINK,
};

struct make_args {
	enum make_kind kind;
	mode_t mode;
	dev_t rdev;
	const char *target; /* MAKE_SYMLINK */
};

static int make_backing(fuse_req_t req, int pfd, const char *name, const struct make_args *m)
{
	int rc = creds_begin(req);

	if (rc < 0)
		return rc;
	if (m->kind == MAKE_DIR)
		rc = mkdirat(pfd, name, m->mode);
	else if (m->kind == MAKE_NOD)
		rc = mknodat(pfd, name, m->mode, m->rdev);
	else
		rc = symlinkat(m->target, pfd, name);
	if (rc < 0)
		rc = -errno;
	creds_end();
	return rc;
}

static int do_make(fuse_req_t req, fuse_ino_t parent, const char *name, const struct make_args *m,
		   struct fs_inode **out, struct fuse_entry_param *e)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *p = fs__inode_get(fs, parent);
	int pfd, ptmp, fd, rc;

	if (!p)
		return -ESTALE;
	rc = check_name_change(fs, p, name, "create");
	if (rc < 0)
		return rc;
	pfd = fs__inode_fd(fs, p, &ptmp);
	if (pfd < 0)
		return pfd;
	rc = make_backing(req, pfd, name, m);
	if (rc < 0)
		goto out_put;
	fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out_put;
	}
	rc = own_new(req, pfd, fd, m->mode);
	if (rc < 0)
		goto out_remove;
	rc = publish_new(fs, p, name, fd, true, out, e);
	goto out_put;
out_remove:
	close(fd);
	unlinkat(pfd, name, m->kind == MAKE_DIR ? AT_REMOVEDIR : 0);
out_put:
	fs__inode_fd_put(fs, p, ptmp);
	return rc;
}

static void reply_make(fuse_req_t req, fuse_ino_t parent, const char *name,
		       const struct make_args *m)
{
	struct fuse_entry_param e;
	struct fs_inode *n = NULL;
	int rc = do_make(req, parent, name, m, &n, &e);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, n, &e);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	reply_make(req, parent, name, &(struct make_args){ .kind = MAKE_DIR, .mode = mode });
}

static void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			dev_t rdev)
{
	reply_make(req, parent, name,
		   &(struct make_args){ .kind = MAKE_NOD, .mode = mode, .rdev = rdev });
}

static void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	reply_make(req, parent, name,
		   &(struct make_args){
			   .kind = MAKE_SYMLINK, .mode = S_IFLNK | 0777, .target = link });
}

static int do_link(struct fs *fs, fuse_ino_t ino, fuse_ino_t newparent, const char *newname,
		   struct fs_inode **out, struct fuse_entry_param *e)
{
	struct fs_inode *n = fs__inode_get(fs, ino);
	struct fs_inode *np = fs__inode_get(fs, newparent);
	char path[FS_PROC_PATH_LEN];
	int nfd, ntmp, pfd, ptmp, fd, rc;

	if (!n || !np)
		return -ESTALE;
	if (n->private_)
		return refuse_private("link");
	rc = check_name_change(fs, np, newname, "link");
	if (rc < 0)
		return rc;
	nfd = fs__inode_fd(fs, n, &ntmp);
	if (nfd < 0)
		return nfd;
	pfd = fs__inode_fd(fs, np, &ptmp);
	if (pfd < 0) {
		rc = pfd;
		goto out_put_n;
	}
	if (linkat(nfd, "", pfd, newname, AT_EMPTY_PATH) < 0) {
		rc = -errno;
		if (rc != -ENOENT && rc != -EPERM)
			goto out_put;
		proc_path(nfd, path);
		if (linkat(AT_FDCWD, path, pfd, newname, AT_SYMLINK_FOLLOW) < 0) {
			rc = -errno;
			goto out_put;
		}
	}
	fd = openat(pfd, newname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	rc = fd < 0 ? -errno : publish_new(fs, np, newname, fd, true, out, e);
out_put:
	fs__inode_fd_put(fs, np, ptmp);
out_put_n:
	fs__inode_fd_put(fs, n, ntmp);
	return rc;
}

static void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fuse_entry_param e;
	struct fs_inode *n = NULL;
	int rc = do_link(fs_of(req), ino, newparent, newname, &n, &e);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, n, &e);
}

/* ---- removing and renaming ------------------------------------------------------------- */

static int do_remove(struct fs *fs, fuse_ino_t parent, const char *name, bool dir)
{
	struct fs_inode *p = fs__inode_get(fs, parent);
	struct dfsr_uid puid;
	int pfd, ptmp, rc;

	if (!p)
		return -ESTALE;
	rc = check_name_change(fs, p, name, dir ? "rmdir" : "unlink");
	if (rc < 0)
		return rc;
	pfd = fs__inode_fd(fs, p, &ptmp);
	if (pfd < 0)
		return pfd;
	rc = unlinkat(pfd, name, dir ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
	fs__inode_fd_put(fs, p, ptmp);
	if (rc < 0)
		return rc;
	if (!dir)
		pending_settle(fs, p, name, false); /* removed before its release: no record */
	fs__inode_uid(fs, p, &puid);
	if (!dfsr_uid_is_zero(&puid))
		(void)journal_note_remove(fs->journal, &puid, name);
	return 0;
}

static void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -do_remove(fs_of(req), parent, name, false));
}

static void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -do_remove(fs_of(req), parent, name, true));
}

static int check_rename(struct fs *fs, const struct fs_inode *p, const char *name,
			const struct fs_inode *np, const char *newname, unsigned flags)
{
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if (is_private_name(fs, p, name) || is_private_name(fs, np, newname))
		return -EPERM;
	if (p->private_ || np->private_)
		return refuse_private("rename");
	return 0;
}

/* Tell the journal about a rename that happened, and move the UIDs onto the nodes. */
static void note_rename(struct fs *fs, struct fs_inode *p, int pfd, const char *name,
			struct fs_inode *np, int npfd, const char *newname, bool exchange)
{
	struct dfsr_uid puid, npuid, out = { 0 }, other_out = { 0 };
	struct journal_rename r = {
		.old_parent = &puid,
		.old_name = name,
		.new_parent = &npuid,
		.new_name = newname,
		.exchange = exchange,
		.fd = openat(npfd, newname, O_PATH | O_NOFOLLOW | O_CLOEXEC),
		.other_fd = exchange ? openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1,
	};

	fs__inode_uid(fs, p, &puid);
	fs__inode_uid(fs, np, &npuid);
	if (r.fd < 0 || (exchange && r.other_fd < 0))
		goto out_close; /* renamed away already (behind the mount); the scan sees it */
	if (journal_note_rename(fs->journal, &r, &out, &other_out) == 0) {
		fs__inode_set_uid_by_fd(fs, r.fd, &out);
		if (exchange)
			fs__inode_set_uid_by_fd(fs, r.other_fd, &other_out);
	}
out_close:
	if (r.other_fd >= 0)
		close(r.other_fd);
	if (r.fd >= 0)
		close(r.fd);
}

static int do_rename(struct fs *fs, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		     const char *newname, unsigned flags)
{
	struct fs_inode *p = fs__inode_get(fs, parent);
	struct fs_inode *np = fs__inode_get(fs, newparent);
	int pfd, ptmp, npfd, nptmp, rc;

	if (!p || !np)
		return -ESTALE;
	rc = check_rename(fs, p, name, np, newname, flags);
	if (rc < 0)
		return rc;
	/* A pending create of either name is journaled first, so that the rename moves (or
	 * replaces) its record as if it had been journaled at CREATE. */
	pending_settle(fs, p, name, true);
	pending_settle(fs, np, newname, true);
	pfd = fs__inode_fd(fs, p, &ptmp);
	if (pfd < 0)
		return pfd;
	npfd = fs__inode_fd(fs, np, &nptmp);
	if (npfd < 0) {
		rc = npfd;
		goto out_put_p;
	}
	rc = renameat2(pfd, name, npfd, newname, flags) < 0 ? -errno : 0;
	if (rc == 0)
		note_rename(fs, p, pfd, name, np, npfd, newname, flags & RENAME_EXCHANGE);
	fs__inode_fd_put(fs, np, nptmp);
out_put_p:
	fs__inode_fd_put(fs, p, ptmp);
	return rc;
}

static void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
			 const char *newname, unsigned int flags)
{
	fuse_reply_err(req, -do_rename(fs_of(req), parent, name, newparent, newname, flags));
}

/* ---- open files -------------------------------------------------------------------------- */

/* The flags the backing file is opened with (passthrough_hp's writeback rules). */
static int backing_flags(const struct fs *fs, int flags)
{
	/*
	 * With a writeback cache the kernel reads pages to fill partial writes, so a
	 * write-only file must be readable too, and it tracks the size itself, so O_APPEND
	 * would move writes that the kernel already placed.
	 */
	if (fs->writeback) {
		/* Read then only to fill pages and by the journal's hash at release, neither an
		 * access by the user: O_NOATIME (which spares the hash an F_SETFL, data_fd()). */
		if ((flags & O_ACCMODE) == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR | O_NOATIME;
		flags &= ~O_APPEND;
	}
	/*
	 * O_DIRECT stays between the application and the kernel (the FUSE page cache is
	 * bypassed); the backing file is opened without it, because data spliced from the
	 * FUSE device's pipe is not aligned as O_DIRECT requires (EINVAL).
	 */
	return (flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT)) | O_CLOEXEC;
}

/* openat(2) of a backing file with *@fl (backing_flags()) and without O_CREAT: O_NOATIME is
 * dropped if refused (a member without CAP_FOWNER opening another's file), and *@fl says
 * what was used. Return: the descriptor or -errno. */
static int open_backing(int dirfd, const char *path, int *fl)
{
	int fd = openat(dirfd, path, *fl);

	if (fd < 0 && errno == EPERM && (*fl & O_NOATIME)) {
		*fl &= ~O_NOATIME;
		fd = openat(dirfd, path, *fl);
	}
	return fd < 0 ? -errno : fd;
}

static bool flags_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* Wrap an open descriptor in a handle and count it on the node. Takes @fd, opened with the
 * status flags @fl for the caller's @flags. */
static int attach_file(struct fs *fs, struct fs_inode *n, int fd, int flags, int fl,
		       struct fuse_file_info *fi)
{
	struct fs_file *f = calloc(1, sizeof(*f));
	int rc;

	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	f->magic = FS_FILE_MAGIC;
	f->fd = fd;
	f->fl = fl; /* as the caller opened @fd: no F_GETFL needed */
	f->node = n;
	f->writable = flags_write(flags);
	rc = fs__inode_open(fs, n, f->writable, fd);
	if (rc < 0) {
		close(fd);
		free(f);
		return rc;
	}
	handle_add(fs, &f->link);
	if (flags & O_TRUNC)
		mark_dirty(fs, n);
	fi->fh = (uintptr_t)f;
	fi->keep_cache = 1;
	return 0;
}

/*
 * Before a file is opened for writing by node (@nfd its descriptor): is a record the node
 * knows still live, and does the file still have a name? A partner's delete may have moved
 * the object to ConflictAndDeleted (and buried its record) while the kernel still held a
 * dentry for the old name, or an application reopens it through /proc/self/fd: a write
 * then would change the preserved version (docs/conflicts.md §9) and never replicate. A
 * partner's update installed over the file (renamed over it) leaves the old file with no
 * link at all: a write through such a dentry would go where no name reaches, and be lost,
 * while the name holds the update (§8); refused, the kernel finds that. A file with no
 * link whose records are all tombstones was deleted (by this member: a partner's delete
 * preserves, and that copy is marked, fs_preserved()): as on any file system, a reopen
 * through /proc/self/fd works, and the write goes to the deleted file, which nothing
 * keeps or journals. Only a definite no refuses: an untracked node, a UID the journal does
 * not know, or a journal error lets the open through. (A conflict loser's record stays
 * live, the winner's: its node is marked instead, fs_preserved().)
 */
static bool still_named(struct fs *fs, struct fs_inode *n, int nfd)
{
	struct dfsr_uid uids[1 + FS_LINK_UIDS];
	bool live = false;
	struct stat st;
	size_t k;

	if (S_ISDIR(n->type) || n->private_)
		return true;
	k = fs__inode_uids(fs, n, uids);
	if (k == 0)
		return true; /* untracked */
	for (size_t i = 0; i < k && !live; i++)
		live = journal_live(fs->journal, &uids[i]) != 0;
	/* After the journal's mutex: an install that missed this opener (fs_busy()) is done. */
	if (fstatat(nfd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return live;
	return live ? st.st_nlink > 0 : st.st_nlink == 0;
}

static int do_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *n = fs__inode_get(fs, ino);
	bool write = flags_write(fi->flags);
	char path[FS_PROC_PATH_LEN];
	int nfd, tmp, fd, fl, rc;

	if (!n)
		return -ESTALE;
	if (n->private_ && write)
		return refuse_private("open");
	/* Busy from here (fs_busy()), before the checks: a replica decision that preserves
	 * the file either sees this open, or has ended when journal_live() gets the journal's
	 * mutex, its mark set (fs_preserved()) and its record buried. */
	if (write && !fs__inode_open_begin(fs, n))
		return -ESTALE; /* the kernel looks the path up again (LOOKUP_REVAL) */
	nfd = fs__inode_fd(fs, n, &tmp);
	if (nfd < 0) {
		rc = nfd;
		goto out_end;
	}
	if (write && (!still_named(fs, n, nfd) || fs__inode_preserved(fs, n))) {
		fs__inode_fd_put(fs, n, tmp);
		rc = -ESTALE;
		goto out_end;
	}
	proc_path(nfd, path);
	fl = backing_flags(fs, fi->flags);
	fd = open_backing(AT_FDCWD, path, &fl);
	fs__inode_fd_put(fs, n, tmp);
	if (fd < 0) {
		rc = fd;
		goto out_end;
	}
	if ((fi->flags & O_TRUNC) && kill_suid(fs, req, fd, NULL))
		inval_attr(fs, n);
	rc = attach_file(fs, n, fd, fi->flags, fl, fi); /* counted as a writer now */
out_end:
	if (write)
		fs__inode_open_end(fs, n);
	return rc;
}

/*
 * Close a handle: the last writer of a dirty node journals its data (DESIGN.md: a file
 * replicates after it is closed), then the open reference is dropped.
 */
static void file_close(struct fs *fs, struct fs_file *f)
{
	struct fs_inode *n = f->node;
	struct dfsr_uid uid, fresh;
	struct stat st;
	bool created;
	int dfd = -1;

	handle_del(fs, &f->link);
	/* A create journals its data with it; other names (links) still need the data. Both
	 * hash through this handle's descriptor, closed only afterwards. */
	if (f->pending)
		dfd = data_fd(f);
	created = pending_release(fs, f, dfd, &fresh, &st);
	if (f->writable && fs__inode_close_writer(fs, n, &uid)) {
		/* The create's stat, taken during this release, serves the check for other names
		 * (more_links()): one fstatat() fewer per new file. */
		note_change_but(fs, n, JOURNAL_DATA, created ? &fresh : NULL,
				dfd >= 0 ? dfd : data_fd(f), st.st_nlink ? &st : NULL);
		fs__inode_saved(fs, n);
		atomic_fetch_sub(&fs->unsaved, 1); /* counted since mark_dirty() */
	}
	close(f->fd);
	fs__inode_unref(fs, n, 0, 1);
	free(f);
}

static void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int rc = do_open(req, ino, fi);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_open(req, fi) != 0)
		file_close(fs_of(req), file_of(fi)); /* the kernel never saw it: no release */
}

/* Open (@p, @name) creating it with *@fl (backing_flags(), updated as for open_backing());
 * *@created tells whether this call made it. */
static int create_backing(fuse_req_t req, int pfd, const char *name, int *fl, mode_t mode,
			  bool *created)
{
	int fd, rc = creds_begin(req);

	if (rc < 0)
		return rc;
	/* O_NOATIME is never refused here: the member owns what it has just made. */
	fd = openat(pfd, name, *fl | O_CREAT | O_EXCL, mode);
	rc = fd < 0 ? -errno : fd;
	creds_end();
	*created = fd >= 0;
	if (rc != -EEXIST || (*fl & O_EXCL))
		return rc;
	/* It exists on disk although the kernel thought not (made behind the mount). */
	*fl |= O_NOFOLLOW;
	return open_backing(pfd, name, fl);
}

static int do_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     struct fuse_file_info *fi, struct fs_inode **out, struct fuse_entry_param *e)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *p = fs__inode_get(fs, parent);
	char path[FS_PROC_PATH_LEN];
	bool created;
	int fd, fl, opath, pfd, ptmp, rc;

	if (!p)
		return -ESTALE;
	rc = check_name_change(fs, p, name, "create");
	if (rc < 0)
		return rc;
	pfd = fs__inode_fd(fs, p, &ptmp);
	if (pfd < 0)
		return pfd;
	fl = backing_flags(fs, fi->flags);
	fd = create_backing(req, pfd, name, &fl, mode, &created);
	if (fd < 0) {
		rc = fd;
		goto out_put;
	}
	rc = created ? own_new(req, pfd, fd, mode) : 0;
	if (rc < 0)
		goto out_remove;
	proc_path(fd, path);
	opath = open(path, O_PATH | O_CLOEXEC);
	if (opath < 0) {
		rc = -errno;
		goto out_remove;
	}
	if (created) {
		rc = publish_new(fs, p, name, opath, false, out, e);
	} else {
		close(opath);
		rc = lookup_node(fs, p, name, true, out, e);
	}
	if (rc < 0)
		goto out_close;
	rc = attach_file(fs, *out, fd, fi->flags, fl, fi); /* takes fd */
	if (rc < 0) {
		fs__inode_unref(fs, *out, 1, 0);
		if (created)
			unlinkat(pfd, name, 0); /* never seen by anyone: undo it */
		goto out_put;
	}
	if (created)
		pending_add(fs, file_of(fi), p, name); /* journaled at release */
	goto out_put;
out_remove:
	if (created)
		unlinkat(pfd, name, 0);
out_close:
	close(fd);
out_put:
	fs__inode_fd_put(fs, p, ptmp);
	return rc;
}

static void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct fs_inode *n = NULL;
	int rc = do_create(req, parent, name, mode, fi, &n, &e);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (fuse_reply_create(req, &e, fi) != 0) {
		/* The kernel never saw the entry nor the handle: no forget, no release. */
		file_close(fs, file_of(fi));
		fs__inode_unref(fs, n, 1, 0);
	}
}

static void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs_file *f = file_of(fi);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	(void)ino;
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = f->fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void fs_op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			    struct fuse_file_info *fi)
{
	struct fs_file *f = file_of(fi);
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
	ssize_t res;

	(void)ino;
	/* the database's reserve (core/space.h): refused as on a full disk */
	res = space_take(journal_space(fs_of(req)->journal), fuse_buf_size(in));
	if (res < 0) {
		fuse_reply_err(req, (int)-res);
		return;
	}
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = f->fd;
	out.buf[0].pos = off;
	res = fuse_buf_copy(&out, in, 0);
	if (res < 0) {
		fuse_reply_err(req, (int)-res);
		return;
	}
	mark_dirty(fs_of(req), f->node);
	if (!fi->writepage && kill_suid(fs_of(req), req, f->fd, NULL))
		inval_attr(fs_of(req), f->node); /* written through, not from the page cache */
	fuse_reply_write(req, (size_t)res);
}

static void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	file_close(fs_of(req), file_of(fi));
	fuse_reply_err(req, 0);
}

static void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs_file *f = file_of(fi);
	int rc;

	(void)ino;
	rc = datasync ? fdatasync(f->fd) : fsync(f->fd);
	fuse_reply_err(req, rc < 0 ? errno : 0);
}

static void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			    struct fuse_file_info *fi)
{
	struct fs_file *f = file_of(fi);

	(void)ino;
	if (f->node->private_) {
		fuse_reply_err(req, -refuse_private("fallocate"));
		return;
	}
	if (!(mode & FALLOC_FL_PUNCH_HOLE)) {
		int rc = space_take(journal_space(fs_of(req)->journal), (uint64_t)length);

		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	if (fallocate(f->fd, mode, offset, length) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	mark_dirty(fs_of(req), f->node);
	fuse_reply_err(req, 0);
}

static void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
			struct fuse_file_info *fi)
{
	struct fs_file *f = file_of(fi);
	off_t res;

	(void)ino;
	res = lseek(f->fd, off, whence);
	if (res < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, res);
}

static void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
				  struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
				  struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct fs_file *in = file_of(fi_in);
	struct fs_file *out = file_of(fi_out);
	ssize_t res;

	(void)ino_in;
	(void)ino_out;
	res = space_take(journal_space(fs_of(req)->journal), len); /* as fs_op_write_buf() */
	if (res < 0) {
		fuse_reply_err(req, (int)-res);
		return;
	}
	res = copy_file_range(in->fd, &off_in, out->fd, &off_out, len, (unsigned)flags);
	if (res < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	mark_dirty(fs_of(req), out->node);
	fuse_reply_write(req, (size_t)res);
}

/* ---- directories ------------------------------------------------------------------------- */

static int do_opendir(struct fs *fs, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_inode *n = fs__inode_get(fs, ino);
	struct fs_dir *d;
	int nfd, tmp, fd, rc;

	if (!n)
		return -ESTALE;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	nfd = fs__inode_fd(fs, n, &tmp);
	if (nfd < 0) {
		rc = nfd;
		goto out_free;
	}
	fd = openat(nfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rc = -errno;
	fs__inode_fd_put(fs, n, tmp);
	if (fd < 0)
		goto out_free;
	d->dp = fdopendir(fd);
	if (!d->dp) {
		rc = -errno;
		close(fd);
		goto out_free;
	}
	d->magic = FS_DIR_MAGIC;
	handle_add(fs, &d->link);
	fi->fh = (uintptr_t)d;
	return 0;
out_free:
	free(d);
	return rc;
}

static void dir_close(struct fs *fs, struct fs_dir *d)
{
	handle_del(fs, &d->link);
	closedir(d->dp);
	free(d);
}

static void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int rc = do_opendir(fs_of(req), ino, fi);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (fuse_reply_open(req, fi) != 0)
		dir_close(fs_of(req), dir_of(fi));
}

struct readdir_out {
	fuse_req_t req;
	char *buf;
	size_t size; /* capacity */
	size_t len;  /* used */
};

/*
 * Add one directory entry to @o. Return: 1 if it was added, 0 if it did not fit (nothing
 * is kept), -ENOENT if it vanished meanwhile (skip it), another -errno.
 */
static int add_entry(struct fs *fs, struct fs_inode *dn, const struct dirent *de, bool plus,
		     struct readdir_out *o)
{
	struct fs_inode *n = NULL;
	struct fuse_entry_param e;
	size_t rem = o->size - o->len;
	size_t sz;
	int rc;

	if (!plus) {
		struct stat st = { .st_ino = de->d_ino, .st_mode = (mode_t)de->d_type << 12 };

		sz = fuse_add_direntry(o->req, o->buf + o->len, rem, de->d_name, &st, de->d_off);
	} else {
		if (is_dot(de->d_name)) {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = de->d_ino;
			e.attr.st_mode = (mode_t)de->d_type << 12;
		} else {
			rc = lookup_node(fs, dn, de->d_name, true, &n, &e);
			if (rc < 0)
				return rc;
		}
		sz = fuse_add_direntry_plus(o->req, o->buf + o->len, rem, de->d_name, &e,
					    de->d_off);
	}
	if (sz > rem) {
		if (n)
			fs__inode_unref(fs, n, 1, 0);
		return 0;
	}
	o->len += sz;
	return 1;
}

static int fill_dir(struct fs *fs, struct fs_inode *dn, struct fs_dir *d, bool plus,
		    struct readdir_out *o)
{
	int rc;

	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry)
				return errno ? -errno : 0;
		}
		if (dn == &fs->root && strcmp(d->entry->d_name, LAYOUT_PRIVATE) == 0)
			rc = 1; /* hidden from listings, reachable by name */
		else
			rc = add_entry(fs, dn, d->entry, plus, o);
		if (rc == 0)
			return 0; /* full: keep d->entry for the next call */
		if (rc < 0 && rc != -ENOENT)
			return rc;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dn = fs__inode_get(fs, ino);
	struct fs_dir *d = dir_of(fi);
	struct readdir_out o = { .req = req, .size = size };
	int rc;

	if (!dn) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	o.buf = calloc(1, size ? size : 1);
	if (!o.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->offset = off;
	}
	rc = fill_dir(fs, dn, d, plus, &o);
	/* An error after some entries: return those; the next call reports it again. */
	if (rc < 0 && o.len == 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, o.buf, o.len);
	free(o.buf);
}

static void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			      struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dir_close(fs_of(req), dir_of(fi));
	fuse_reply_err(req, 0);
}

static void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int fd = dirfd(dir_of(fi)->dp);
	int rc;

	(void)ino;
	rc = datasync ? fdatasync(fd) : fsync(fd);
	fuse_reply_err(req, rc < 0 ? errno : 0);
}

static int do_statfs(struct fs *fs, fuse_ino_t ino, struct statvfs *sv)
{
	struct fs_inode *n = fs__inode_get(fs, ino);
	int fd, tmp, rc;

	if (!n)
		return -ESTALE;
	fd = fs__inode_fd(fs, n, &tmp);
	if (fd < 0)
		return fd;
	rc = fstatvfs(fd, sv) < 0 ? -errno : 0;
	fs__inode_fd_put(fs, n, tmp);
	return rc;
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int rc = do_statfs(fs_of(req), ino, &sv);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes (POSIX ACLs included) ------------------------------------------ */

/* getxattr (@name set) or listxattr (@name NULL), with the size-probe protocol. */
static void reply_xattr_read(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *n = fs__inode_get(fs, ino);
	char path[FS_PROC_PATH_LEN];
	char *buf = NULL;
	ssize_t len;
	int fd, tmp, err;

	if (!n) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (size) {
		buf = malloc(size);
		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	fd = fs__inode_fd(fs, n, &tmp);
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		free(buf);
		return;
	}
	proc_path(fd, path);
	len = name ? getxattr(path, name, buf, size) : listxattr(path, buf, size);
	err = errno;
	fs__inode_fd_put(fs, n, tmp);
	if (len < 0)
		fuse_reply_err(req, err);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)len);
	else
		fuse_reply_buf(req, buf, (size_t)len);
	free(buf);
}

static void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	reply_xattr_read(req, ino, name, size);
}

static void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	reply_xattr_read(req, ino, NULL, size);
}

/* setxattr (@value set) or removexattr (@value NULL). */
static int do_xattr_write(struct fs *fs, fuse_ino_t ino, const char *name, const char *value,
			  size_t size, int flags)
{
	struct fs_inode *n = fs__inode_get(fs, ino);
	char path[FS_PROC_PATH_LEN];
	struct dfsr_uid uid;
	bool big, shrunk;
	int fd, tmp, rc;

	if (!n)
		return -ESTALE;
	if (n->private_)
		return refuse_private(value ? "setxattr" : "removexattr");
	fd = fs__inode_fd(fs, n, &tmp);
	if (fd < 0)
		return fd;
	/* A directory too large to replicate was skipped with all below it (event 1401): once
	 * it shrinks, what is below goes again (journal_resend_below()). */
	big = S_ISDIR(n->type) && outbound_attrs_too_large(fd);
	proc_path(fd, path);
	rc = value ? setxattr(path, name, value, size, flags) : removexattr(path, name);
	rc = rc < 0 ? -errno : 0;
	shrunk = rc == 0 && big && !outbound_attrs_too_large(fd);
	fs__inode_fd_put(fs, n, tmp);
	if (rc < 0)
		return rc;
	note_change(fs, n, 0);
	if (shrunk) {
		fs__inode_uid(fs, n, &uid);
		if (!dfsr_uid_is_zero(&uid))
			(void)journal_resend_below(fs->journal, &uid, NULL);
	}
	return 0;
}

static void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			   size_t size, int flags)
{
	/* A zero-length value is legal: pass a non-NULL pointer so it is not a remove. */
	const char *v = value ? value : "";

	fuse_reply_err(req, -do_xattr_write(fs_of(req), ino, name, v, size, flags));
}

static void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -do_xattr_write(fs_of(req), ino, name, NULL, 0, 0));
}

/* ---- session ------------------------------------------------------------------------------ */

static void want(struct fuse_conn_info *conn, unsigned cap)
{
	if (conn->capable & cap)
		conn->want |= cap;
}

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	want(conn, FUSE_CAP_WRITEBACK_CACHE);
	want(conn, FUSE_CAP_SPLICE_READ);
	want(conn, FUSE_CAP_SPLICE_WRITE);
	want(conn, FUSE_CAP_SPLICE_MOVE);
	want(conn, FUSE_CAP_PARALLEL_DIROPS);
	want(conn, FUSE_CAP_ASYNC_DIO);
	want(conn, FUSE_CAP_ASYNC_READ);
	want(conn, FUSE_CAP_POSIX_ACL);
	want(conn, FUSE_CAP_DONT_MASK);
	want(conn, FUSE_CAP_ATOMIC_O_TRUNC);
	want(conn, FUSE_CAP_CACHE_SYMLINKS);
	conn->want &= ~(unsigned)FUSE_CAP_EXPORT_SUPPORT;
	fs->writeback = (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0;
	conn->max_write = FS_MAX_RW;
	conn->max_readahead = FS_READAHEAD_KB << 10; /* and fs.c raises the bdi's to it */
	if (conn->max_background < 64)
		conn->max_background = 64;
	conn->time_gran = 1;
}

const struct fuse_lowlevel_ops fs__ops = {
	.init = fs_op_init,
	.lookup = fs_op_lookup,
	.forget = fs_op_forget,
	.forget_multi = fs_op_forget_multi,
	.getattr = fs_op_getattr,
	.setattr = fs_op_setattr,
	.readlink = fs_op_readlink,
	.mknod = fs_op_mknod,
	.mkdir = fs_op_mkdir,
	.symlink = fs_op_symlink,
	.link = fs_op_link,
	.unlink = fs_op_unlink,
	.rmdir = fs_op_rmdir,
	.rename = fs_op_rename,
	.open = fs_op_open,
	.create = fs_op_create,
	.read = fs_op_read,
	.write_buf = fs_op_write_buf,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.fallocate = fs_op_fallocate,
	.lseek = fs_op_lseek,
	.copy_file_range = fs_op_copy_file_range,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.fsyncdir = fs_op_fsyncdir,
	.statfs = fs_op_statfs,
	.getxattr = fs_op_getxattr,
	.setxattr = fs_op_setxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
};
