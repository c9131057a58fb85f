/*
 * record.c - encoding and strict decoding of struct record.
 *
 * protobuf-c does the framing; everything else is ours. Decoding first bounds the input
 * size (so a hostile length cannot make protobuf-c allocate much), unpacks, then checks
 * every field against the invariants of core/record.h before copying it into a struct
 * record. A record that fails any check is -EBADMSG as a whole: no partly filled output.
 * Names travel as protobuf bytes, not strings, because Linux names need not be UTF-8;
 * the check refuses embedded NUL, '/', "." and "..".
 */
#include "core/record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/dfsr.pb-c.h"

void record_init(struct record *r)
{
	memset(r, 0, sizeof(*r));
	version_vector_init(&r->vv);
	version_vector_init(&r->origin);
}

void record_release(struct record *r)
{
	if (!r)
		return;
	version_vector_release(&r->vv);
	version_vector_release(&r->origin);
	record_init(r);
}

int record_copy(struct record *dst, const struct record *src)
{
	struct version_vector vv, origin;
	int rc;

	if (dst == src)
		return 0;
	version_vector_init(&vv);
	version_vector_init(&origin);
	rc = version_vector_copy(&vv, &src->vv);
	if (rc == 0)
		rc = version_vector_copy(&origin, &src->origin);
	if (rc < 0) {
		version_vector_release(&vv);
		return rc;
	}
	version_vector_release(&dst->vv);
	version_vector_release(&dst->origin);
	*dst = *src;
	dst->vv = vv;
	dst->origin = origin;
	return 0;
}

static bool name_bytes_valid(const uint8_t *p, size_t len)
{
	if (len == 0 || len > RECORD_NAME_MAX)
		return false;
	if (memchr(p, '/', len) || memchr(p, '\0', len))
		return false;
	if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
		return false;
	return true;
}

bool record_name_valid(const char *name)
{
	size_t len = strnlen(name, RECORD_NAME_MAX + 1);

	return name_bytes_valid((const uint8_t *)name, len);
}

char record_type_of(uint32_t st_mode)
{
	switch (st_mode & S_IFMT) {
	case S_IFREG:
		return RECORD_FILE;
	case S_IFDIR:
		return RECORD_DIR;
	case S_IFLNK:
		return RECORD_LINK;
	default:
		return 0;
	}
}

static bool type_valid(uint32_t t)
{
	return t == RECORD_FILE || t == RECORD_DIR || t == RECORD_LINK;
}

static bool record_valid(const struct record *r)
{
	if (dfsr_uid_is_zero(&r->uid) || dfsr_uid_is_zero(&r->parent))
		return false;
	if (!record_name_valid(r->name) || !type_valid((uint32_t)(unsigned char)r->type))
		return false;
	if (dfsr_uid_is_zero(&r->gvsn.db) || r->gvsn.counter == 0)
		return false;
	if (!version_vector_valid(&r->vv) || !version_vector_contains(&r->vv, &r->gvsn))
		return false;
	if (r->origin.n) {
		enum version_cmp c = version_vector_compare(&r->origin, &r->vv);

		if (!version_vector_valid(&r->origin) ||
		    !version_vector_contains(&r->origin, &r->gvsn) ||
		    (c != VERSION_EQUAL && c != VERSION_DOMINATED))
			return false;
	}
	return (r->mode & ~07777u) == 0;
}

static ProtobufCBinaryData bin(const void *p, size_t len)
{
	ProtobufCBinaryData b = { .len = len, .data = (uint8_t *)(uintptr_t)p };

	return b;
}

/* The entries of @vv into @ent/@ptr (room for vv->n each). */
static void vv_to(const struct version_vector *vv, Dfsr__Gvsn *ent, Dfsr__Gvsn **ptr)
{
	for (size_t i = 0; i < vv->n; i++) {
		dfsr__gvsn__init(&ent[i]);
		ent[i].db = bin(vv->v[i].db.b, DFSR_UID_LEN);
		ent[i].counter = vv->v[i].counter;
		ptr[i] = &ent[i];
	}
}

int record_encode(const struct record *r, struct dfsr_buf *out)
{
	Dfsr__Record m = DFSR__RECORD__INIT;
	Dfsr__Gvsn g = DFSR__GVSN__INIT;
	Dfsr__Gvsn *ent = NULL, **ptr = NULL;
	size_t len, n = r->vv.n + r->origin.n;
	uint8_t *tmp;
	int rc = 0;

	if (!record_valid(r))
		return -EINVAL;
	if (n) {
		ent = calloc(n, sizeof(*ent));
		ptr = calloc(n, sizeof(*ptr));
		if (!ent || !ptr) {
			rc = -ENOMEM;
			goto out_free;
		}
		vv_to(&r->vv, ent, ptr);
		vv_to(&r->origin, ent + r->vv.n, ptr + r->vv.n);
	}
	m.uid = bin(r->uid.b, DFSR_UID_LEN);
	m.parent = bin(r->parent.b, DFSR_UID_LEN);
	m.name = bin(r->name, strlen(r->name));
	m.type = (uint32_t)(unsigned char)r->type;
	g.db = bin(r->gvsn.db.b, DFSR_UID_LEN);
	g.counter = r->gvsn.counter;
	m.gvsn = &g;
	m.n_vv = r->vv.n;
	m.vv = ptr;
	m.n_origin = r->origin.n;
	m.origin = r->origin.n ? ptr + r->vv.n : NULL;
	m.hash = bin(r->hash, HASH_LEN);
	m.content = bin(r->content, HASH_LEN);
	m.size = r->size;
	m.mode = r->mode;
	m.owner = r->owner;
	m.group = r->group;
	m.mtime_ns = r->mtime_ns;
	m.ctime_ns = r->ctime_ns;
	m.change_time_ns = r->change_time_ns;
	m.create_time_ns = r->create_time_ns;
	m.tombstone = r->tombstone;
	m.seq = r->seq;
	len = dfsr__record__get_packed_size(&m);
	tmp = malloc(len ? len : 1);
	if (!tmp) {
		rc = -ENOMEM;
		goto out_free;
	}
	dfsr__record__pack(&m, tmp);
	rc = dfsr_buf_add(out, tmp, len);
	free(tmp);
out_free:
	free(ptr);
	free(ent);
	return rc;
}

static int uid_from(struct dfsr_uid *u, const ProtobufCBinaryData *b)
{
	if (b->len != DFSR_UID_LEN)
		return -EBADMSG;
	memcpy(u->b, b->data, DFSR_UID_LEN);
	return 0;
}

static int hash_from(uint8_t out[HASH_LEN], const ProtobufCBinaryData *b)
{
	if (b->len != HASH_LEN)
		return -EBADMSG;
	memcpy(out, b->data, HASH_LEN);
	return 0;
}

static int vv_from(struct version_vector *vv, Dfsr__Gvsn *const *ent, size_t n)
{
	if (n > VERSION_VV_MAX)
		return -EBADMSG;
	if (n == 0)
		return 0;
	vv->v = calloc(n, sizeof(*vv->v));
	if (!vv->v)
		return -ENOMEM;
	vv->cap = n;
	for (size_t i = 0; i < n; i++) {
		if (uid_from(&vv->v[i].db, &ent[i]->db) < 0)
			return -EBADMSG;
		vv->v[i].counter = ent[i]->counter;
		vv->n++;
	}
	return 0;
}

static int fill(struct record *r, const Dfsr__Record *m)
{
	int rc;

	if (uid_from(&r->uid, &m->uid) < 0 || uid_from(&r->parent, &m->parent) < 0)
		return -EBADMSG;
	if (!name_bytes_valid(m->name.data, m->name.len))
		return -EBADMSG;
	memcpy(r->name, m->name.data, m->name.len);
	r->name[m->name.len] = '\0';
	if (!type_valid(m->type) || !m->gvsn)
		return -EBADMSG;
	r->type = (char)m->type;
	if (uid_from(&r->gvsn.db, &m->gvsn->db) < 0)
		return -EBADMSG;
	r->gvsn.counter = m->gvsn->counter;
	rc = vv_from(&r->vv, m->vv, m->n_vv);
	if (rc == 0)
		rc = vv_from(&r->origin, m->origin, m->n_origin);
	if (rc < 0)
		return rc;
	if (hash_from(r->hash, &m->hash) < 0 || hash_from(r->content, &m->content) < 0)
		return -EBADMSG;
	r->size = m->size;
	r->mode = m->mode;
	r->owner = m->owner;
	r->group = m->group;
	r->mtime_ns = m->mtime_ns;
	r->ctime_ns = m->ctime_ns;
	r->change_time_ns = m->change_time_ns;
	r->create_time_ns = m->create_time_ns;
	r->tombstone = m->tombstone;
	r->seq = m->seq;
	return record_valid(r) ? 0 : -EBADMSG;
}

int record_decode(struct record *r, const uint8_t *buf, size_t len)
{
	Dfsr__Record *m;
	int rc;

	record_init(r);
	if (len > RECORD_ENC_MAX)
		return -EBADMSG;
	m = dfsr__record__unpack(NULL, len, buf);
	if (!m)
		return -EBADMSG;
	rc = fill(r, m);
	dfsr__record__free_unpacked(m, NULL);
	if (rc < 0)
		record_release(r);
	return rc;
}
