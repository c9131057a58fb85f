/*
 * outbound.h - the upstream side of replication for one folder: which updates a partner
 * lacks, and staging a file version for serving (DESIGN.md, "Replication").
 *
 * The records a partner lacks are those whose GVSN its knowledge vector does not contain.
 * outbound_missing() finds them all (a full walk from one snapshot, parents before
 * children, then tombstones); outbound_changes() follows the outbound journal from a
 * sequence number (every local change and every install appends to it, so updates from a
 * third member are forwarded). Each is handed out as a struct replica_update
 * (core/replica.h): the record plus what a receiver needs that the record does not hold
 * (xattrs, a link's target), read from the live object at that moment; a receiver checks
 * the whole against the record's replication hash, so a racing local change is caught
 * there. outbound_serve() opens a file version for serving (core/stage.h).
 *
 * A NULL @partner is an empty vector (the partner has nothing). An object whose attributes
 * or link target cannot be read (or would exceed the REPLICA_XATTR_* limits a receiver
 * enforces: "too large to replicate") is skipped with event 1401 naming its path, UID and
 * the reason, and the walk goes on; it is not in @skips, so a caller's Done claims it (no
 * retry could send it); its next change sends it again. Whatever lies under a directory
 * too large to replicate is skipped the same way (1401 each): a receiver could not place
 * it, and would hold it waiting for its parent.
 *
 * Thread: any. Everything here blocks on disk: pool threads only, never the loop thread.
 */
#ifndef DFSR_CORE_OUTBOUND_H
#define DFSR_CORE_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/journal.h"
#include "core/replica.h"
#include "core/stage.h"
#include "core/version.h"

/* outbound_missing() sends files this large before the others */
#define OUTBOUND_EARLY (16u << 20)

/* Receives one update; non-zero stops the walk and is returned. @u is valid during the
 * call only. */
typedef int (*replica_update_fn)(void *arg, const struct replica_update *u);

/*
 * The objects a walk left out because they could not be found on disk: an object being
 * moved (by an install, or a rename through the mount) can seem gone for a moment, one
 * deleted behind dfsr's back stays gone until the next scan. A caller that tells the
 * partner what it sent (Done) must not claim their versions, and offers them again later
 * (outbound_again()). uid[i] and gvsn[i] are one skipped record.
 */
struct outbound_skips {
	struct dfsr_uid *uid;
	struct version_gvsn *gvsn;
	size_t n, cap;
};

void outbound_skips_init(struct outbound_skips *s);
/* Frees the lists; @s is empty and reusable afterwards. */
void outbound_skips_release(struct outbound_skips *s);

/**
 * outbound_missing() - Every record whose GVSN @partner does not contain, from one
 * snapshot: live records parents first (breadth-first from the root; the directories and
 * the files of at least OUTBOUND_EARLY bytes first, then the others), then tombstones.
 * @next_seq: receives the journal sequence at the snapshot; outbound_changes() from there
 *            sees every change made after it
 * An object that vanished from disk since it was recorded is skipped (the scan or the
 * journal will report it), once it still cannot be found under the journal lock and after
 * a short nap: an object being moved by an install or through the mount is not vanished.
 * @skips:    if not NULL, receives (appended) the records skipped that way
 * Thread: not with the journal lock held (it takes it); may sleep (a walk thread).
 * Return: 0, the callback's value, -EIO, -ENOMEM.
 */
int outbound_missing(struct journal *j, const struct version_vector *partner, uint64_t *next_seq,
		     struct outbound_skips *skips, replica_update_fn fn, void *arg);

/**
 * outbound_changes() - The current record of every object in the journal from @from on
 * (each object once per call), skipping those whose GVSN @partner contains. Before a live
 * record, its ancestors the partner lacks go out (once per call too), root first, so
 * parents come before children within a call whatever order the journal names them in.
 * @max:      journal entries to read at most (0 = all)
 * @next_seq: receives the sequence to continue from (when the callback stopped the walk:
 *            the sequence of the entry it stopped in, so that entry is read again)
 * @skips:    as outbound_missing()
 * Return: as outbound_missing().
 */
int outbound_changes(struct journal *j, uint64_t from, size_t max,
		     const struct version_vector *partner, uint64_t *next_seq,
		     struct outbound_skips *skips, replica_update_fn fn, void *arg);

/**
 * outbound_again() - The current record of each of @uids (@n of them; those a walk
 * skipped), skipping those whose GVSN @partner contains, each preceded by its ancestors
 * the partner lacks, as outbound_changes() does. One that is still not found on disk is
 * appended to @skips again (if not NULL); one deleted since goes out as its tombstone.
 * Return: as outbound_missing().
 */
int outbound_again(struct journal *j, const struct dfsr_uid *uids, size_t n,
		   const struct version_vector *partner, struct outbound_skips *skips,
		   replica_update_fn fn, void *arg);

/**
 * outbound_backlog() - How many records @partner lacks (exact, one walk of the records).
 * @list_max: also visit the first @list_max of them through @fn (may be 0 / NULL), in UID
 *            order; a listing reads nothing from disk
 * Return: 0, the callback's value, -EIO, -ENOMEM.
 */
typedef int (*outbound_record_fn)(void *arg, const struct record *r);
int outbound_backlog(struct journal *j, const struct version_vector *partner, uint64_t *count,
		     size_t list_max, outbound_record_fn fn, void *arg);

/**
 * outbound_attrs_too_large() - Whether the extended attributes of the object @fd (an O_PATH
 * descriptor will do) exceed what a receiver accepts (REPLICA_XATTR_*, judged from their
 * sizes as the walks judge a directory): such a directory is not sent, nor is anything
 * below it (event 1401), until journal_resend_below() after it shrank.
 * Thread: any. Return: false also when they cannot be read.
 */
bool outbound_attrs_too_large(int fd);

/**
 * outbound_serve() - Open file version (@uid, @gvsn) for serving, if it is still the
 * current version of a live file: one staged already is opened (and pinned); else a file
 * of at most @mem_max bytes is read into memory (stage_memory()), a larger one staged on
 * disk (stage_file()) and opened. Either way the data read is checked against the
 * record's content digest.
 * @out: receives the open version (NULL on error)
 *
 * Ownership: the caller closes *@out with stage_version_close().
 * Return: 0; -ESTALE if that version is no longer current (the partner will receive the
 *         newer one); -EAGAIN if the file is open for writing or changed while it was read
 *         (retry later; event 4302 after a minute); -ENOENT if the staged version was
 *         removed (quota cleanup) before it could be opened; -EBADMSG if a staged file is
 *         damaged; -ENOSPC, -EIO, -ENOMEM.
 */
int outbound_serve(struct journal *j, struct stage *stage, const struct dfsr_uid *uid,
		   const struct version_gvsn *gvsn, uint64_t mem_max, struct stage_version **out);

#endif
