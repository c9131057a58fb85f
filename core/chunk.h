/*
 * chunk.h - content-defined chunking, per-chunk SHA-256 and the chunk list encoding
 * (DESIGN.md, "Replication"; the format is in docs/on-disk.md, "Staging").
 *
 * A file version is cut into chunks whose boundaries depend on the content only, so an
 * insertion near the start of a large file changes the first one or two chunks and leaves
 * every later chunk (and its SHA-256) as it was: the downstream then asks only for the
 * chunks it does not already hold.
 *
 * The cut rule (FastCDC with normalized chunking, level 2). Every member must cut
 * identically, so this is part of the protocol:
 *
 *   gear[i] = first 8 bytes, big-endian, of SHA-256("dfsr-gear-v1" || be32 i), i = 0..255
 *   From the start of a chunk, with n = min(bytes left, CHUNK_MAX):
 *     n <= CHUNK_MIN                      -> the chunk is n bytes;
 *     fp = 0; for each byte b at index i = CHUNK_MIN, CHUNK_MIN+1, ... < n:
 *       fp = (fp << 1) + gear[b]  (mod 2^64)
 *       i <  CHUNK_AVG: cut after b if (fp & CHUNK_MASK_S) == 0  (top 18 bits zero)
 *       i >= CHUNK_AVG: cut after b if (fp & CHUNK_MASK_L) == 0  (top 14 bits zero)
 *     no cut found                        -> the chunk is n bytes.
 *
 * Chunks are therefore 1..CHUNK_MAX bytes, at least CHUNK_MIN except the last, about
 * CHUNK_AVG on average. An empty file has zero chunks. The whole-file digest is the
 * SHA-256 of the data, the same value as hash_result.content (core/hash.h).
 *
 * A chunk list (struct chunk_list) describes one file version: its size, its whole-file
 * digest and, per chunk, length and SHA-256 (offsets are implied). Its byte encoding
 * (chunk_list_encode()) is big-endian and exact:
 *
 *   "DFCL" | u8 version = 1 | 3 zero bytes | be64 size | digest[32] | be32 count
 *   | count x (be32 length | sha256[32])
 *
 * chunk_list_decode() treats its input as hostile: exact length, zero reserved bytes,
 * count <= CHUNK_LIST_MAX, every length in [1, CHUNK_MAX], lengths summing to the size.
 *
 * Thread: any; no shared state (a chunk_stream belongs to one thread at a time).
 */
#ifndef DFSR_CORE_CHUNK_H
#define DFSR_CORE_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hash.h"
#include "core/util.h"

#define CHUNK_MIN    (16u * 1024u)
#define CHUNK_AVG    (64u * 1024u)
#define CHUNK_MAX    (256u * 1024u)
#define CHUNK_MASK_S 0xffffc00000000000ULL /* top 18 bits: log2(CHUNK_AVG) + 2 */
#define CHUNK_MASK_L 0xfffc000000000000ULL /* top 14 bits: log2(CHUNK_AVG) - 2 */

/* Hard maximum of chunks in one list: every file up to 64 GiB fits whatever its content
 * (chunks are >= CHUNK_MIN), typical files up to about 256 GiB. */
#define CHUNK_LIST_MAX (1u << 22)

#define CHUNK_LIST_VERSION 1
#define CHUNK_LIST_HDR_LEN 52u /* magic 4, version 1, reserved 3, size 8, digest 32, count 4 */
#define CHUNK_LIST_ENT_LEN 36u /* length 4, sha256 32 */

/**
 * chunk_gear() - Entry @i of the gear table (see the header comment for its definition).
 * Thread: any.
 */
uint64_t chunk_gear(uint8_t i);

/**
 * chunk_cut() - Length of the chunk that starts at @p.
 * @p: data from the chunk's start
 * @n: bytes available at @p; must be min(bytes left in the file, CHUNK_MAX) or more, so
 *     that the result equals the cut of the whole file
 *
 * Thread: any.
 * Return: the chunk length, 1..min(@n, CHUNK_MAX); 0 only when @n is 0.
 */
size_t chunk_cut(const uint8_t *p, size_t n);

/**
 * chunk_sha256() - SHA-256 of @len bytes (OpenSSL EVP).
 * Thread: any.
 * Return: 0, -ENOMEM or -EIO if libcrypto fails.
 */
int chunk_sha256(const void *p, size_t len, uint8_t out[HASH_LEN]);

/* ---- streaming over a file descriptor, bounded memory (about 1 MiB) ----------------- */

struct chunk_stream;

/* One chunk produced by chunk_stream_next(). */
struct chunk_piece {
	uint64_t off;           /* offset in the file */
	uint32_t len;           /* 1..CHUNK_MAX */
	uint8_t hash[HASH_LEN]; /* SHA-256 of the chunk */
	const uint8_t *data;    /* the chunk's bytes; valid until the next call on the stream */
};

/**
 * chunk_stream_new() - Start chunking the data of @fd from offset 0.
 * @fd:  readable descriptor of a regular file; borrowed, read with pread() (its file
 *       offset is not used or moved); must stay open until chunk_stream_free()
 * @out: receives the stream
 *
 * Thread: any.
 * Ownership: caller frees the stream with chunk_stream_free() (NULL-safe).
 * Return: 0, -ENOMEM, -EIO (libcrypto).
 */
int chunk_stream_new(int fd, struct chunk_stream **out);

void chunk_stream_free(struct chunk_stream *cs);

/**
 * chunk_stream_next() - Read and cut the next chunk.
 * @cs:  stream
 * @out: receives the chunk (its data pointer is borrowed from @cs)
 *
 * Thread: the stream's. Blocks on disk.
 * Return: 1 with a chunk in @out, 0 at the end of the data, -EFBIG past CHUNK_LIST_MAX
 *         chunks, -EIO, -ENOMEM, or the -errno of pread().
 */
int chunk_stream_next(struct chunk_stream *cs, struct chunk_piece *out);

/**
 * chunk_stream_finish() - The SHA-256 and size of all the data read, once
 * chunk_stream_next() returned 0.
 * Thread: the stream's.
 * Return: 0, -EINVAL if the end was not reached, -EIO (libcrypto).
 */
int chunk_stream_finish(struct chunk_stream *cs, uint8_t digest[HASH_LEN], uint64_t *size);

/* ---- chunk lists ------------------------------------------------------------------ */

struct chunk_entry {
	uint64_t off; /* implied by the lengths before it; filled in by every constructor */
	uint32_t len;
	uint8_t hash[HASH_LEN];
};

/*
 * Invariants (checked by chunk_list_valid()): n <= CHUNK_LIST_MAX; each len in
 * [1, CHUNK_MAX]; v[0].off == 0 and v[i].off == v[i-1].off + v[i-1].len; the lengths
 * sum to size (so size == 0 iff n == 0).
 */
struct chunk_list {
	uint64_t size;
	uint8_t digest[HASH_LEN]; /* SHA-256 of the whole data */
	struct chunk_entry *v;
	size_t n;
	size_t cap;
};

void chunk_list_init(struct chunk_list *l);
/* Frees the entries; @l is empty and reusable afterwards. NULL-safe. */
void chunk_list_release(struct chunk_list *l);

/**
 * chunk_list_add() - Append a chunk of @len bytes (its offset follows the previous one)
 * and grow size accordingly.
 * Return: 0, -EINVAL if @len is outside [1, CHUNK_MAX], -EFBIG past CHUNK_LIST_MAX,
 *         -ENOMEM.
 */
int chunk_list_add(struct chunk_list *l, uint32_t len, const uint8_t hash[HASH_LEN]);

/* True when @l satisfies every invariant above. */
bool chunk_list_valid(const struct chunk_list *l);

/**
 * chunk_list_from_fd() - Chunk the whole data of @fd into @out (which must be empty, as
 * after chunk_list_init()), with its size and digest.
 * Thread: any. Blocks on disk.
 * Return: 0, or as chunk_stream_next(). On failure @out is left empty.
 */
int chunk_list_from_fd(int fd, struct chunk_list *out);

/**
 * chunk_list_encode() - Append the encoding of @l to @out.
 * Return: 0, -EINVAL if @l is not valid, -ENOMEM.
 */
int chunk_list_encode(const struct chunk_list *l, struct dfsr_buf *out);

/* Bytes chunk_list_encode() writes for @n chunks (no overflow for n <= CHUNK_LIST_MAX). */
size_t chunk_list_encoded_len(size_t n);

/**
 * chunk_list_decode() - Decode untrusted bytes into @out (which must be empty).
 * @p:   bytes
 * @len: their length; must be exactly one encoded list
 *
 * Memory is allocated only after the input proved long enough for the count it claims.
 * Thread: any.
 * Return: 0, -EBADMSG for any malformed input (@out left empty), -ENOMEM.
 */
int chunk_list_decode(const uint8_t *p, size_t len, struct chunk_list *out);

/* Index of the chunk whose SHA-256 is @hash, or -ENOENT. O(n). */
int chunk_list_find(const struct chunk_list *l, const uint8_t hash[HASH_LEN], size_t *idx);

#endif
