/*
 * version.c - GVSN ordering and version-vector algebra.
 *
 * Vectors are small sorted arrays (one entry per database that ever changed the folder,
 * so a handful in practice and at most VERSION_VV_MAX), which keeps get a binary search,
 * and compare and merge one linear pass over both sides. Nothing here allocates except
 * raise/merge/copy when an entry is added, and those leave the vector valid on failure.
 */
#include "core/version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int version_gvsn_cmp(const struct version_gvsn *a, const struct version_gvsn *b)
{
	int c = dfsr_uid_cmp(&a->db, &b->db);

	if (c)
		return c;
	if (a->counter != b->counter)
		return a->counter < b->counter ? -1 : 1;
	return 0;
}

void version_vector_init(struct version_vector *vv)
{
	vv->v = NULL;
	vv->n = 0;
	vv->cap = 0;
}

void version_vector_release(struct version_vector *vv)
{
	if (!vv)
		return;
	free(vv->v);
	version_vector_init(vv);
}

static int reserve(struct version_vector *vv, size_t want)
{
	struct version_gvsn *p;
	size_t cap;

	if (want <= vv->cap)
		return 0;
	if (want > VERSION_VV_MAX)
		return -E2BIG;
	cap = vv->cap ? vv->cap * 2 : 4;
	if (cap < want)
		cap = want;
	if (cap > VERSION_VV_MAX)
		cap = VERSION_VV_MAX;
	p = realloc(vv->v, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	vv->v = p;
	vv->cap = cap;
	return 0;
}

int version_vector_copy(struct version_vector *dst, const struct version_vector *src)
{
	struct version_gvsn *p = NULL;

	if (dst == src)
		return 0;
	if (src->n) {
		p = malloc(src->n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memcpy(p, src->v, src->n * sizeof(*p));
	}
	free(dst->v);
	dst->v = p;
	dst->n = src->n;
	dst->cap = src->n;
	return 0;
}

/* Index of @db, or of where it would be inserted; *found says which. */
static size_t find(const struct version_vector *vv, const struct dfsr_uid *db, bool *found)
{
	size_t lo = 0, hi = vv->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = dfsr_uid_cmp(&vv->v[mid].db, db);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

uint64_t version_vector_get(const struct version_vector *vv, const struct dfsr_uid *db)
{
	bool found;
	size_t i = find(vv, db, &found);

	return found ? vv->v[i].counter : 0;
}

int version_vector_raise(struct version_vector *vv, const struct dfsr_uid *db, uint64_t counter)
{
	bool found;
	size_t i;
	int rc;

	if (counter == 0 || dfsr_uid_is_zero(db))
		return -EINVAL;
	i = find(vv, db, &found);
	if (found) {
		if (vv->v[i].counter < counter)
			vv->v[i].counter = counter;
		return 0;
	}
	rc = reserve(vv, vv->n + 1);
	if (rc < 0)
		return rc;
	memmove(&vv->v[i + 1], &vv->v[i], (vv->n - i) * sizeof(vv->v[0]));
	vv->v[i].db = *db;
	vv->v[i].counter = counter;
	vv->n++;
	return 0;
}

int version_vector_merge(struct version_vector *dst, const struct version_vector *src)
{
	for (size_t i = 0; i < src->n; i++) {
		int rc = version_vector_raise(dst, &src->v[i].db, src->v[i].counter);

		if (rc < 0)
			return rc;
	}
	return 0;
}

enum version_cmp version_vector_compare(const struct version_vector *a,
					const struct version_vector *b)
{
	bool a_more = false, b_more = false;
	size_t i = 0, k = 0;

	while (i < a->n || k < b->n) {
		int c;

		if (i == a->n)
			c = 1;
		else if (k == b->n)
			c = -1;
		else
			c = dfsr_uid_cmp(&a->v[i].db, &b->v[k].db);
		if (c < 0) {
			a_more = true; /* b has 0 for this id; a's counters are > 0 */
			i++;
		} else if (c > 0) {
			b_more = true;
			k++;
		} else {
			if (a->v[i].counter > b->v[k].counter)
				a_more = true;
			else if (a->v[i].counter < b->v[k].counter)
				b_more = true;
			i++;
			k++;
		}
	}
	if (a_more && b_more)
		return VERSION_CONCURRENT;
	if (a_more)
		return VERSION_DOMINATES;
	if (b_more)
		return VERSION_DOMINATED;
	return VERSION_EQUAL;
}

bool version_vector_contains(const struct version_vector *vv, const struct version_gvsn *g)
{
	return g->counter <= version_vector_get(vv, &g->db);
}

bool version_vector_valid(const struct version_vector *vv)
{
	if (vv->n > VERSION_VV_MAX)
		return false;
	for (size_t i = 0; i < vv->n; i++) {
		if (vv->v[i].counter == 0 || dfsr_uid_is_zero(&vv->v[i].db))
			return false;
		if (i && dfsr_uid_cmp(&vv->v[i - 1].db, &vv->v[i].db) >= 0)
			return false;
	}
	return true;
}

void version_vector_lower(struct version_vector *vv, const struct dfsr_uid *db, uint64_t counter)
{
	for (size_t i = 0; i < vv->n; i++) {
		if (!dfsr_uid_equal(&vv->v[i].db, db))
			continue;
		if (counter >= vv->v[i].counter)
			return;
		if (counter) {
			vv->v[i].counter = counter;
			return;
		}
		memmove(&vv->v[i], &vv->v[i + 1], (vv->n - i - 1) * sizeof(vv->v[0]));
		vv->n--;
		return;
	}
}
