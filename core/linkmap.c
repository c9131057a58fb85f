/*
 * linkmap.c - (st_dev, st_ino) -> UIDs of the names of hard-linked objects (core/linkmap.h).
 *
 * Two chained hash tables index the same entries, by key (to answer "which names has this
 * object") and by UID (to move or drop one name's entry when its record changes). Both
 * double together when the entry count reaches the bucket count; if that allocation fails
 * the chains grow longer, which is slower but still correct. Only hard-linked objects are
 * entered (the journal skips st_nlink == 1), so the map stays small next to the records:
 * one entry is about 64 bytes with the allocator's overhead, and the bound the journal
 * passes (JOURNAL_LINKS_MAX) caps it at a few MiB.
 */
#include "core/linkmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LINKMAP_INITIAL_BUCKETS 64 /* power of two */

struct linkmap_entry {
	uint64_t dev;
	uint64_t ino;
	struct dfsr_uid uid;
	struct linkmap_entry *key_next; /* chain in by_key */
	struct linkmap_entry *uid_next; /* chain in by_uid */
};

struct linkmap {
	struct linkmap_entry **by_key;
	struct linkmap_entry **by_uid;
	size_t nbuckets; /* a power of two, both tables */
	size_t count;
	size_t max;
};

static size_t key_hash(uint64_t dev, uint64_t ino)
{
	uint64_t h = ino * 0x9E3779B97F4A7C15ull;

	h ^= dev * 0xC2B2AE3D27D4EB4Full;
	h ^= h >> 29;
	return (size_t)h;
}

/* UIDs are random: their first bytes spread evenly on their own. */
static size_t uid_hash(const struct dfsr_uid *uid)
{
	uint64_t h;

	memcpy(&h, uid->b, sizeof(h));
	return (size_t)h;
}

struct linkmap *linkmap_new(size_t max)
{
	struct linkmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->nbuckets = LINKMAP_INITIAL_BUCKETS;
	m->max = max;
	m->by_key = calloc(m->nbuckets, sizeof(*m->by_key));
	m->by_uid = calloc(m->nbuckets, sizeof(*m->by_uid));
	if (!m->by_key || !m->by_uid) {
		linkmap_free(m);
		return NULL;
	}
	return m;
}

void linkmap_free(struct linkmap *m)
{
	if (!m)
		return;
	for (size_t b = 0; m->by_uid && b < m->nbuckets; b++) {
		struct linkmap_entry *e = m->by_uid[b];

		while (e) {
			struct linkmap_entry *next = e->uid_next;

			free(e);
			e = next;
		}
	}
	free(m->by_key);
	free(m->by_uid);
	free(m);
}

static void link_in(struct linkmap *m, struct linkmap_entry *e)
{
	size_t mask = m->nbuckets - 1;
	size_t k = key_hash(e->dev, e->ino) & mask, u = uid_hash(&e->uid) & mask;

	e->key_next = m->by_key[k];
	m->by_key[k] = e;
	e->uid_next = m->by_uid[u];
	m->by_uid[u] = e;
}

static void unlink_key(struct linkmap *m, struct linkmap_entry *e)
{
	struct linkmap_entry **pp = &m->by_key[key_hash(e->dev, e->ino) & (m->nbuckets - 1)];

	while (*pp && *pp != e)
		pp = &(*pp)->key_next;
	if (*pp)
		*pp = e->key_next;
}

static void unlink_uid(struct linkmap *m, struct linkmap_entry *e)
{
	struct linkmap_entry **pp = &m->by_uid[uid_hash(&e->uid) & (m->nbuckets - 1)];

	while (*pp && *pp != e)
		pp = &(*pp)->uid_next;
	if (*pp)
		*pp = e->uid_next;
}

/* Doubles both tables; on ENOMEM keeps the old ones. */
static void grow(struct linkmap *m)
{
	size_t n, old = m->nbuckets;
	struct linkmap_entry **by_key, **by_uid, *all = NULL;

	if (__builtin_mul_overflow(old, (size_t)2, &n))
		return;
	by_key = calloc(n, sizeof(*by_key));
	by_uid = calloc(n, sizeof(*by_uid));
	if (!by_key || !by_uid) {
		free(by_key);
		free(by_uid);
		return;
	}
	/* Collect every entry through the UID chains (reusing uid_next as a list link). */
	for (size_t b = 0; b < old; b++) {
		struct linkmap_entry *e = m->by_uid[b];

		while (e) {
			struct linkmap_entry *next = e->uid_next;

			e->uid_next = all;
			all = e;
			e = next;
		}
	}
	free(m->by_key);
	free(m->by_uid);
	m->by_key = by_key;
	m->by_uid = by_uid;
	m->nbuckets = n;
	while (all) {
		struct linkmap_entry *next = all->uid_next;

		link_in(m, all);
		all = next;
	}
}

static struct linkmap_entry *find_uid(const struct linkmap *m, const struct dfsr_uid *uid)
{
	struct linkmap_entry *e = m->by_uid[uid_hash(uid) & (m->nbuckets - 1)];

	while (e && !dfsr_uid_equal(&e->uid, uid))
		e = e->uid_next;
	return e;
}

static void drop(struct linkmap *m, struct linkmap_entry *e)
{
	unlink_key(m, e);
	unlink_uid(m, e);
	m->count--;
	free(e);
}

int linkmap_set(struct linkmap *m, uint64_t dev, uint64_t ino, const struct dfsr_uid *uid)
{
	struct linkmap_entry *e;

	if (dfsr_uid_is_zero(uid))
		return 0;
	e = find_uid(m, uid);
	if (e && e->dev == dev && e->ino == ino)
		return 0;
	if (e) { /* the name now names another object: move it */
		unlink_key(m, e);
		e->dev = dev;
		e->ino = ino;
		e->key_next = m->by_key[key_hash(dev, ino) & (m->nbuckets - 1)];
		m->by_key[key_hash(dev, ino) & (m->nbuckets - 1)] = e;
		return 0;
	}
	if (m->count >= m->max)
		return -ENOSPC;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->dev = dev;
	e->ino = ino;
	e->uid = *uid;
	if (m->count >= m->nbuckets)
		grow(m);
	link_in(m, e);
	m->count++;
	return 0;
}

size_t linkmap_get(const struct linkmap *m, uint64_t dev, uint64_t ino, struct dfsr_uid *out,
		   size_t max)
{
	const struct linkmap_entry *e = m->by_key[key_hash(dev, ino) & (m->nbuckets - 1)];
	size_t n = 0;

	for (; e; e = e->key_next) {
		if (e->dev != dev || e->ino != ino)
			continue;
		if (n < max)
			out[n] = e->uid;
		n++;
	}
	return n;
}

void linkmap_del(struct linkmap *m, uint64_t dev, uint64_t ino, const struct dfsr_uid *uid)
{
	struct linkmap_entry *e = find_uid(m, uid);

	if (e && e->dev == dev && e->ino == ino)
		drop(m, e);
}

void linkmap_forget(struct linkmap *m, const struct dfsr_uid *uid)
{
	struct linkmap_entry *e = find_uid(m, uid);

	if (e)
		drop(m, e);
}

size_t linkmap_count(const struct linkmap *m)
{
	return m->count;
}
