/*
 * test_record.c - core/record.c: encode/decode round trip, and hostile bytes refused:
 * wrong UID and hash lengths, names with '/', NUL, "." and "..", empty or overlong names,
 * oversized or unsorted version vectors, bad types, and truncated input.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/dfsr.pb-c.h"
#include "core/record.h"

static void sample(struct record *r)
{
	struct dfsr_uid db;

	record_init(r);
	memset(r->uid.b, 0x11, DFSR_UID_LEN);
	memset(r->parent.b, 0x22, DFSR_UID_LEN);
	strcpy(r->name, "caf\xc3\xa9 \xff.txt"); /* not UTF-8 on purpose */
	r->type = RECORD_FILE;
	memset(db.b, 0x33, DFSR_UID_LEN);
	r->gvsn.db = db;
	r->gvsn.counter = 42;
	assert_int_equal(version_vector_raise(&r->vv, &db, 42), 0);
	db.b[0] = 0x01;
	assert_int_equal(version_vector_raise(&r->vv, &db, 7), 0);
	memset(r->hash, 0xaa, HASH_LEN);
	memset(r->content, 0xbb, HASH_LEN);
	r->size = 123456789;
	r->mode = 0644;
	r->owner = 1000;
	r->group = 100;
	r->mtime_ns = 1700000000123456789;
	r->ctime_ns = -5;
	r->change_time_ns = 1700000001000000000;
	r->create_time_ns = 1600000000000000000;
	r->tombstone = true;
	r->seq = 99;
}

static void round_trip(void **state)
{
	struct record r, d;
	struct dfsr_buf b;

	(void)state;
	sample(&r);
	dfsr_buf_init(&b);
	assert_int_equal(record_encode(&r, &b), 0);
	assert_int_equal(record_decode(&d, (const uint8_t *)b.p, b.len), 0);
	assert_memory_equal(d.uid.b, r.uid.b, DFSR_UID_LEN);
	assert_memory_equal(d.parent.b, r.parent.b, DFSR_UID_LEN);
	assert_string_equal(d.name, r.name);
	assert_int_equal(d.type, RECORD_FILE);
	assert_int_equal(version_gvsn_cmp(&d.gvsn, &r.gvsn), 0);
	assert_int_equal(version_vector_compare(&d.vv, &r.vv), VERSION_EQUAL);
	assert_memory_equal(d.hash, r.hash, HASH_LEN);
	assert_memory_equal(d.content, r.content, HASH_LEN);
	assert_int_equal(d.size, r.size);
	assert_int_equal(d.mode, 0644);
	assert_int_equal(d.owner, 1000);
	assert_int_equal(d.group, 100);
	assert_true(d.mtime_ns == r.mtime_ns);
	assert_true(d.ctime_ns == -5);
	assert_true(d.change_time_ns == r.change_time_ns);
	assert_true(d.create_time_ns == r.create_time_ns);
	assert_true(d.tombstone);
	assert_int_equal(d.seq, 99);
	record_release(&d);
	record_release(&r);
	dfsr_buf_release(&b);
}

/* Pack a hand-made message and expect record_decode() to refuse it. */
static void expect_refused(Dfsr__Record *m)
{
	size_t len = dfsr__record__get_packed_size(m);
	uint8_t *buf = malloc(len + 1);
	struct record d;

	assert_non_null(buf);
	dfsr__record__pack(m, buf);
	assert_int_equal(record_decode(&d, buf, len), -EBADMSG);
	assert_int_equal(d.vv.n, 0); /* left empty */
	free(buf);
}

struct msg {
	Dfsr__Record m;
	Dfsr__Gvsn g;
	Dfsr__Gvsn *vp[1];
	uint8_t uid[16], parent[16], db[16], hash[32], content[32];
	char name[300];
};

static void msg_init(struct msg *x)
{
	dfsr__record__init(&x->m);
	dfsr__gvsn__init(&x->g);
	memset(x->uid, 1, 16);
	memset(x->parent, 2, 16);
	memset(x->db, 3, 16);
	memset(x->hash, 4, 32);
	memset(x->content, 5, 32);
	strcpy(x->name, "ok");
	x->g.db.data = x->db;
	x->g.db.len = 16;
	x->g.counter = 1;
	x->vp[0] = &x->g;
	x->m.uid.data = x->uid;
	x->m.uid.len = 16;
	x->m.parent.data = x->parent;
	x->m.parent.len = 16;
	x->m.name.data = (uint8_t *)x->name;
	x->m.name.len = 2;
	x->m.type = 'f';
	x->m.gvsn = &x->g;
	x->m.n_vv = 1;
	x->m.vv = x->vp;
	x->m.hash.data = x->hash;
	x->m.hash.len = 32;
	x->m.content.data = x->content;
	x->m.content.len = 32;
}

static void baseline_accepted(void **state)
{
	struct msg x;
	struct record d;
	uint8_t buf[512];
	size_t len;

	(void)state;
	msg_init(&x);
	len = dfsr__record__pack(&x.m, buf);
	assert_int_equal(record_decode(&d, buf, len), 0);
	assert_string_equal(d.name, "ok");
	record_release(&d);
}

static void bad_lengths(void **state)
{
	struct msg x;

	(void)state;
	msg_init(&x);
	x.m.uid.len = 15;
	expect_refused(&x.m);
	msg_init(&x);
	x.m.parent.len = 17;
	x.m.parent.data = (uint8_t *)x.name; /* enough bytes behind it */
	memset(x.name, 'x', 20);
	expect_refused(&x.m);
	msg_init(&x);
	x.m.hash.len = 31;
	expect_refused(&x.m);
	msg_init(&x);
	x.m.content.len = 0;
	expect_refused(&x.m);
	msg_init(&x);
	x.g.db.len = 8;
	expect_refused(&x.m);
	msg_init(&x);
	memset(x.uid, 0, 16); /* zero uid */
	expect_refused(&x.m);
}

static void bad_names(void **state)
{
	static const char *const bad[] = { "a/b", "..", ".", "", "/" };
	struct msg x;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		msg_init(&x);
		strcpy(x.name, bad[i]);
		x.m.name.len = strlen(bad[i]);
		expect_refused(&x.m);
	}
	msg_init(&x);
	memcpy(x.name, "a\0b", 3); /* embedded NUL */
	x.m.name.len = 3;
	expect_refused(&x.m);
	msg_init(&x);
	memset(x.name, 'n', 256); /* 256 bytes: one too many */
	x.m.name.len = 256;
	expect_refused(&x.m);
	msg_init(&x);
	memset(x.name, 'n', 255);
	x.name[255] = '\0';
	x.m.name.len = 255;
	{
		uint8_t buf[1024];
		size_t len = dfsr__record__pack(&x.m, buf);
		struct record d;

		assert_int_equal(record_decode(&d, buf, len), 0);
		assert_int_equal(strlen(d.name), 255);
		record_release(&d);
	}
}

static void bad_versions_and_types(void **state)
{
	Dfsr__Gvsn *many[VERSION_VV_MAX + 1];
	Dfsr__Gvsn ents[VERSION_VV_MAX + 1];
	uint8_t ids[VERSION_VV_MAX + 1][16];
	struct msg x;

	(void)state;
	msg_init(&x);
	x.m.type = 'x';
	expect_refused(&x.m);
	msg_init(&x);
	x.m.mode = 0100644; /* file type bits are not permission bits */
	expect_refused(&x.m);
	msg_init(&x);
	x.m.gvsn = NULL;
	expect_refused(&x.m);
	msg_init(&x);
	x.g.counter = 0;
	expect_refused(&x.m);
	msg_init(&x);
	x.m.n_vv = 0; /* vv does not contain the gvsn */
	expect_refused(&x.m);
	/* oversized: VERSION_VV_MAX + 1 entries */
	for (size_t i = 0; i <= VERSION_VV_MAX; i++) {
		dfsr__gvsn__init(&ents[i]);
		memset(ids[i], 0, 16);
		ids[i][0] = (uint8_t)(i >> 8);
		ids[i][1] = (uint8_t)i;
		ids[i][15] = 3;
		ents[i].db.data = ids[i];
		ents[i].db.len = 16;
		ents[i].counter = 1;
		many[i] = &ents[i];
	}
	msg_init(&x);
	x.m.vv = many;
	x.m.n_vv = VERSION_VV_MAX + 1;
	expect_refused(&x.m);
	/* unsorted */
	msg_init(&x);
	many[0] = &ents[5];
	many[1] = &ents[2];
	x.m.vv = many;
	x.m.n_vv = 2;
	expect_refused(&x.m);
}

static void garbage_and_truncation(void **state)
{
	struct record r, d;
	struct dfsr_buf b;
	uint8_t junk[64];

	(void)state;
	sample(&r);
	dfsr_buf_init(&b);
	assert_int_equal(record_encode(&r, &b), 0);
	/* a cut at a field boundary may only drop trailing fields: either refused or valid */
	for (size_t cut = 0; cut < b.len; cut++) {
		int rc = record_decode(&d, (const uint8_t *)b.p, cut);

		assert_true(rc == 0 || rc == -EBADMSG);
		record_release(&d);
	}
	assert_int_equal(record_decode(&d, (const uint8_t *)b.p, 20), -EBADMSG); /* no parent */
	memset(junk, 0xff, sizeof(junk));
	assert_int_equal(record_decode(&d, junk, sizeof(junk)), -EBADMSG);
	assert_int_equal(record_decode(&d, junk, RECORD_ENC_MAX + 1), -EBADMSG);
	/* encode refuses a record that breaks an invariant */
	strcpy(r.name, "a/b");
	assert_int_equal(record_encode(&r, &b), -EINVAL);
	record_release(&r);
	dfsr_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(baseline_accepted),
		cmocka_unit_test(bad_lengths),
		cmocka_unit_test(bad_names),
		cmocka_unit_test(bad_versions_and_types),
		cmocka_unit_test(garbage_and_truncation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
