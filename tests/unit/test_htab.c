/*
 * test_htab.c - core/htab.c: the intrusive chained hash table: insert, lookup, remove,
 * doubling at load factor 1 across many sizes, removals between the doublings, chains of
 * keys that all collide, release visiting every node once, and the pair hash.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/htab.h"
#include "core/util.h"

#define NELEM 5000 /* enough for 10 doublings from 4 buckets */

struct elem {
	uint64_t key;
	unsigned visits;
	struct htab_node node;
};

static size_t key_hash(uint64_t key)
{
	return (size_t)key;
}

static size_t elem_hash(const struct htab_node *n)
{
	return key_hash(dfsr_container_of_const(n, struct elem, node)->key);
}

/* Every key in one chain. */
static size_t same_hash(const struct htab_node *n)
{
	(void)n;
	return 0;
}

static struct elem *find(const struct htab *t, size_t hash, uint64_t key)
{
	for (struct htab_node *p = htab_first(t, hash); p; p = p->next) {
		struct elem *e = dfsr_container_of(p, struct elem, node);

		if (e->key == key)
			return e;
	}
	return NULL;
}

static size_t chain_len(const struct htab *t, size_t b)
{
	size_t n = 0;

	for (struct htab_node *p = t->buckets[b]; p; p = p->next)
		n++;
	return n;
}

/* The buckets hold exactly t->count nodes. */
static void assert_count_matches(const struct htab *t)
{
	size_t n = 0;

	for (size_t b = 0; b < t->nbuckets; b++)
		n += chain_len(t, b);
	assert_int_equal(n, t->count);
}

static struct elem *elems;

static int setup(void **state)
{
	(void)state;
	elems = calloc(NELEM, sizeof(*elems));
	if (!elems)
		return -1;
	for (size_t i = 0; i < NELEM; i++)
		elems[i].key = i * 7 + 3;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(elems);
	elems = NULL;
	return 0;
}

static void init_checks_size(void **state)
{
	struct htab t;

	(void)state;
	assert_int_equal(htab_init(&t, 0, elem_hash), -EINVAL);
	htab_release(&t, NULL, NULL); /* no-op on a failed init */
	assert_int_equal(htab_init(&t, 12, elem_hash), -EINVAL);
	assert_int_equal(htab_init(&t, 1, elem_hash), 0);
	assert_int_equal(t.nbuckets, 1);
	assert_int_equal(t.count, 0);
	assert_null(htab_first(&t, 0));
	htab_release(&t, NULL, NULL);
	assert_null(t.buckets);
	assert_int_equal(t.nbuckets, 0);
}

static void add_find_del(void **state)
{
	struct elem *a = &elems[0], *b = &elems[1], *c = &elems[2];
	struct htab t;

	(void)state;
	assert_int_equal(htab_init(&t, 8, elem_hash), 0);
	assert_null(find(&t, key_hash(a->key), a->key));
	htab_add(&t, &a->node);
	htab_add(&t, &b->node);
	htab_add(&t, &c->node);
	assert_int_equal(t.count, 3);
	assert_ptr_equal(find(&t, key_hash(a->key), a->key), a);
	assert_ptr_equal(find(&t, key_hash(b->key), b->key), b);
	assert_ptr_equal(find(&t, key_hash(c->key), c->key), c);
	assert_null(find(&t, key_hash(999), 999));

	assert_true(htab_del(&t, &b->node));
	assert_int_equal(t.count, 2);
	assert_null(find(&t, key_hash(b->key), b->key));
	assert_false(htab_del(&t, &b->node)); /* not in it any more: left alone */
	assert_int_equal(t.count, 2);
	assert_ptr_equal(find(&t, key_hash(a->key), a->key), a);
	assert_ptr_equal(find(&t, key_hash(c->key), c->key), c);

	/* back in after a removal */
	htab_add(&t, &b->node);
	assert_ptr_equal(find(&t, key_hash(b->key), b->key), b);
	assert_int_equal(t.count, 3);
	assert_count_matches(&t);
	htab_release(&t, NULL, NULL);
}

/* Load factor 1: the add that finds count == nbuckets doubles first. */
static void doubles_at_load_factor_one(void **state)
{
	size_t expect = 4, doublings = 0;
	struct htab t;

	(void)state;
	assert_int_equal(htab_init(&t, 4, elem_hash), 0);
	for (size_t i = 0; i < NELEM; i++) {
		if (t.count == t.nbuckets) {
			expect *= 2;
			doublings++;
		}
		htab_add(&t, &elems[i].node);
		assert_int_equal(t.nbuckets, expect);
		if ((i & (i + 1)) == 0 ||
		    i == NELEM - 1) { /* after each doubling, and at the end */
			for (size_t k = 0; k <= i; k++)
				assert_ptr_equal(find(&t, key_hash(elems[k].key), elems[k].key),
						 &elems[k]);
			assert_count_matches(&t);
		}
	}
	assert_true(doublings >= 10);
	assert_int_equal(t.count, NELEM);
	htab_release(&t, NULL, NULL);
}

/* Removals between the doublings: whatever was removed stays gone after the rehash, and
 * what is left is all found. (Growth runs inside htab_add(), so nothing can be removed in
 * the middle of one.) */
static void removal_across_growth(void **state)
{
	bool *in = calloc(NELEM, sizeof(*in));
	struct htab t;
	size_t n = 0;

	(void)state;
	assert_non_null(in);
	assert_int_equal(htab_init(&t, 2, elem_hash), 0);
	for (size_t i = 0; i < NELEM; i++) {
		size_t nb = t.nbuckets;

		htab_add(&t, &elems[i].node);
		in[i] = true;
		n++;
		if (i % 3 == 2) { /* drop an older one and the newest */
			assert_true(htab_del(&t, &elems[i / 2].node) == in[i / 2]);
			n -= in[i / 2];
			in[i / 2] = false;
			assert_true(htab_del(&t, &elems[i].node));
			in[i] = false;
			n--;
		}
		assert_int_equal(t.count, n);
		if (t.nbuckets == nb)
			continue;
		for (size_t k = 0; k <= i; k++) {
			struct elem *e = find(&t, key_hash(elems[k].key), elems[k].key);

			assert_ptr_equal(e, in[k] ? &elems[k] : NULL);
		}
		assert_count_matches(&t);
	}
	/* empty it: every bucket ends empty, and the buckets never shrink */
	for (size_t k = 0; k < NELEM; k++)
		if (in[k])
			assert_true(htab_del(&t, &elems[k].node));
	assert_int_equal(t.count, 0);
	assert_count_matches(&t);
	assert_true(t.nbuckets >= 2048);
	htab_release(&t, NULL, NULL);
	free(in);
}

/* Every key collides: one chain of all of them, through every doubling. */
static void colliding_keys(void **state)
{
	const size_t n = 1000;
	struct htab t;

	(void)state;
	assert_int_equal(htab_init(&t, 16, same_hash), 0);
	for (size_t i = 0; i < n; i++)
		htab_add(&t, &elems[i].node);
	assert_int_equal(t.nbuckets, 1024);
	assert_int_equal(chain_len(&t, 0), n);
	for (size_t i = 0; i < n; i++)
		assert_ptr_equal(find(&t, 0, elems[i].key), &elems[i]);
	/* out of the head, the tail and the middle of the chain */
	assert_true(htab_del(&t, &elems[n - 1].node)); /* the head: added last */
	assert_true(htab_del(&t, &elems[0].node));     /* the tail */
	assert_true(htab_del(&t, &elems[n / 2].node));
	assert_false(htab_del(&t, &elems[n / 2].node));
	assert_int_equal(chain_len(&t, 0), n - 3);
	for (size_t i = 0; i < n; i++) {
		bool gone = i == 0 || i == n / 2 || i == n - 1;

		assert_ptr_equal(find(&t, 0, elems[i].key), gone ? NULL : &elems[i]);
	}
	htab_release(&t, NULL, NULL);
}

/* Keys that differ only above the bucket bits share a chain under an identity hash. */
static void colliding_low_bits(void **state)
{
	struct htab t;

	(void)state;
	assert_int_equal(htab_init(&t, 64, elem_hash), 0);
	for (size_t i = 0; i < 500; i++) {
		elems[i].key = (uint64_t)i << 32 | 5;
		htab_add(&t, &elems[i].node);
	}
	assert_int_equal(chain_len(&t, 5), 500);
	for (size_t i = 0; i < 500; i += 7) {
		assert_ptr_equal(find(&t, key_hash(elems[i].key), elems[i].key), &elems[i]);
		assert_true(htab_del(&t, &elems[i].node));
		assert_null(find(&t, key_hash(elems[i].key), elems[i].key));
	}
	assert_count_matches(&t);
	htab_release(&t, NULL, NULL);
}

static void visit(void *arg, struct htab_node *n)
{
	struct elem *e = dfsr_container_of(n, struct elem, node);

	assert_null(n->next); /* unlinked before the visit */
	e->visits++;
	(*(size_t *)arg)++;
}

static void release_visits_each_once(void **state)
{
	size_t visited = 0;
	struct htab t;

	(void)state;
	assert_int_equal(htab_init(&t, 4, elem_hash), 0);
	for (size_t i = 0; i < 300; i++)
		htab_add(&t, &elems[i].node);
	assert_true(htab_del(&t, &elems[7].node));
	htab_release(&t, visit, &visited);
	assert_int_equal(visited, 299);
	for (size_t i = 0; i < 300; i++)
		assert_int_equal(elems[i].visits, i == 7 ? 0 : 1);
	assert_null(t.buckets);
	assert_int_equal(t.count, 0);
}

/* Release may free the elements. */
static void free_elem(void *arg, struct htab_node *n)
{
	(void)arg;
	free(dfsr_container_of(n, struct elem, node));
}

static void release_frees(void **state)
{
	struct htab t;

	(void)state;
	assert_int_equal(htab_init(&t, 4, elem_hash), 0);
	for (uint64_t i = 0; i < 100; i++) {
		struct elem *e = calloc(1, sizeof(*e));

		assert_non_null(e);
		e->key = i;
		htab_add(&t, &e->node);
	}
	htab_release(&t, free_elem, NULL); /* ASan reports a leak or a double free */
	assert_int_equal(t.count, 0);
}

/* (st_dev, st_ino) of one directory's files: sequential inode numbers spread over the
 * buckets, and the two words are not interchangeable. */
static void pair_hash_spreads(void **state)
{
	const size_t nb = 1024;
	bool *used = calloc(nb, sizeof(*used));
	size_t distinct = 0;

	(void)state;
	assert_non_null(used);
	for (uint64_t ino = 1000; ino < 1000 + nb; ino++) {
		size_t b = htab_hash_u64x2(2049, ino) & (nb - 1);

		distinct += !used[b];
		used[b] = true;
	}
	assert_true(distinct >= nb / 2);
	assert_true(htab_hash_u64x2(1, 2) != htab_hash_u64x2(2, 1));
	assert_int_equal(htab_hash_u64x2(7, 9), htab_hash_u64x2(7, 9));
	free(used);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(init_checks_size, setup, teardown),
		cmocka_unit_test_setup_teardown(add_find_del, setup, teardown),
		cmocka_unit_test_setup_teardown(doubles_at_load_factor_one, setup, teardown),
		cmocka_unit_test_setup_teardown(removal_across_growth, setup, teardown),
		cmocka_unit_test_setup_teardown(colliding_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(colliding_low_bits, setup, teardown),
		cmocka_unit_test_setup_teardown(release_visits_each_once, setup, teardown),
		cmocka_unit_test_setup_teardown(release_frees, setup, teardown),
		cmocka_unit_test_setup_teardown(pair_hash_spreads, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
