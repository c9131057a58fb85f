/*
 * replica.h - one replicated folder as a replication partner sees it: what to send
 * (upstream) and how to take in what arrives (downstream). This is where the conflict
 * rules of docs/conflicts.md are applied; code applying a rule names its section.
 *
 * The upstream side (what to send, staging for serving) is core/outbound.h; both share
 * struct replica_update, defined here.
 *
 * Downstream: replica_offer() decides an incoming update against the local record
 * (docs/conflicts.md §2-§8, §10 during initial sync) and applies everything that needs no
 * file data at once (directories, links, renames, metadata-only changes, deletes,
 * preseeded files). When data is needed it says so; the caller downloads the version into
 * the Installing directory (core/stage.h, stage_asm) and calls replica_install(), which
 * decides again (the local state may have moved meanwhile) and installs by rename.
 * replica_merge() raises the knowledge vector once the caller has decided every update
 * an upstream sent up to its Done message.
 *
 * Every change made here is one atomic database batch, as for local changes; installs
 * append journal entries like local changes do (so they are forwarded), with the
 * upstream's GVSN (no new version), except resurrections (§7), which are new versions.
 * Disk changes happen before their batch commits, in an order that loses nothing if the
 * process dies between them: preserve (rename into ConflictAndDeleted) before replace,
 * rename into place after fsync; the consistency scan repairs the database afterwards.
 *
 * Names from partners are untrusted: a record that record_decode() accepted still has its
 * name checked here against the folder (DfsrPrivate at the root, filtered names) and its
 * parent must be a live directory (or be resurrected, §7); anything else is
 * REPLICA_REFUSED with an event, and nothing touches the disk.
 *
 * Events: 1301 (an update refused: hostile, malformed, or its data does not match its
 * hash), 1302 (a disk step failed; the update is offered again later), 4302 (an install
 * waits for a writer; once a minute per object), 4412 (a conflict preserved a loser), 4104
 * (initial sync done, from replica_merge()), 1303 (ConflictAndDeleted cleanup), 1304 (a
 * preserved object removed after a restore, replica_unpreserve()).
 *
 * ConflictAndDeleted keeps a soft quota (the folder's conflict_quota; docs/conflicts.md
 * §9): after each preserve, past 90 % the oldest entries (manifest order) go until usage is
 * under 60 %; the entry just preserved always stays.
 *
 * Thread: any; a struct replica is safe from any thread (the journal's mutex serialises the
 * decisions). Everything here blocks on disk: pool threads only, never the loop thread.
 */
#ifndef DFSR_CORE_REPLICA_H
#define DFSR_CORE_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/journal.h"
#include "core/layout.h"
#include "core/record.h"
#include "core/stage.h"
#include "core/version.h"

#define REPLICA_XATTR_MAX   256          /* xattrs per object accepted from a partner */
#define REPLICA_XATTR_BYTES (256u << 10) /* their total size */
#define REPLICA_LINK_MAX    4096         /* bytes of a link target */

struct replica;

struct replica_xattr {
	char *name;     /* NUL-terminated */
	uint8_t *value; /* may be NULL when len is 0 */
	size_t len;
};

/* One version of one object as it travels between members. */
struct replica_update {
	struct record rec;
	struct replica_xattr *xattrs; /* sorted by name */
	size_t nxattrs;
	char *link_target; /* links: NUL-terminated; NULL otherwise */
};

void replica_update_init(struct replica_update *u);
/* Frees everything; @u is empty afterwards. NULL-safe. */
void replica_update_release(struct replica_update *u);

/**
 * replica_update_check() - Bounds of an update built from untrusted input: record already
 * validated by record_decode(); xattr count and bytes within the limits above, names
 * non-empty, not dfsr's own; a link target present (1..REPLICA_LINK_MAX bytes, no NUL)
 * exactly when the record is a live link.
 * Return: 0 or -EBADMSG.
 */
int replica_update_check(const struct replica_update *u);

/*
 * Callbacks into the layers above (the filesystem); core never names them.
 * invalidate: an entry or object changed in the local path behind the mount (fs_invalidate).
 *             Called after the change committed, with no core lock held (it may wait on
 *             the kernel, which may wait on a FUSE operation that calls the journal).
 * busy:       the object with this stat is open for writing through the mount right now
 *             (an install over it must wait, docs/conflicts.md §8, event 4302).
 *             Called with the journal's mutex held: it may take only a leaf lock (fs_busy()
 *             takes fs->lock, which is never held while calling into core).
 * preserved:  the regular file with this stat was moved into ConflictAndDeleted (a
 *             conflict loser, a file deleted by a partner; also each regular file below a
 *             directory preserved whole) or PreExisting just now: no
 *             writer may reach it any more through a node the kernel still holds for its
 *             old name, and no change of it is journaled on that name's record
 *             (fs_preserved(), docs/conflicts.md §9). A conflict loser's record is live
 *             (the winner's), so the journal alone cannot tell. Called with the journal's
 *             mutex held, in the same decision as the busy check: a leaf lock only.
 */
typedef void (*replica_invalidate_fn)(void *arg, const struct stat *parent, const char *name,
				      const struct stat *obj);
typedef bool (*replica_busy_fn)(void *arg, const struct stat *st);
typedef void (*replica_preserved_fn)(void *arg, const struct stat *st);
/*
 * adopted:    the object with this stat, which was the record @old, is now the record @uid
 *             (§10 adoption, §4 a losing directory kept on disk as the winner, §7.2 a live
 *             directory taken for a resurrected one): a node the layer above holds for it
 *             must journal later changes on @uid (fs_adopted()). Called with the journal's
 *             mutex held, in the decision that adopted it: a leaf lock only.
 */
typedef void (*replica_adopted_fn)(void *arg, const struct stat *st, const struct dfsr_uid *old,
				   const struct dfsr_uid *uid);

struct replica_opts {
	struct journal *j;                /* borrowed; outlives the replica */
	struct stage *stage;              /* borrowed; staging of this folder */
	replica_invalidate_fn invalidate; /* NULL: nothing to invalidate (tests) */
	replica_busy_fn busy;             /* NULL: nothing is ever busy */
	replica_preserved_fn preserved;   /* NULL: nothing to tell */
	replica_adopted_fn adopted;       /* NULL: nothing to tell */
	void *arg;
};

/**
 * replica_new() - The replication view of an open folder database.
 * Opens DfsrPrivate/Installing, ConflictAndDeleted and PreExisting relative to the
 * journal's root descriptor.
 * Thread: init.
 * Return: 0, -ENOMEM, or the -errno of opening a directory.
 */
int replica_new(const struct replica_opts *o, struct replica **out);
void replica_free(struct replica *r); /* NULL-safe */

/* The Installing directory (O_PATH), for stage_asm_open(). */
int replica_installing_fd(const struct replica *r);

/* ---- downstream ---------------------------------------------------------------------- */

enum replica_verdict {
	REPLICA_DONE = 0,    /* decided: applied, ignored, or lost a conflict; nothing to fetch */
	REPLICA_FETCH = 1,   /* fetch the data, then call replica_install() */
	REPLICA_WAIT = 2,    /* the parent is not known yet: offer again after others */
	REPLICA_BUSY = 3,    /* the local file is open for writing: offer again later */
	REPLICA_REFUSED = 4, /* hostile or invalid (logged); never offer it again */
};

/**
 * replica_offer() - Decide an incoming update (docs/conflicts.md §2-§8, §10).
 * @upstream_db: the database id of the partner that sent it (for messages)
 * @v:           receives the verdict
 *
 * Return: 0 (see @v), -ENOSPC, -EIO, -ENOMEM (then retry later).
 */
int replica_offer(struct replica *r, const struct replica_update *u, enum replica_verdict *v);

/**
 * replica_install() - Install a fetched file version. @fd is the assembled data in the
 * Installing directory (stage_asm_finish(); named stage_asm_name() there); on success it
 * has been renamed into place (or, if the decision changed, removed) and the caller only
 * closes @fd.
 * @v: receives REPLICA_DONE, REPLICA_BUSY (keep the file and call again later),
 *     REPLICA_WAIT, REPLICA_REFUSED (the data, once mode/owner/xattrs are applied, does
 *     not have the record's replication hash: removed, logged)
 * Return: 0 (see @v), -ENOSPC, -EIO, -ENOMEM.
 */
int replica_install(struct replica *r, const struct replica_update *u, int fd,
		    enum replica_verdict *v);

/**
 * replica_install_digest() - As replica_install(), for data whose SHA-256 is known to be
 * @content (stage_asm_finish() checked it against stage_asm_digest()): the data is not
 * read again for the replication hash. @content must be the data's, or a wrong version
 * is installed; pass NULL when unsure.
 */
int replica_install_digest(struct replica *r, const struct replica_update *u, int fd,
			   const uint8_t content[HASH_LEN], enum replica_verdict *v);

/**
 * replica_merge() - Raise the knowledge vector by @upstream (after every update received
 * before the upstream's Done was decided). During initial sync, a Done from a partner whose
 * folder is normal (@upstream_normal) ends it: state normal, event 4104.
 * Return: 0, -EIO, -ENOMEM.
 */
int replica_merge(struct replica *r, const struct version_vector *upstream, bool upstream_normal);
/**
 * replica_merge_from() - replica_merge() of a Done whose sender may not have offered
 * everything it holds: @asked_all is false unless our Hello to it asked for everything
 * again (journal_stale() when it was built). A stale initial sync (docs/conflicts.md §12)
 * ends only with @asked_all: otherwise every object the sender did not offer would look
 * like one the group forgot. replica_merge() is this with @asked_all true.
 */
int replica_merge_from(struct replica *r, const struct version_vector *upstream,
		       bool upstream_normal, bool asked_all);

/* The knowledge vector (copied into @out, which must be initialised). Return: 0, -ENOMEM. */
int replica_knowledge(struct replica *r, struct version_vector *out);

/**
 * replica_hello_knowledge() - The knowledge vector to announce in a Hello: as
 * replica_knowledge(), lowered below the GVSN of every version a read-only member's scan
 * reverted (docs/conflicts.md §11), so that a partner holding such a version sends it
 * again; replica_offer() installs it instead of ignoring it as known.
 * Return: 0, -ENOMEM.
 */
int replica_hello_knowledge(struct replica *r, struct version_vector *out);

/* ---- preserved objects ----------------------------------------------------------------- */

/**
 * replica_unpreserve() - Remove a preserved object and its manifest entry, once `dfsr
 * restore` has put a copy back (the control request "unpreserve").
 * @kind: MANIFEST_CONFLICT (ConflictAndDeleted) or MANIFEST_PREEXISTING (PreExisting)
 * @name: the preserved name; untrusted: it must be one component (no '/', not "." or
 *        "..", not empty) and listed in that manifest
 *
 * Under the journal's mutex, which preserving and the ConflictAndDeleted cleanup hold
 * too, so no manifest change is lost and the object is not renamed or removed under us:
 * the object goes first (a directory whole; already missing counts as gone), then every
 * manifest entry of @name. Event 1304 (PRESERVED_RESTORED).
 * Thread: any (pool threads: it blocks on disk).
 * Return: 0, -EINVAL (bad @kind or @name), -ENOENT (@name is not in the manifest, or there
 *         is no manifest), -EBADMSG (the manifest does not parse), -ENOMEM, -EIO, or the
 *         -errno of removing the object (its entry then stays).
 */
int replica_unpreserve(struct replica *r, enum manifest_kind kind, const char *name);

#endif
