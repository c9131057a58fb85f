/*
 * htab.c - intrusive chained hash table (core/htab.h).
 *
 * Separate chaining over a power-of-two bucket array, with the node embedded in the element
 * so that an insert allocates nothing and a lookup is the caller's own loop over one chain.
 * Chains are singly linked (one pointer per element and table): removal walks the chain,
 * which at load factor 1 is short, and saves the back pointer every element would carry.
 * A doubling rehashes every node through the table's hash function into a new array; it is
 * the only place the table allocates, and when it cannot, the table carries on as it is.
 */
#include "core/htab.h"

#include <errno.h>
#include <stdlib.h>

int htab_init(struct htab *t, size_t nbuckets, htab_hash_fn hash)
{
	t->buckets = NULL;
	t->nbuckets = 0;
	t->count = 0;
	t->hash = hash;
	if (nbuckets == 0 || (nbuckets & (nbuckets - 1)) != 0)
		return -EINVAL;
	t->buckets = calloc(nbuckets, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	t->nbuckets = nbuckets;
	return 0;
}

void htab_release(struct htab *t, htab_visit_fn visit, void *arg)
{
	for (size_t b = 0; visit && b < t->nbuckets; b++) {
		struct htab_node *n = t->buckets[b];

		t->buckets[b] = NULL;
		while (n) {
			struct htab_node *next = n->next;

			n->next = NULL;
			visit(arg, n);
			n = next;
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = 0;
	t->count = 0;
}

/* Doubles the buckets; on ENOMEM (or a size that would overflow) keeps the old ones. */
static void grow(struct htab *t)
{
	struct htab_node **buckets;
	size_t n, mask;

	if (__builtin_mul_overflow(t->nbuckets, (size_t)2, &n))
		return;
	buckets = calloc(n, sizeof(*buckets));
	if (!buckets)
		return;
	mask = n - 1;
	for (size_t b = 0; b < t->nbuckets; b++) {
		struct htab_node *p = t->buckets[b];

		while (p) {
			struct htab_node *next = p->next;
			size_t i = t->hash(p) & mask;

			p->next = buckets[i];
			buckets[i] = p;
			p = next;
		}
	}
	free(t->buckets);
	t->buckets = buckets;
	t->nbuckets = n;
}

void htab_add(struct htab *t, struct htab_node *n)
{
	size_t i;

	if (t->count >= t->nbuckets)
		grow(t);
	i = t->hash(n) & (t->nbuckets - 1);
	n->next = t->buckets[i];
	t->buckets[i] = n;
	t->count++;
}

bool htab_del(struct htab *t, struct htab_node *n)
{
	struct htab_node **pp = &t->buckets[t->hash(n) & (t->nbuckets - 1)];

	while (*pp && *pp != n)
		pp = &(*pp)->next;
	if (!*pp)
		return false;
	*pp = n->next;
	n->next = NULL;
	t->count--;
	return true;
}
