/*
 * linkmap.c - (st_dev, st_ino) -> UIDs of the names of hard-linked objects (core/linkmap.h).
 *
 * Two intrusive hash tables (core/htab.h) index the same entries, by key (to answer "which
 * names has this object") and by UID (to move or drop one name's entry when its record
 * changes). Both hold every entry, so they double together when the entry count reaches
 * the bucket count; if that allocation fails the chains grow longer, which is slower but
 * still correct. Only hard-linked objects are
 * entered (the journal skips st_nlink == 1), so the map stays small next to the records:
 * one entry is about 64 bytes with the allocator's overhead, and the bound the journal
 * passes (JOURNAL_LINKS_MAX) caps it at a few MiB.
 */
#include "core/linkmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/htab.h"

#define LINKMAP_INITIAL_BUCKETS 64 /* power of two */

struct linkmap_entry {
	uint64_t dev;
	uint64_t ino;
	struct dfsr_uid uid;
	struct htab_node key_node; /* in by_key */
	struct htab_node uid_node; /* in by_uid */
};

struct linkmap {
	struct htab by_key; /* hash of (dev, ino) */
	struct htab by_uid; /* hash of uid; its count is the entry count */
	size_t max;
};

static size_t key_hash(const struct htab_node *n)
{
	const struct linkmap_entry *e = dfsr_container_of_const(n, struct linkmap_entry, key_node);

	return htab_hash_u64x2(e->dev, e->ino);
}

/* UIDs are random: their first bytes spread evenly on their own. */
static size_t uid_hash_of(const struct dfsr_uid *uid)
{
	uint64_t h;

	memcpy(&h, uid->b, sizeof(h));
	return (size_t)h;
}

static size_t uid_hash(const struct htab_node *n)
{
	return uid_hash_of(&dfsr_container_of_const(n, struct linkmap_entry, uid_node)->uid);
}

struct linkmap *linkmap_new(size_t max)
{
	struct linkmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->max = max;
	if (htab_init(&m->by_key, LINKMAP_INITIAL_BUCKETS, key_hash) < 0 ||
	    htab_init(&m->by_uid, LINKMAP_INITIAL_BUCKETS, uid_hash) < 0) {
		linkmap_free(m);
		return NULL;
	}
	return m;
}

static void free_entry(void *arg, struct htab_node *n)
{
	(void)arg;
	free(dfsr_container_of(n, struct linkmap_entry, uid_node));
}

void linkmap_free(struct linkmap *m)
{
	if (!m)
		return;
	htab_release(&m->by_key, NULL, NULL);
	htab_release(&m->by_uid, free_entry, NULL);
	free(m);
}

static struct linkmap_entry *find_uid(const struct linkmap *m, const struct dfsr_uid *uid)
{
	struct htab_node *p;

	for (p = htab_first(&m->by_uid, uid_hash_of(uid)); p; p = p->next) {
		struct linkmap_entry *e = dfsr_container_of(p, struct linkmap_entry, uid_node);

		if (dfsr_uid_equal(&e->uid, uid))
			return e;
	}
	return NULL;
}

static void drop(struct linkmap *m, struct linkmap_entry *e)
{
	htab_del(&m->by_key, &e->key_node);
	htab_del(&m->by_uid, &e->uid_node);
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
		htab_del(&m->by_key, &e->key_node);
		e->dev = dev;
		e->ino = ino;
		htab_add(&m->by_key, &e->key_node);
		return 0;
	}
	if (m->by_uid.count >= m->max)
		return -ENOSPC;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->dev = dev;
	e->ino = ino;
	e->uid = *uid;
	htab_add(&m->by_key, &e->key_node);
	htab_add(&m->by_uid, &e->uid_node);
	return 0;
}

size_t linkmap_get(const struct linkmap *m, uint64_t dev, uint64_t ino, struct dfsr_uid *out,
		   size_t max)
{
	size_t n = 0;

	for (struct htab_node *p = htab_first(&m->by_key, htab_hash_u64x2(dev, ino)); p;
	     p = p->next) {
		const struct linkmap_entry *e = dfsr_container_of(p, struct linkmap_entry,
								  key_node);

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
	return m->by_uid.count;
}
