/*
 * linkmap.h - which records name one hard-linked object: an in-memory multimap from a
 * backing object's (st_dev, st_ino) to the UIDs of its names.
 *
 * Each name of a hard-linked file is its own record, and a change of the file (data, mode,
 * owner, xattrs) must be journaled on every one of them. The filesystem knows the names
 * the kernel looked up; the journal keeps this map (core/journal.h, journal_link_note() and
 * journal_link_others()) so that the other names can be found after the kernel forgot the
 * inode or the daemon restarted. The map is a hint, never the truth: inode numbers are
 * recycled after deletes and names change behind the mount, so every UID read from it is
 * checked against the local path by the journal before use.
 *
 * Invariants: each UID is in the map at most once (setting it under another key moves it);
 * at most @max entries (linkmap_new()); no zero UID. Nothing is persisted: every start's
 * consistency scan registers the hard-linked objects it finds.
 *
 * Thread: none of its own; the owner serialises every call (the journal does with a leaf
 * mutex of its own).
 */
#ifndef DFSR_CORE_LINKMAP_H
#define DFSR_CORE_LINKMAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

struct linkmap;

/**
 * linkmap_new() - An empty map.
 * @max: the most entries it will hold (linkmap_set() refuses more)
 *
 * Ownership: free with linkmap_free(), which is NULL-safe.
 * Return: the map, or NULL (-ENOMEM).
 */
struct linkmap *linkmap_new(size_t max);
void linkmap_free(struct linkmap *m);

/**
 * linkmap_set() - Record that @uid names the object (@dev, @ino). A UID already in the map
 * under another key is moved (one UID names one object).
 *
 * Return: 0 (also for a zero @uid, which is not stored), -ENOSPC when the map holds @max
 *         entries already, -ENOMEM.
 */
int linkmap_set(struct linkmap *m, uint64_t dev, uint64_t ino, const struct dfsr_uid *uid);

/**
 * linkmap_get() - The UIDs recorded for (@dev, @ino).
 * @out: receives up to @max of them, in no particular order
 *
 * Return: how many are recorded (may exceed @max; only @max are written).
 */
size_t linkmap_get(const struct linkmap *m, uint64_t dev, uint64_t ino, struct dfsr_uid *out,
		   size_t max);

/* Drop the entry (@dev, @ino, @uid) if there is one (a UID under another key stays). */
void linkmap_del(struct linkmap *m, uint64_t dev, uint64_t ino, const struct dfsr_uid *uid);

/* Drop @uid's entry, whatever its key (its record became a tombstone). */
void linkmap_forget(struct linkmap *m, const struct dfsr_uid *uid);

/* Entries held. */
size_t linkmap_count(const struct linkmap *m);

#endif
