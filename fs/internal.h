/*
 * internal.h - what the files of fs/ share: the mount object, the inode table and the FUSE
 * operation table. Nothing outside fs/ includes this header (fs/dfsr.c uses fs/fs.h only).
 *
 * The inode table (fs/inode.c) maps FUSE node ids to `struct fs_inode`, one per backing
 * inode, keyed by the backing (st_dev, st_ino) so that hard links share one node. Node ids
 * are a per-mount counter (FUSE_ROOT_ID is the local path itself), never pointers, and are
 * never reused within a mount, so the generation is always 0.
 *
 * Descriptors (fs/inode.c): a node reaches its backing object through an O_PATH|O_NOFOLLOW
 * descriptor or, when it has none, through a kernel file handle reopened on demand
 * (open_by_handle_at). Directories, the root, nodes whose filesystem gives no handles, and
 * nodes made while fewer than fs->fd_budget node descriptors exist hold a "fixed"
 * descriptor for their whole life; the rest are "handle-only" and hold a descriptor only
 * while they have open file handles, so a tree larger than RLIMIT_NOFILE can be walked.
 * Any descriptor keeps the backing inode allocated, so its (st_dev, st_ino) cannot be
 * reused meanwhile; a handle-only node without a descriptor can be outlived by its inode,
 * so a new inode with the same key is told apart by its handle (the handle carries the
 * generation) and the stale node is dropped from the key index. Ops get a usable
 * descriptor with fs__inode_fd() and give it back with fs__inode_fd_put().
 *
 * Lifetime (the libfuse lookup-count rule, STYLE rule 13): every successful entry reply adds
 * 1 to nlookup, FORGET subtracts; every open file handle adds 1 to nopen, RELEASE subtracts.
 * A node is freed when both reach zero. The root node is embedded in struct fs and never
 * freed.
 *
 * Thread: fuse worker threads, concurrently. One mutex, fs->lock, protects the table and the
 * mutable node fields; it is a leaf lock (nothing else is taken while it is held, and it is
 * never held across a system call on the backing store, a journal call or a fuse_reply_*).
 */
#ifndef DFSR_FS_INTERNAL_H
#define DFSR_FS_INTERNAL_H

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

#include "core/config.h"
#include "core/htab.h"
#include "core/journal.h"
#include "core/util.h"
#include "fs/fs.h"

_Static_assert(sizeof(fuse_ino_t) == sizeof(uint64_t), "node ids are 64-bit counters");

#define FS_LINK_UIDS 7 /* hard-link names tracked per node besides the first */

struct fs_inode {
	uint64_t id;                /* immutable: the FUSE node id */
	dev_t dev;                  /* immutable: backing st_dev */
	ino_t ino;                  /* immutable: backing st_ino */
	int fd;                     /* immutable if fd_fixed, else protected by fs->lock: O_PATH|
				     * O_NOFOLLOW of the backing object, or -1; owned. Use
				     * fs__inode_fd(), never this field, outside fs/inode.c */
	bool fd_fixed;              /* immutable: fd is held from creation to free */
	uint32_t fd_users;          /* protected by fs->lock: fs__inode_fd() borrowers of a
				     * non-fixed fd; it is not closed while any remain */
	struct file_handle *handle; /* immutable: NULL if fd_fixed, else the handle; owned */
	bool keyed;                 /* protected by fs->lock: linked into fs->by_key */
	mode_t type;                /* immutable: S_IFMT bits */
	bool private_;              /* immutable: DfsrPrivate itself or below it */
	uint64_t nlookup;           /* protected by fs->lock */
	uint32_t nopen;             /* protected by fs->lock: open file handles */
	uint32_t nwriters;          /* protected by fs->lock: open handles that may write */
	uint32_t nsaving;           /* protected by fs->lock: closes of the last writer whose
				     * data is being journaled (fs__inode_close_writer() to
				     * fs__inode_saved()) */
	uint32_t nopening;          /* protected by fs->lock: opens for writing between their
				     * checks and their count as writers (fs__inode_open_begin()
				     * to fs__inode_open_end()) */
	bool preserved;             /* protected by fs->lock: moved into ConflictAndDeleted
				     * or PreExisting by replication (fs_preserved()) */
	struct dfsr_uid uid;        /* protected by fs->lock: replication UID, zero if untracked */
	/* protected by fs->lock: the records of this node's other names (hard links): those
	 * looked up or linked through the mount, and those the journal's map of hard links
	 * gave (fs/ops.c note_change_but()); a change is journaled on each. Names past
	 * FS_LINK_UIDS are left to the consistency scan. */
	struct dfsr_uid links[FS_LINK_UIDS];
	uint8_t nlinks;
	bool linked;         /* protected by fs->lock: seen with st_nlink > 1 at some time */
	nlink_t links_asked; /* protected by fs->lock: st_nlink when the journal was last asked
			      * for names this node does not know (0: never) */
	atomic_bool dirty;   /* data written since the last journal_note_change(DATA);
			      * set: counted in fs->unsaved */
	struct htab_node key_node; /* protected by fs->lock: in fs->by_key if keyed */
	struct htab_node id_node;  /* protected by fs->lock: in fs->by_id */
};

/* Open file and directory handles are linked into fs->handles, so that handles the kernel
 * never released (the connection was aborted) are still closed by fs_free(). */
struct fs_handle_link {
	struct fs_handle_link *prev; /* protected by fs->lock */
	struct fs_handle_link *next; /* protected by fs->lock */
};

struct fs {
	struct fuse_session *se;            /* immutable after fs_new() */
	struct journal *journal;            /* borrowed; thread-safe */
	const struct config_folder *folder; /* borrowed */
	char *mountpoint;                   /* immutable; owned */
	unsigned threads;                   /* immutable: max worker threads */
	double timeout;                     /* immutable: kernel entry/attr cache, seconds */
	bool writeback;                     /* written once in init, before any other op */
	bool killpriv;                      /* FUSE_HANDLE_KILLPRIV_V2 granted (as writeback) */
	atomic_bool init_replied;           /* the INIT reply went out (fs.c io_writev) */
	atomic_bool stopping;               /* fs_stop() was called */
	bool mounted;                       /* init thread only (fs_new/fs_free) */

	pthread_mutex_t lock; /* leaf lock: the inode table and fs_inode's mutable fields */
	struct fs_inode root; /* FUSE_ROOT_ID; fd is a private dup of opts.root_fd */
	struct htab by_key;   /* protected by lock: keyed nodes, hash of (dev, ino) */
	struct htab by_id;    /* protected by lock: every node, root included; hash of id */
	uint64_t next_id;     /* protected by lock */
	size_t nfds;          /* protected by lock: node descriptors held, root included */
	size_t fd_budget;     /* immutable after init: nfds above which new non-directory
			       * nodes are handle-only (half the RLIMIT_NOFILE soft limit) */
	bool fh_ok;           /* immutable after init: handles work on the backing store */
	int fh_mount_id;      /* immutable after init: the root's mount id (handles) */
	int fh_mount_fd;      /* immutable after init: O_RDONLY root directory for
			       * open_by_handle_at (which refuses O_PATH), or -1; owned */
	struct fs_handle_link handles; /* protected by lock: list head of open handles */

	/* Creates not journaled yet (fs/ops.c "Deferred creates"): a file made by CREATE is
	 * journaled when its creating handle is released, in one batch with its data. */
	pthread_mutex_t pending_lock;  /* not a leaf lock, but never held across a system call
					* on the backing store, a journal call or a reply; may take
					* fs->lock inside */
	pthread_cond_t pending_done;   /* signalled when a pending create leaves the list */
	struct fs_handle_link pending; /* protected by pending_lock: list of pending creates */
	atomic_uint npending;          /* entries in that list (read without the lock as a hint) */
	/* Nodes written through the mount whose data is not journaled yet: dirty ones, and
	 * those whose last writer is journaling right now (fs_unsaved()). */
	atomic_uint unsaved;
};

/*
 * Readahead of the mount, KiB: the kernel turns each readahead window of a FUSE file into
 * one READ, and sizes the window from the mount's bdi (128 KiB unless raised; max_readahead
 * in INIT only lowers it), so fs.c raises the bdi's read_ahead_kb and ops.c asks for the
 * same max_readahead. 512 KiB windows take a quarter of the READ round trips of 128 KiB
 * ones; a 1 MiB READ would not fit, with its header, in a splice pipe of the default
 * /proc/sys/fs/pipe-max-size (1 MiB), and libfuse would then copy it instead of splicing.
 */
#define FS_READAHEAD_KB 512u

/* ---- fs/inode.c ------------------------------------------------------------------------ */

/**
 * fs__itable_init() - Set up the table with the root node.
 * @fs:       the mount; fs->root.fd already holds the root's O_PATH descriptor
 * @root_uid: the folder root's UID
 *
 * Also sets the descriptor budget from RLIMIT_NOFILE and probes whether file handles work
 * (name_to_handle_at on the root, and open_by_handle_at, which needs CAP_DAC_READ_SEARCH);
 * if not, every node keeps a fixed descriptor, as before.
 * Thread: init.
 * Return: 0, -ENOMEM, or -errno from fstat of the root.
 */
int fs__itable_init(struct fs *fs, const struct dfsr_uid *root_uid);

/* Close and free every node but the root (whose fd the caller closes), and the handle
 * mount descriptor. Thread: init. */
void fs__itable_release(struct fs *fs);

/**
 * fs__inode_get() - The node for a FUSE node id.
 * Thread: fuse. The kernel only names ids it holds a lookup reference on, so the node stays
 * valid for the duration of the request.
 * Return: the node, or NULL for an unknown id (a kernel bug, answered with ESTALE).
 */
struct fs_inode *fs__inode_get(struct fs *fs, fuse_ino_t id);

/**
 * fs__inode_ref_existing() - Take a lookup reference on the node of (@st->st_dev,
 * @st->st_ino) if there is one and it is this very inode.
 * @fd: O_PATH descriptor of the object (borrowed): a handle-only node without a
 *      descriptor is matched by handle too, since its inode number may have been reused
 *
 * Thread: fuse.
 * Return: the node with nlookup incremented, or NULL if the backing inode has no node.
 */
struct fs_inode *fs__inode_ref_existing(struct fs *fs, int fd, const struct stat *st);

/**
 * fs__inode_insert_take() - Find or make the node of a backing object, taking one lookup
 * reference on it.
 * @fd:       O_PATH|O_NOFOLLOW descriptor of the object; taken (kept as a fixed descriptor,
 *            or closed: a node already exists, the node is handle-only, or failure)
 * @st:       its stat
 * @private_: it is DfsrPrivate or below it
 * @uid:      its replication UID (for a node that exists already: the UID of another of
 *            its names, remembered with fs__inode_add_uid())
 * @out:      receives the node
 *
 * Thread: fuse.
 * Ownership: takes @fd, on success and on failure alike.
 * Return: 0 or -ENOMEM.
 */
int fs__inode_insert_take(struct fs *fs, int fd, const struct stat *st, bool private_,
			  const struct dfsr_uid *uid, struct fs_inode **out);

/**
 * fs__inode_fd() - A usable O_PATH|O_NOFOLLOW descriptor of the node's backing object.
 * @tmp: receives what fs__inode_fd_put() needs to undo (a fresh descriptor to close, a
 *       borrow to drop, or nothing)
 *
 * The node's own descriptor when it has one (fixed, or held for open handles), else a
 * fresh one reopened from the handle. Every successful call is paired with
 * fs__inode_fd_put(@tmp); the descriptor is valid until then.
 * Thread: fuse.
 * Return: the descriptor, or -errno (-ENOENT when the backing inode is gone, -EMFILE).
 */
int fs__inode_fd(struct fs *fs, struct fs_inode *n, int *tmp);

/* Give back what fs__inode_fd() returned (@tmp as it set it). Thread: fuse. */
void fs__inode_fd_put(struct fs *fs, struct fs_inode *n, int tmp);

/**
 * fs__inode_unref() - Drop @nlookup lookup references and @nopen open references; free the
 * node when both counts reach zero (never the root). A handle-only node whose last open
 * handle goes gives up its descriptor.
 * Thread: fuse.
 */
void fs__inode_unref(struct fs *fs, struct fs_inode *n, uint64_t nlookup, uint32_t nopen);

/**
 * fs__inode_open() - Count one open handle (and one writer if @writable).
 * @file_fd: the handle's open descriptor; a handle-only node gets its own O_PATH
 *           descriptor from it, held while open handles remain (so that an open file
 *           stays reachable after its last name is gone)
 *
 * Thread: fuse.
 * Return: 0, or -errno (nothing counted) when that descriptor could not be made.
 */
int fs__inode_open(struct fs *fs, struct fs_inode *n, bool writable, int file_fd);

/**
 * fs__inode_close_writer() - Drop one writer; tell whether the data must be journaled now.
 * @uid: receives the node's UID when the result is true
 *
 * When it is, the node counts as saving until fs__inode_saved(): fs_busy() still says
 * busy, so that no install or delete from a partner takes the file between the close and
 * its journal entry (docs/conflicts.md §8).
 * Thread: fuse.
 * Return: true when this was the last writer and the node was dirty (dirty is cleared).
 */
bool fs__inode_close_writer(struct fs *fs, struct fs_inode *n, struct dfsr_uid *uid);

/* The data of a close that fs__inode_close_writer() reported is journaled. Thread: fuse. */
void fs__inode_saved(struct fs *fs, struct fs_inode *n);

/**
 * fs__inode_open_begin() - An open for writing of @n starts: count it busy (fs_busy())
 * before it checks that @n is still named (journal_live(), fs__inode_preserved()), until
 * fs__inode_open_end() after its handle is counted as a writer (fs__inode_open()) or the
 * open failed. So a replica decision either sees the opener busy, or ends (under the
 * journal's mutex, which journal_live() waits for) before the opener's checks.
 * Thread: fuse.
 * Return: false (nothing counted) if @n is marked preserved already.
 */
bool fs__inode_open_begin(struct fs *fs, struct fs_inode *n);
void fs__inode_open_end(struct fs *fs, struct fs_inode *n);

/* Whether @n was marked preserved (fs_preserved()). Thread: any. */
bool fs__inode_preserved(struct fs *fs, struct fs_inode *n);

/* Mark the node of the backing object (@dev, @ino), if any, preserved. Thread: any. */
void fs__inode_mark_preserved(struct fs *fs, dev_t dev, ino_t ino);

/**
 * fs__inode_uids() - Every UID a change of @n must be journaled on: its own and those of its
 * other names (hard links). Zero UIDs are left out.
 * @out: receives up to 1 + FS_LINK_UIDS UIDs
 *
 * Thread: fuse. Return: how many were written.
 */
size_t fs__inode_uids(struct fs *fs, struct fs_inode *n, struct dfsr_uid out[1 + FS_LINK_UIDS]);

/* Remember @uid as the record of another name of @n (or as its own, if it has none).
 * Thread: fuse. */
void fs__inode_add_uid(struct fs *fs, struct fs_inode *n, const struct dfsr_uid *uid);

/*
 * fs__inode_linked() - Note @nlink, the object's st_nlink now; tell whether @n was ever
 * seen with more than one link. A node that was keeps learning the names it is looked up
 * by even once down to one link: the names it knew may all have left it (replaced by a
 * partner's install) while it stayed in the kernel's cache. Thread: fuse.
 */
bool fs__inode_linked(struct fs *fs, struct fs_inode *n, nlink_t nlink);

/**
 * fs__inode_ask_links() - Should the journal be asked for names of @n it does not know?
 * @nlink: the object's st_nlink now
 * @known: how many UIDs @n knows (fs__inode_uids())
 *
 * True once per link count: when @nlink exceeds @known, @n has room for another UID, and
 * the journal was not asked at this @nlink yet (recorded as asked). A link made since (the
 * count moved) asks again.
 * Thread: fuse.
 */
bool fs__inode_ask_links(struct fs *fs, struct fs_inode *n, nlink_t nlink, size_t known);

/**
 * fs__inode_adopted() - The backing object (@dev, @ino) is now the record @uid, no longer
 * @old (replication gave the object at that place another record's identity: fs_adopted()).
 * Its node, if any, takes @uid where it knew @old (or no UID at all).
 * Thread: any.
 */
void fs__inode_adopted(struct fs *fs, dev_t dev, ino_t ino, const struct dfsr_uid *old,
		       const struct dfsr_uid *uid);

/* Take one more lookup reference on a node the caller already holds one on. Thread: fuse. */
void fs__inode_hold(struct fs *fs, struct fs_inode *n);

/* Writers currently open on the node. Thread: fuse. */
uint32_t fs__inode_writers(struct fs *fs, struct fs_inode *n);

/**
 * fs__inode_id() - The node id of the backing object (@dev, @ino), or 0 if it has no node.
 * Thread: any.
 */
uint64_t fs__inode_id(struct fs *fs, dev_t dev, ino_t ino);

/**
 * fs__inode_writers_of() - Writers open on the node of the backing object (@dev, @ino),
 * opens for writing under way (fs__inode_open_begin()), and closes of its last writer not
 * journaled yet; 0 if it has no node.
 * Thread: any.
 */
uint32_t fs__inode_writers_of(struct fs *fs, dev_t dev, ino_t ino);

/* Copy out / set the replication UID. Thread: fuse. */
void fs__inode_uid(struct fs *fs, struct fs_inode *n, struct dfsr_uid *out);

/**
 * fs__inode_set_uid_by_fd() - Set the UID of the node (if any) of the backing object @fd.
 * A UID the node knows already is left where it is (a rename keeps a name's UID, and a
 * hard-linked node must keep its other names too).
 * Thread: fuse.
 */
void fs__inode_set_uid_by_fd(struct fs *fs, int fd, const struct dfsr_uid *uid);

/* ---- fs/ops.c -------------------------------------------------------------------------- */

/* Close and free the handles the kernel never released. Thread: init (after fs_run()). */
void fs__handles_release(struct fs *fs);

/* The low-level operation table; fuse_session_new() gets it with the fs as userdata. */
extern const struct fuse_lowlevel_ops fs__ops;

#endif
