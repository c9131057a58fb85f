/*
 * test_chunk.c - core/chunk.c on real files: the gear table is what core/chunk.h says it
 * is (recomputed with libsodium's SHA-256), cuts are deterministic, within bounds and
 * content-defined (an insertion at the start of a 5 MiB file changes at most the first
 * two chunks), the stream agrees with chunk_cut() on memory, the empty file has zero
 * chunks; chunk lists round-trip and hostile encodings are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>

#include "core/chunk.h"
#include "tests/unit/tmpdir.h"

struct tmp {
	char dir[64];
	int fd; /* O_PATH of dir */
};

static int setup(void **state)
{
	struct tmp *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	if (test_tmpdir_make(t->dir, sizeof(t->dir), "chunk", &t->fd) < 0)
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tmp *t = *state;

	close(t->fd);
	if (test_tmpdir_remove(t->dir) < 0)
		return -1;
	free(t);
	return 0;
}

/* Deterministic pseudo-random bytes (xorshift64*), so failures reproduce. */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dULL) >> 56);
	}
}

static int write_file(int dirfd, const char *name, const void *data, size_t len)
{
	int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	if (len)
		assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

static void chunk_data(int dirfd, const char *name, const void *data, size_t len,
		       struct chunk_list *l)
{
	int fd = write_file(dirfd, name, data, len);

	chunk_list_init(l);
	assert_int_equal(chunk_list_from_fd(fd, l), 0);
	close(fd);
}

/* Every invariant, plus each chunk's hash and the digest against the data. */
static void check_list(const struct chunk_list *l, const uint8_t *data, size_t len)
{
	uint8_t h[HASH_LEN];

	assert_true(chunk_list_valid(l));
	assert_int_equal(l->size, len);
	for (size_t i = 0; i < l->n; i++) {
		const struct chunk_entry *e = &l->v[i];

		if (i + 1 < l->n)
			assert_true(e->len >= CHUNK_MIN);
		assert_true(e->len >= 1 && e->len <= CHUNK_MAX);
		crypto_hash_sha256(h, data + e->off, e->len);
		assert_memory_equal(h, e->hash, HASH_LEN);
	}
	crypto_hash_sha256(h, data, len);
	assert_memory_equal(h, l->digest, HASH_LEN);
}

static void gear_table_is_derived_from_sha256(void **state)
{
	(void)state;
	for (unsigned i = 0; i < 256; i++) {
		uint8_t in[16] = "dfsr-gear-v1", h[32];
		uint64_t want = 0;

		in[12] = (uint8_t)(i >> 24);
		in[13] = (uint8_t)(i >> 16);
		in[14] = (uint8_t)(i >> 8);
		in[15] = (uint8_t)i;
		crypto_hash_sha256(h, in, sizeof(in));
		for (int b = 0; b < 8; b++)
			want = want << 8 | h[b];
		assert_true(chunk_gear((uint8_t)i) == want);
	}
}

static void empty_file_has_no_chunks(void **state)
{
	struct tmp *t = *state;
	struct chunk_list l;
	uint8_t h[HASH_LEN];

	chunk_data(t->fd, "empty", NULL, 0, &l);
	assert_int_equal(l.n, 0);
	assert_int_equal(l.size, 0);
	crypto_hash_sha256(h, (const uint8_t *)"", 0);
	assert_memory_equal(h, l.digest, HASH_LEN);
	assert_int_equal(chunk_cut((const uint8_t *)"", 0), 0);
	chunk_list_release(&l);
}

static void small_file_is_one_chunk(void **state)
{
	struct tmp *t = *state;
	struct chunk_list l;
	uint8_t *d = malloc(CHUNK_MIN);

	assert_non_null(d);
	fill_random(d, CHUNK_MIN, 7);
	chunk_data(t->fd, "small", d, CHUNK_MIN, &l);
	assert_int_equal(l.n, 1);
	check_list(&l, d, CHUNK_MIN);
	chunk_list_release(&l);
	chunk_data(t->fd, "one", d, 1, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.v[0].len, 1);
	check_list(&l, d, 1);
	chunk_list_release(&l);
	free(d);
}

/* Bounds on random data, and the stream cuts exactly where chunk_cut() cuts in memory. */
static void bounds_and_stream_match_memory(void **state)
{
	struct tmp *t = *state;
	size_t len = 5u << 20, off = 0, i = 0;
	uint8_t *d = malloc(len);
	struct chunk_list l;

	assert_non_null(d);
	fill_random(d, len, 1);
	chunk_data(t->fd, "r5", d, len, &l);
	check_list(&l, d, len);
	for (; off < len; i++) {
		size_t left = len - off;
		size_t cut = chunk_cut(d + off, left < CHUNK_MAX ? left : CHUNK_MAX);

		assert_true(i < l.n);
		assert_int_equal(cut, l.v[i].len);
		/* Extra bytes past CHUNK_MAX never change the cut. */
		assert_int_equal(chunk_cut(d + off, left), cut);
		off += cut;
	}
	assert_int_equal(i, l.n);
	/* Normalized chunking: the average stays near CHUNK_AVG (loose bounds, fixed data). */
	assert_true(len / l.n > CHUNK_AVG / 2 && len / l.n < CHUNK_AVG * 2);
	chunk_list_release(&l);
	free(d);
}

/* A run of one byte value never matches the mask: every chunk is CHUNK_MAX. */
static void constant_data_cuts_at_max(void **state)
{
	struct tmp *t = *state;
	size_t len = 3 * CHUNK_MAX + 100;
	uint8_t *d = calloc(1, len);
	struct chunk_list l;

	assert_non_null(d);
	chunk_data(t->fd, "zeros", d, len, &l);
	check_list(&l, d, len);
	assert_int_equal(l.n, 4);
	for (size_t i = 0; i + 1 < l.n; i++)
		assert_int_equal(l.v[i].len, CHUNK_MAX);
	assert_int_equal(l.v[3].len, 100);
	chunk_list_release(&l);
	free(d);
}

static void deterministic(void **state)
{
	struct tmp *t = *state;
	size_t len = 2u << 20;
	uint8_t *d = malloc(len);
	struct chunk_list a, b;
	struct dfsr_buf ea, eb;

	assert_non_null(d);
	fill_random(d, len, 3);
	chunk_data(t->fd, "a", d, len, &a);
	chunk_data(t->fd, "b", d, len, &b);
	dfsr_buf_init(&ea);
	dfsr_buf_init(&eb);
	assert_int_equal(chunk_list_encode(&a, &ea), 0);
	assert_int_equal(chunk_list_encode(&b, &eb), 0);
	assert_int_equal(ea.len, eb.len);
	assert_memory_equal(ea.p, eb.p, ea.len);
	dfsr_buf_release(&ea);
	dfsr_buf_release(&eb);
	chunk_list_release(&a);
	chunk_list_release(&b);
	free(d);
}

/* Hashes of @a that are not in @b. */
static size_t count_missing(const struct chunk_list *a, const struct chunk_list *b)
{
	size_t missing = 0, idx;

	for (size_t i = 0; i < a->n; i++)
		missing += chunk_list_find(b, a->v[i].hash, &idx) == 0 ? 0 : 1;
	return missing;
}

static void insertion_changes_only_nearby_chunks(void **state)
{
	struct tmp *t = *state;
	size_t len = 5u << 20, ins = 100;
	uint8_t *d = malloc(len + 2 * ins);
	struct chunk_list old, front, mid;

	assert_non_null(d);
	fill_random(d + ins, len, 11);
	chunk_data(t->fd, "old", d + ins, len, &old);
	fill_random(d, ins, 12);
	chunk_data(t->fd, "front", d, len + ins, &front);
	check_list(&front, d, len + ins);
	assert_true(old.n > 40);
	assert_true(count_missing(&front, &old) <= 2);
	assert_true(count_missing(&old, &front) <= 2);
	/* In the middle: the chunks around the edit change, at most three. */
	memmove(d + len / 2 + ins, d + len / 2, len / 2 + ins);
	fill_random(d + len / 2, ins, 13);
	chunk_data(t->fd, "mid", d, len + 2 * ins, &mid);
	assert_true(count_missing(&mid, &front) <= 3);
	assert_true(count_missing(&mid, &front) >= 1);
	chunk_list_release(&old);
	chunk_list_release(&front);
	chunk_list_release(&mid);
	free(d);
}

static void stream_reports_pieces_and_digest(void **state)
{
	struct tmp *t = *state;
	size_t len = 700000;
	uint8_t *d = malloc(len), digest[HASH_LEN], h[HASH_LEN];
	struct chunk_stream *cs;
	struct chunk_piece pc;
	uint64_t off = 0, size = 0;
	int fd, rc;

	assert_non_null(d);
	fill_random(d, len, 5);
	fd = write_file(t->fd, "s", d, len);
	/* The file offset is not used: reading starts at 0 wherever it points. */
	assert_int_equal(lseek(fd, 12345, SEEK_SET), 12345);
	assert_int_equal(chunk_stream_new(fd, &cs), 0);
	assert_int_equal(chunk_stream_finish(cs, digest, &size), -EINVAL);
	while ((rc = chunk_stream_next(cs, &pc)) == 1) {
		assert_int_equal(pc.off, off);
		assert_memory_equal(pc.data, d + off, pc.len);
		crypto_hash_sha256(h, pc.data, pc.len);
		assert_memory_equal(h, pc.hash, HASH_LEN);
		off += pc.len;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(chunk_stream_next(cs, &pc), 0);
	assert_int_equal(chunk_stream_finish(cs, digest, &size), 0);
	assert_int_equal(size, len);
	crypto_hash_sha256(h, d, len);
	assert_memory_equal(h, digest, HASH_LEN);
	chunk_stream_free(cs);
	chunk_stream_free(NULL);
	close(fd);
	free(d);
}

static void list_round_trip(void **state)
{
	struct tmp *t = *state;
	size_t len = 1u << 20;
	uint8_t *d = malloc(len);
	struct chunk_list l, back;
	struct dfsr_buf b;

	assert_non_null(d);
	fill_random(d, len, 9);
	chunk_data(t->fd, "rt", d, len, &l);
	dfsr_buf_init(&b);
	assert_int_equal(chunk_list_encode(&l, &b), 0);
	assert_int_equal(b.len, chunk_list_encoded_len(l.n));
	assert_int_equal(chunk_list_decode((const uint8_t *)b.p, b.len, &back), 0);
	assert_int_equal(back.n, l.n);
	assert_int_equal(back.size, l.size);
	assert_memory_equal(back.digest, l.digest, HASH_LEN);
	for (size_t i = 0; i < l.n; i++) {
		assert_int_equal(back.v[i].off, l.v[i].off);
		assert_int_equal(back.v[i].len, l.v[i].len);
		assert_memory_equal(back.v[i].hash, l.v[i].hash, HASH_LEN);
	}
	chunk_list_release(&back);
	/* The empty list too. */
	chunk_list_release(&l);
	chunk_data(t->fd, "e", NULL, 0, &l);
	dfsr_buf_release(&b);
	dfsr_buf_init(&b);
	assert_int_equal(chunk_list_encode(&l, &b), 0);
	assert_int_equal(b.len, CHUNK_LIST_HDR_LEN);
	assert_int_equal(chunk_list_decode((const uint8_t *)b.p, b.len, &back), 0);
	assert_int_equal(back.n, 0);
	assert_memory_equal(back.digest, l.digest, HASH_LEN);
	chunk_list_release(&back);
	chunk_list_release(&l);
	dfsr_buf_release(&b);
	free(d);
}

/* A valid 3-chunk encoding to damage: lengths 100, CHUNK_MAX, 7. */
static void make_encoding(struct dfsr_buf *b)
{
	static const uint32_t lens[] = { 100, CHUNK_MAX, 7 };
	struct chunk_list l;
	uint8_t h[HASH_LEN];

	chunk_list_init(&l);
	for (size_t i = 0; i < 3; i++) {
		memset(h, (int)i + 1, sizeof(h));
		assert_int_equal(chunk_list_add(&l, lens[i], h), 0);
	}
	memset(l.digest, 0xaa, HASH_LEN);
	dfsr_buf_init(b);
	assert_int_equal(chunk_list_encode(&l, b), 0);
	chunk_list_release(&l);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void expect_bad(const struct dfsr_buf *b)
{
	struct chunk_list l;

	assert_int_equal(chunk_list_decode((const uint8_t *)b->p, b->len, &l), -EBADMSG);
	assert_int_equal(l.n, 0);
	assert_null(l.v);
}

/* Offsets in the encoding: count at 48, entry i at 52 + 36 i (length first). */
#define COUNT_AT  48
#define ENT_AT(i) (CHUNK_LIST_HDR_LEN + (i)*CHUNK_LIST_ENT_LEN)

static void hostile_lists_refused(void **state)
{
	struct chunk_list l;
	struct dfsr_buf b;
	uint8_t *p;

	(void)state;
	make_encoding(&b);
	p = (uint8_t *)b.p;
	assert_int_equal(chunk_list_decode(p, b.len, &l), 0);
	assert_int_equal(l.size, 100 + CHUNK_MAX + 7);
	chunk_list_release(&l);

	/* Every truncation, and one extra byte. */
	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(chunk_list_decode(p, n, &l), -EBADMSG);
	assert_int_equal(dfsr_buf_add(&b, "x", 1), 0);
	p = (uint8_t *)b.p;
	expect_bad(&b);
	b.len--;

	p[0] = 'X'; /* magic */
	expect_bad(&b);
	p[0] = 'D';
	p[4] = 2; /* version */
	expect_bad(&b);
	p[4] = CHUNK_LIST_VERSION;
	p[6] = 1; /* reserved */
	expect_bad(&b);
	p[6] = 0;
	put32(p + COUNT_AT, 2); /* count disagrees with the bytes */
	expect_bad(&b);
	put32(p + COUNT_AT, 4);
	expect_bad(&b);
	put32(p + COUNT_AT, CHUNK_LIST_MAX + 1);
	expect_bad(&b);
	put32(p + COUNT_AT, UINT32_MAX);
	expect_bad(&b);
	put32(p + COUNT_AT, 3);
	p[15]++; /* size no longer the sum */
	expect_bad(&b);
	p[15]--;
	put32(p + ENT_AT(2), 0); /* zero length */
	expect_bad(&b);
	put32(p + ENT_AT(1), CHUNK_MAX + 1); /* oversized */
	put32(p + ENT_AT(2), 6);
	expect_bad(&b);
	put32(p + ENT_AT(1), CHUNK_MAX);
	put32(p + ENT_AT(2), 7);
	assert_int_equal(chunk_list_decode(p, b.len, &l), 0);
	chunk_list_release(&l);

	/* A non-zero size with no chunks. */
	b.len = CHUNK_LIST_HDR_LEN;
	put32(p + COUNT_AT, 0);
	expect_bad(&b);
	memset(p + 8, 0, 8);
	assert_int_equal(chunk_list_decode(p, b.len, &l), 0);
	chunk_list_release(&l);
	dfsr_buf_release(&b);
}

/* Random bytes behind a valid header never crash the decoder nor decode as invalid. */
static void random_input_never_invalid(void **state)
{
	uint8_t buf[CHUNK_LIST_HDR_LEN + 4 * CHUNK_LIST_ENT_LEN];
	struct chunk_list l;

	(void)state;
	for (uint64_t seed = 0; seed < 20000; seed++) {
		size_t len = (size_t)(seed % sizeof(buf));

		fill_random(buf, sizeof(buf), seed);
		if (seed & 1) {
			memcpy(buf, "DFCL\1\0\0\0", 8);
			memset(buf + 8, 0, 5);
		}
		if (chunk_list_decode(buf, len, &l) == 0) {
			assert_true(chunk_list_valid(&l));
			chunk_list_release(&l);
		}
	}
}

static void add_checks_bounds(void **state)
{
	struct chunk_list l;
	uint8_t h[HASH_LEN] = { 0 };
	struct dfsr_buf b;

	(void)state;
	chunk_list_init(&l);
	assert_int_equal(chunk_list_add(&l, 0, h), -EINVAL);
	assert_int_equal(chunk_list_add(&l, CHUNK_MAX + 1, h), -EINVAL);
	assert_int_equal(chunk_list_add(&l, 5, h), 0);
	assert_int_equal(chunk_list_add(&l, CHUNK_MAX, h), 0);
	assert_int_equal(l.v[1].off, 5);
	assert_int_equal(l.size, 5 + CHUNK_MAX);
	assert_true(chunk_list_valid(&l));
	l.size++;
	assert_false(chunk_list_valid(&l));
	dfsr_buf_init(&b);
	assert_int_equal(chunk_list_encode(&l, &b), -EINVAL);
	dfsr_buf_release(&b);
	chunk_list_release(&l);
	chunk_list_release(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(gear_table_is_derived_from_sha256),
		cmocka_unit_test_setup_teardown(empty_file_has_no_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(small_file_is_one_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(bounds_and_stream_match_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(constant_data_cuts_at_max, setup, teardown),
		cmocka_unit_test_setup_teardown(deterministic, setup, teardown),
		cmocka_unit_test_setup_teardown(insertion_changes_only_nearby_chunks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(stream_reports_pieces_and_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(list_round_trip, setup, teardown),
		cmocka_unit_test(hostile_lists_refused),
		cmocka_unit_test(random_input_never_invalid),
		cmocka_unit_test(add_checks_bounds),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
