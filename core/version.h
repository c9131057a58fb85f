/*
 * version.h - GVSNs and version vectors (DESIGN.md, "Words").
 *
 * A GVSN is (database id, counter): the counter-th change made by that database. A version
 * vector maps database ids to the highest counter known; a record's vector says which
 * changes of that object it has seen, a database's vector (its knowledge) says which
 * changes of the whole folder it holds.
 *
 * Invariants of a struct version_vector: entries sorted by database id (bytewise), no two
 * entries with the same id, every counter > 0, no zero database id, at most
 * VERSION_VV_MAX entries. A missing entry means counter 0.
 *
 * Thread: no shared state; a vector is owned by one thread at a time.
 */
#ifndef DFSR_CORE_VERSION_H
#define DFSR_CORE_VERSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* Members that ever changed one folder; bounds every decoded vector. */
#define VERSION_VV_MAX 1024

struct version_gvsn {
	struct dfsr_uid db;
	uint64_t counter;
};

struct version_vector {
	struct version_gvsn *v; /* sorted by db */
	size_t n;
	size_t cap;
};

enum version_cmp {
	VERSION_EQUAL = 0,
	VERSION_DOMINATES = 1, /* a has seen everything b has, and more */
	VERSION_DOMINATED = 2, /* b has seen everything a has, and more */
	VERSION_CONCURRENT = 3 /* each has seen something the other has not */
};

/* Total order of GVSNs: by database id, then counter (tie-breaks only, not causality). */
int version_gvsn_cmp(const struct version_gvsn *a, const struct version_gvsn *b);

void version_vector_init(struct version_vector *vv);
/* Frees the entries; @vv is empty and reusable afterwards. NULL-safe. */
void version_vector_release(struct version_vector *vv);

/**
 * version_vector_copy() - Make @dst an exact copy of @src (previous contents dropped).
 * Return: 0 or -ENOMEM (then @dst is unchanged).
 */
int version_vector_copy(struct version_vector *dst, const struct version_vector *src);

/* The counter known for @db (0 if none). */
uint64_t version_vector_get(const struct version_vector *vv, const struct dfsr_uid *db);

/**
 * version_vector_raise() - Set @db's counter to max(current, @counter).
 * Return: 0, -EINVAL for a zero @db or @counter, -E2BIG past VERSION_VV_MAX entries,
 *         -ENOMEM.
 */
int version_vector_raise(struct version_vector *vv, const struct dfsr_uid *db, uint64_t counter);

/* Set @db's counter to min(current, @counter); an entry lowered to 0 is removed. */
void version_vector_lower(struct version_vector *vv, const struct dfsr_uid *db, uint64_t counter);

/**
 * version_vector_merge() - Raise every entry of @dst to the entries of @src (pointwise max).
 * Return: 0, -E2BIG, -ENOMEM (then @dst holds a partial merge, still valid).
 */
int version_vector_merge(struct version_vector *dst, const struct version_vector *src);

/* How @a relates to @b. */
enum version_cmp version_vector_compare(const struct version_vector *a,
					const struct version_vector *b);

/* True if @vv has seen @g (its counter for g->db is >= g->counter). */
bool version_vector_contains(const struct version_vector *vv, const struct version_gvsn *g);

/* True if the invariants above hold (decoders call it on untrusted input). */
bool version_vector_valid(const struct version_vector *vv);

#endif
