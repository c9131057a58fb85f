/*
 * htab.h - a small intrusive chained hash table: the one behind the FUSE inode table
 * (fs/inode.c, by node id and by (st_dev, st_ino)) and the map of hard links
 * (core/linkmap.c, by (st_dev, st_ino) and by UID).
 *
 * Intrusive: the element embeds a struct htab_node per table it is in and is found again
 * with dfsr_container_of(); the table allocates nothing per insert, only its bucket array.
 * An element in two indexes simply embeds two nodes and is added to two tables.
 *
 * The table does not know keys. A lookup hashes the key itself and walks the chain that
 * htab_first() returns, comparing inline (the hot path pays no call):
 *
 *	for (struct htab_node *p = htab_first(&t, my_hash(key)); p; p = p->next) {
 *		struct elem *e = dfsr_container_of(p, struct elem, node);
 *
 *		if (e->key == key)
 *			return e;
 *	}
 *
 * The table calls its @hash function (htab_init()) only to find an element's own chain: to
 * remove it, and to move every element when the buckets double. That function must return,
 * for an element in the table, the value the lookups pass to htab_first() for its key, so
 * an element's key must not change while it is in the table (take it out, change it, put
 * it back).
 *
 * Invariants: nbuckets is a power of two, at least 1; count is the number of nodes in the
 * chains. Growth: htab_add() doubles the buckets first when count has reached nbuckets
 * (load factor 1); if that allocation fails the old buckets stay and the chains grow
 * longer, which is slower but still correct, and the next add tries again. The buckets
 * never shrink. Chains are singly linked: a lookup and an add are O(1) expected, a removal
 * walks its chain (O(1) expected), a doubling is O(count).
 *
 * Thread: none of its own; the owner serialises every call, lookups included (a doubling
 * frees the old bucket array).
 */
#ifndef DFSR_CORE_HTAB_H
#define DFSR_CORE_HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Embedded in the element, one per table it is in. */
struct htab_node {
	struct htab_node *next; /* chain of one bucket; NULL ends it */
};

/* The hash of the key of the element that embeds @n. */
typedef size_t (*htab_hash_fn)(const struct htab_node *n);

struct htab {
	struct htab_node **buckets; /* nbuckets chain heads; owned */
	size_t nbuckets;            /* a power of two */
	size_t count;               /* nodes in the table */
	htab_hash_fn hash;          /* immutable after htab_init() */
};

/* Called on every node by htab_release(); may free the element. */
typedef void (*htab_visit_fn)(void *arg, struct htab_node *n);

/**
 * htab_init() - An empty table.
 * @t:        storage the caller provides
 * @nbuckets: initial buckets, a power of two (growth doubles from there)
 * @hash:     the hash of a node's key (see above)
 *
 * Ownership: release with htab_release().
 * Return: 0, -EINVAL if @nbuckets is not a power of two, -ENOMEM (@t is then empty, and
 *         htab_release() on it is a no-op).
 */
int htab_init(struct htab *t, size_t nbuckets, htab_hash_fn hash);

/**
 * htab_release() - Empty the table and free its buckets.
 * @visit: called once on every node (unlinked already, so it may free the element), or
 *         NULL to leave the elements alone
 * @arg:   passed to @visit
 *
 * @t is empty afterwards and may be set up again with htab_init().
 */
void htab_release(struct htab *t, htab_visit_fn visit, void *arg);

/**
 * htab_add() - Put @n in the table (doubling the buckets first when full, see above).
 * @n: a node not in @t; its element's key must hash as the lookups will hash it
 *
 * Ownership: @t links @n until htab_del() or htab_release(); the element stays the
 * caller's. Never fails: a failed doubling leaves longer chains.
 */
void htab_add(struct htab *t, struct htab_node *n);

/**
 * htab_del() - Take @n out of the table.
 *
 * Return: true if @n was in it (a node found in no chain is left alone).
 */
bool htab_del(struct htab *t, struct htab_node *n);

/* The chain of the elements whose key hashes to @hash (and of others): walk it with ->next
 * and compare the keys. NULL if the chain is empty. */
static inline struct htab_node *htab_first(const struct htab *t, size_t hash)
{
	return t->buckets[hash & (t->nbuckets - 1)];
}

/*
 * A hash of two 64-bit words (multiplicative, with the high bits folded down, since the
 * table uses the low ones), such as a backing object's (st_dev, st_ino).
 */
static inline size_t htab_hash_u64x2(uint64_t a, uint64_t b)
{
	uint64_t h = b * 0x9E3779B97F4A7C15ull;

	h ^= a * 0xC2B2AE3D27D4EB4Full;
	h ^= h >> 29;
	return (size_t)h;
}

#endif
