/*
 * chunk.c - content-defined chunking (FastCDC, normalized) and the chunk list codec.
 *
 * Why content-defined: a fixed-size cut moves every boundary after an insertion, so a
 * one-byte insertion at the start of a file would change every chunk hash and the whole
 * file would travel again. A gear hash over the last 64 bytes decides the boundaries
 * instead, so they move with the content and resynchronise right after the edit.
 *
 * Normalized chunking (FastCDC, Xia et al. 2016/2020): below the average size the cut
 * condition is harder (18 mask bits), above it easier (14 bits); chunk sizes then cluster
 * around CHUNK_AVG instead of following a wide geometric distribution, which keeps the
 * chunk count (and the per-chunk overhead in lists and requests) predictable. Hashing
 * starts only at CHUNK_MIN: the first CHUNK_MIN bytes of a chunk are never inspected,
 * which is where most of FastCDC's speed comes from.
 *
 * The gear table below is part of the protocol (core/chunk.h says how it is derived;
 * tests/unit/test_chunk.c recomputes it with an independent SHA-256).
 *
 * The stream reads with pread() into a 1 MiB window (4 x CHUNK_MAX) and cuts in place;
 * the window is compacted only when fewer than CHUNK_MAX bytes follow the cut position,
 * so each byte is copied at most about once more. SHA-256 of the whole data is updated
 * as chunks are handed out, so one pass gives the chunk list and the content digest (a
 * file that is a single chunk is hashed once: its chunk hash is the digest).
 *
 * The decoder is written for hostile input (STYLE rule 17): a bounds-checked reader,
 * every count checked against the bytes that are actually there before allocating.
 */
#include "core/chunk.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint64_t gear_table[256] = {
	0x1957c9cb5362604bULL, 0x5007866930784406ULL, 0x67f80e47b67d664dULL, 0x602bebdbdeb03767ULL,
	0xbb1ef992a7569fc9ULL, 0x5ccf6f320ba65e5fULL, 0xe893feaf1e6e6ab2ULL, 0xaa868ae03e3530baULL,
	0xf5e83cdf4e986d3dULL, 0xd6d62075f55c9de7ULL, 0xe2c337f1e0feec1bULL, 0x31b5a9402c3fb9f8ULL,
	0x8ce01ecab67b8b9aULL, 0xfc4ff94438d0742bULL, 0x0b7a5843e3052361ULL, 0x9924b634da4b096aULL,
	0x2bd2233efbd186ffULL, 0xc3b5beb1f6c8ee15ULL, 0xcf69dc3492728bfbULL, 0xbed1b17807f0480eULL,
	0x687a6033dfc743a0ULL, 0xa41a6d68073529dfULL, 0xa893fac4258b703fULL, 0xf2296a16c375233dULL,
	0x18ff222ef1e5ab81ULL, 0xf7fa10f2a5e37b35ULL, 0xb8cd3bb7ff31474bULL, 0x0f10d2d75630baf5ULL,
	0x29214b66a686eeecULL, 0x4704d3936c251673ULL, 0xbbbc084ce0604b43ULL, 0x725384298fe041aeULL,
	0x0770aeb87f007f1cULL, 0x3e56e4c08c3383b9ULL, 0xacefd4eb6ee4979eULL, 0x5a162bddd6e8b06dULL,
	0x0c90188637cebcc8ULL, 0x1895b988ac07865eULL, 0xefc1c56774fe61d1ULL, 0xa997258c436a6e9eULL,
	0x4a8ce029e12f746aULL, 0x958b98a4a102f889ULL, 0xe8800bb8bf295eeaULL, 0xf23fec828e51f37dULL,
	0x94d7200afaa935ffULL, 0xe13c120a681b3ffeULL, 0xa45f16f64729fc76ULL, 0x01998eade17eac49ULL,
	0xfb35b4bfc375d551ULL, 0xa5705210cb21238cULL, 0xd4721175ebceba7bULL, 0x427f415bb6e0b46fULL,
	0x6e84a29244845a63ULL, 0xc392e4bb31eff20fULL, 0x74c2edd9da975157ULL, 0x925d448f0c904da7ULL,
	0x2832f52cd96daf05ULL, 0x1b928126594fc890ULL, 0x2c016ee4dcc07133ULL, 0x409d4e74a5aebedaULL,
	0x4baddc86fdf5e2d5ULL, 0xdd36badb8182f6d5ULL, 0x7263360ff0820e8fULL, 0x0f486eb922490b25ULL,
	0x861bbe18ddbf2b65ULL, 0x50724236774045fbULL, 0x025e036ffebd51f2ULL, 0xe460c436fe7c9bb9ULL,
	0x99d182f99cd8ea61ULL, 0xf0702f2c8e9bd265ULL, 0x121c45e2f7b985f5ULL, 0x209ca833d7ed471fULL,
	0xe5dd5f71d686d913ULL, 0x5ddadcf49c09d972ULL, 0x60159177dcd17418ULL, 0x5a529f15e0acac39ULL,
	0x10f50e6dddf860a1ULL, 0x51a619f2ebb75085ULL, 0x8886993a6a14624fULL, 0xebd7d3b95e54ab46ULL,
	0x375611d9c9a72502ULL, 0xf646e235f518d679ULL, 0x7be7742f90d0e937ULL, 0x81562e19b960bf9bULL,
	0x932f13ed4c9168e1ULL, 0x4b5b2fbae9955b97ULL, 0xa5e77a4bd471063dULL, 0xda8493409cbdbed2ULL,
	0x74f2f05d1c9c2f77ULL, 0x8de18122b44f9ec0ULL, 0xa5627cd16e89311fULL, 0x4a3b7be8e47644b0ULL,
	0x45931ee36c17ac35ULL, 0x8864c22bf7df6134ULL, 0xa00dfb1a8203fd28ULL, 0x970a0590d5986f2bULL,
	0x377420db18ab21ebULL, 0xe31d04d7b613d9d4ULL, 0x0210279b830ebdd2ULL, 0xea28f5db789de1b8ULL,
	0x3e2b021fefba2879ULL, 0x9a78eba3a9217f8cULL, 0x6b41ec7695730af3ULL, 0x479ad48d61c62e12ULL,
	0x9502b3f02a06e16eULL, 0x04eb94203b51fc17ULL, 0x96a3bd8ce1ba470cULL, 0x7c7ec642a6f03b3fULL,
	0x661bc12424a63cd1ULL, 0x2c4102a3bf516ebdULL, 0x132170b3fa3444f2ULL, 0xd3e16f171e744ce1ULL,
	0x830801748e094c33ULL, 0x1ef3e6fd74cae26cULL, 0xa2904f121d1a79e5ULL, 0x124ed600825e6526ULL,
	0x5b82e6ba24b266b3ULL, 0xfb8624677b217d7fULL, 0xaf985709e8de578eULL, 0xdc13fbf49510eaf4ULL,
	0x5b702d300017e294ULL, 0xa94e95278f7d558bULL, 0x7417da2f2a654d95ULL, 0x2a9b880d5e66ade0ULL,
	0xa49d7b3d063bbfa4ULL, 0xa57d8c65807fe6e2ULL, 0xc3101bbff1047631ULL, 0x3bb0f926b423d960ULL,
	0xcbd0cf0418280963ULL, 0xb70f674d2937cfb4ULL, 0x1df571513411aaaaULL, 0x2e961d6a5db518feULL,
	0xe154969c4b57e25bULL, 0x6798fa0e91e3c8aaULL, 0x22aa6de6ab3fff3eULL, 0x25c4a5924b7071e0ULL,
	0x5ffacb318ae2845fULL, 0x20b20effa17f33a0ULL, 0xb95fdd0a4f3dd080ULL, 0x35b40248b20673daULL,
	0xeacea9f8c08b1c30ULL, 0xa0f94991061af3eaULL, 0x3d0d0f66e9522964ULL, 0xcc3e4730c72306deULL,
	0xeb92f635966477bbULL, 0x514c0eec53611cc5ULL, 0x0bd455c9734ce381ULL, 0x05915682c70b2c00ULL,
	0x6185f932811b5baeULL, 0xb35c65a1a958116fULL, 0xb2fb06104071595dULL, 0xd3abefe4552da5b3ULL,
	0xb2955c5637131e7aULL, 0x6ceb969138c6b0c5ULL, 0x4fcd14407d1e552aULL, 0xf89c1046f164b2d3ULL,
	0x9fa60fa2d00d61b8ULL, 0x1f05a576e81dc71cULL, 0xc6b26b66524a2520ULL, 0xddfffdfd9c0f3667ULL,
	0x10992ed913b9baf4ULL, 0x8afb3a9cd20020d7ULL, 0xdfcd1d4e58c5d3efULL, 0x0e62f3fd2264dc0eULL,
	0x08dd74c677b745faULL, 0x6e6a13902e7342b9ULL, 0x0adc3ca97f7451cfULL, 0xaa6ad2466303b745ULL,
	0x8f29f868eaa58ebaULL, 0x43dbb14326f386a7ULL, 0x933c3883c6ba2113ULL, 0xb5ef9b5684a9c042ULL,
	0xb6784b0641d53541ULL, 0x7aa58c20f333482cULL, 0xf5802db31d655d0eULL, 0x33d917b7bae781dbULL,
	0xc4b06c211df2dc15ULL, 0x8f205d0c11752cd9ULL, 0x418d475c22f9e6fcULL, 0xcd97c54f39d50f57ULL,
	0xa7c0a8731ed578d1ULL, 0xc5cb8a86467c34e1ULL, 0xba266a6cdad59380ULL, 0x813ee5e056821b6bULL,
	0x76f08009ad68a40fULL, 0xf8bf30074ef87ab1ULL, 0x257c669fd53d65dbULL, 0xbe6547be367d1c10ULL,
	0xe54b484be84dbf8aULL, 0x505dd75d89cf6aaaULL, 0x82bc27614622dc7eULL, 0x02ca376389c97152ULL,
	0x1555856aa3688c2eULL, 0x9d2aeac228f59b98ULL, 0x9c1052a122d03e8cULL, 0x4b65590966daa5c3ULL,
	0x160389d088188b7aULL, 0x050b373c3c24c265ULL, 0x758d8316534deeb0ULL, 0x4302b7bde8de9692ULL,
	0x699d91f1972f6413ULL, 0x1249645d58a287f1ULL, 0xe2ef9e1176689051ULL, 0xcd79d72f8230792dULL,
	0xbf4414dd89e9997cULL, 0xeaf1f1b7c07768feULL, 0xae05f665953faf6dULL, 0xa9742fd7dc495ea3ULL,
	0x41927fa8a7f5af8fULL, 0x66dd8a38588331f6ULL, 0xc6999deb532a83ddULL, 0xbb54a780c7327d92ULL,
	0xe6ceda6e18f765e8ULL, 0xb4f526fa319c6d10ULL, 0x1676f947c9e7d925ULL, 0xe86fe99934538437ULL,
	0xde5e27b76246ba15ULL, 0xbdb7c929badaf398ULL, 0x8983f7337d5301b6ULL, 0x3ccb7c46e0fad687ULL,
	0xda7b8cecbcffcce8ULL, 0xeb1b1dfcff5df68bULL, 0x61417c8dd0247215ULL, 0x880812df902e040bULL,
	0xf349ca856e341638ULL, 0xb435971fa868d9f6ULL, 0x1709f0a6bff3e43dULL, 0xfa1f8a69b5aedd93ULL,
	0x1455ba5abf495a1bULL, 0x5ba9571d6776cbdfULL, 0x4bfcb223606156efULL, 0x41f2155f7f1dc7ecULL,
	0x8392fb3cb05816ccULL, 0xcb8abd76c1357204ULL, 0x6857f4c86c5f379cULL, 0x3c2f943bc1c3d748ULL,
	0xedb679c5289c0d00ULL, 0x5b54e4e8bbd34909ULL, 0x9d5de012cdcb1702ULL, 0x1a9ba684fb2ef7e8ULL,
	0x59c0bae8b7e2b3a2ULL, 0x49c8628edde4675cULL, 0x7e53b94fb881001dULL, 0x2a1c7234a458e329ULL,
	0xd546f40ecb138240ULL, 0xa48854dd8c80b57bULL, 0x47b9535754460dd4ULL, 0x7796195501aeda15ULL,
	0xaf1c266c8cfaa81aULL, 0xb6b4aba847d73515ULL, 0x9dae6594c48f5566ULL, 0xec47ee058f57b6f3ULL,
	0xd1f4f634211792b9ULL, 0xd7e1bfc2bb274ab9ULL, 0xc2aec9703caf888aULL, 0xa92a43eb163c6e3cULL,
};

_Static_assert(CHUNK_MIN < CHUNK_AVG && CHUNK_AVG < CHUNK_MAX, "chunk size bounds");
_Static_assert(CHUNK_LIST_HDR_LEN == 4 + 1 + 3 + 8 + HASH_LEN + 4, "list header layout");
_Static_assert(CHUNK_LIST_ENT_LEN == 4 + HASH_LEN, "list entry layout");

#define WINDOW (4u * CHUNK_MAX)

uint64_t chunk_gear(uint8_t i)
{
	return gear_table[i];
}

size_t chunk_cut(const uint8_t *p, size_t n)
{
	size_t normal = CHUNK_AVG;
	uint64_t fp = 0;
	size_t i;

	if (n <= CHUNK_MIN)
		return n;
	if (n > CHUNK_MAX)
		n = CHUNK_MAX;
	if (normal > n)
		normal = n;
	for (i = CHUNK_MIN; i < normal; i++) {
		fp = (fp << 1) + gear_table[p[i]];
		if (!(fp & CHUNK_MASK_S))
			return i + 1;
	}
	for (; i < n; i++) {
		fp = (fp << 1) + gear_table[p[i]];
		if (!(fp & CHUNK_MASK_L))
			return i + 1;
	}
	return n;
}

int chunk_sha256(const void *p, size_t len, uint8_t out[HASH_LEN])
{
	unsigned int olen = 0;

	if (EVP_Digest(p, len, out, &olen, hash_sha256(), NULL) != 1 || olen != HASH_LEN)
		return -EIO;
	return 0;
}

/* ---- stream ------------------------------------------------------------------------ */

struct chunk_stream {
	int fd;           /* borrowed */
	uint64_t rd_off;  /* file offset of buf[end] */
	uint64_t out_off; /* file offset of buf[start] */
	size_t start;     /* first byte not yet handed out */
	size_t end;       /* bytes valid in buf */
	size_t count;     /* chunks handed out */
	bool eof;
	bool done;
	bool whole;     /* the first chunk was the whole file: its hash is the digest */
	EVP_MD_CTX *md; /* SHA-256 of everything handed out (but such a first chunk) */
	uint8_t first[HASH_LEN];
	uint8_t *buf; /* WINDOW bytes */
};

int chunk_stream_new(int fd, struct chunk_stream **out)
{
	struct chunk_stream *cs = calloc(1, sizeof(*cs));
	int rc;

	if (!cs)
		return -ENOMEM;
	cs->fd = fd;
	cs->buf = malloc(WINDOW);
	if (!cs->buf) {
		rc = -ENOMEM;
		goto out_free_cs;
	}
	cs->md = EVP_MD_CTX_new();
	if (!cs->md) {
		rc = -ENOMEM;
		goto out_free_buf;
	}
	if (EVP_DigestInit_ex(cs->md, hash_sha256(), NULL) != 1) {
		rc = -EIO;
		goto out_free_md;
	}
	*out = cs;
	return 0;
out_free_md:
	EVP_MD_CTX_free(cs->md);
out_free_buf:
	free(cs->buf);
out_free_cs:
	free(cs);
	return rc;
}

void chunk_stream_free(struct chunk_stream *cs)
{
	if (!cs)
		return;
	EVP_MD_CTX_free(cs->md);
	free(cs->buf);
	free(cs);
}

/* Make at least CHUNK_MAX bytes available after start, or everything up to the end. */
static int fill(struct chunk_stream *cs)
{
	while (!cs->eof && cs->end - cs->start < CHUNK_MAX) {
		ssize_t r;

		if (WINDOW - cs->end < CHUNK_MAX) {
			memmove(cs->buf, cs->buf + cs->start, cs->end - cs->start);
			cs->end -= cs->start;
			cs->start = 0;
		}
		r = pread(cs->fd, cs->buf + cs->end, WINDOW - cs->end, (off_t)cs->rd_off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			cs->eof = true;
			break;
		}
		cs->end += (size_t)r;
		cs->rd_off += (uint64_t)r;
	}
	return 0;
}

int chunk_stream_next(struct chunk_stream *cs, struct chunk_piece *out)
{
	size_t len;
	int rc;

	if (cs->done)
		return 0;
	rc = fill(cs);
	if (rc < 0)
		return rc;
	len = chunk_cut(cs->buf + cs->start, cs->end - cs->start);
	if (len == 0) {
		cs->done = true;
		return 0;
	}
	if (cs->count >= CHUNK_LIST_MAX)
		return -EFBIG;
	out->off = cs->out_off;
	out->len = (uint32_t)len;
	out->data = cs->buf + cs->start;
	rc = chunk_sha256(out->data, len, out->hash);
	if (rc < 0)
		return rc;
	/* A file that is one chunk (most small files) is hashed once, not twice. */
	cs->whole = cs->count == 0 && cs->eof && len == cs->end - cs->start;
	if (cs->whole)
		memcpy(cs->first, out->hash, HASH_LEN);
	else if (EVP_DigestUpdate(cs->md, out->data, len) != 1)
		return -EIO;
	cs->start += len;
	cs->out_off += len;
	cs->count++;
	return 1;
}

int chunk_stream_finish(struct chunk_stream *cs, uint8_t digest[HASH_LEN], uint64_t *size)
{
	unsigned int olen = 0;

	if (!cs->done)
		return -EINVAL;
	if (cs->whole && cs->count == 1)
		memcpy(digest, cs->first, HASH_LEN);
	else if (EVP_DigestFinal_ex(cs->md, digest, &olen) != 1 || olen != HASH_LEN)
		return -EIO;
	*size = cs->out_off;
	return 0;
}

/* ---- lists ------------------------------------------------------------------------- */

void chunk_list_init(struct chunk_list *l)
{
	memset(l, 0, sizeof(*l));
}

void chunk_list_release(struct chunk_list *l)
{
	if (!l)
		return;
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int reserve(struct chunk_list *l, size_t want)
{
	struct chunk_entry *v;
	size_t cap, bytes;

	if (want <= l->cap)
		return 0;
	cap = l->cap ? l->cap : 64;
	while (cap < want)
		cap *= 2;
	if (__builtin_mul_overflow(cap, sizeof(*v), &bytes))
		return -EOVERFLOW;
	v = realloc(l->v, bytes);
	if (!v)
		return -ENOMEM;
	l->v = v;
	l->cap = cap;
	return 0;
}

int chunk_list_add(struct chunk_list *l, uint32_t len, const uint8_t hash[HASH_LEN])
{
	struct chunk_entry *e;
	int rc;

	if (len == 0 || len > CHUNK_MAX)
		return -EINVAL;
	if (l->n >= CHUNK_LIST_MAX)
		return -EFBIG;
	rc = reserve(l, l->n + 1);
	if (rc < 0)
		return rc;
	e = &l->v[l->n];
	e->off = l->n ? l->v[l->n - 1].off + l->v[l->n - 1].len : 0;
	e->len = len;
	memcpy(e->hash, hash, HASH_LEN);
	l->n++;
	l->size = e->off + len;
	return 0;
}

bool chunk_list_valid(const struct chunk_list *l)
{
	uint64_t off = 0;

	if (l->n > CHUNK_LIST_MAX || (l->n && !l->v))
		return false;
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].len == 0 || l->v[i].len > CHUNK_MAX || l->v[i].off != off)
			return false;
		off += l->v[i].len;
	}
	return off == l->size;
}

int chunk_list_from_fd(int fd, struct chunk_list *out)
{
	struct chunk_stream *cs;
	struct chunk_piece pc;
	uint64_t size;
	int rc;

	rc = chunk_stream_new(fd, &cs);
	if (rc < 0)
		return rc;
	while ((rc = chunk_stream_next(cs, &pc)) > 0) {
		rc = chunk_list_add(out, pc.len, pc.hash);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = chunk_stream_finish(cs, out->digest, &size);
	if (rc == 0 && size != out->size)
		rc = -EIO;
	chunk_stream_free(cs);
	if (rc < 0)
		chunk_list_release(out);
	return rc;
}

size_t chunk_list_encoded_len(size_t n)
{
	return CHUNK_LIST_HDR_LEN + n * CHUNK_LIST_ENT_LEN;
}

int chunk_list_encode(const struct chunk_list *l, struct dfsr_buf *out)
{
	uint8_t hdr[CHUNK_LIST_HDR_LEN] = { 'D', 'F', 'C', 'L', CHUNK_LIST_VERSION, 0, 0, 0 };
	uint8_t ent[CHUNK_LIST_ENT_LEN];
	int rc;

	if (!chunk_list_valid(l))
		return -EINVAL;
	dfsr_put_be64(hdr + 8, l->size);
	memcpy(hdr + 16, l->digest, HASH_LEN);
	dfsr_put_be32(hdr + 16 + HASH_LEN, (uint32_t)l->n);
	rc = dfsr_buf_add(out, hdr, sizeof(hdr));
	for (size_t i = 0; rc == 0 && i < l->n; i++) {
		dfsr_put_be32(ent, l->v[i].len);
		memcpy(ent + 4, l->v[i].hash, HASH_LEN);
		rc = dfsr_buf_add(out, ent, sizeof(ent));
	}
	return rc;
}

/* Bounds-checked reader (STYLE rule 17). */
struct rd {
	const uint8_t *p;
	size_t left;
};

static int rd_bytes(struct rd *r, void *out, size_t n)
{
	if (r->left < n)
		return -EBADMSG;
	memcpy(out, r->p, n);
	r->p += n;
	r->left -= n;
	return 0;
}

static int rd_be32(struct rd *r, uint32_t *v)
{
	uint8_t b[4];

	if (rd_bytes(r, b, sizeof(b)) < 0)
		return -EBADMSG;
	*v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return 0;
}

static int rd_be64(struct rd *r, uint64_t *v)
{
	uint32_t hi, lo;

	if (rd_be32(r, &hi) < 0 || rd_be32(r, &lo) < 0)
		return -EBADMSG;
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

static int decode_header(struct rd *r, struct chunk_list *out, uint32_t *count)
{
	uint8_t magic[8];

	if (rd_bytes(r, magic, sizeof(magic)) < 0 || memcmp(magic, "DFCL", 4) != 0 ||
	    magic[4] != CHUNK_LIST_VERSION || magic[5] || magic[6] || magic[7])
		return -EBADMSG;
	if (rd_be64(r, &out->size) < 0 || rd_bytes(r, out->digest, HASH_LEN) < 0 ||
	    rd_be32(r, count) < 0)
		return -EBADMSG;
	/* The count must match the bytes that are there, before anything is allocated. */
	if (*count > CHUNK_LIST_MAX || r->left != (size_t)*count * CHUNK_LIST_ENT_LEN)
		return -EBADMSG;
	return 0;
}

int chunk_list_decode(const uint8_t *p, size_t len, struct chunk_list *out)
{
	struct rd r = { .p = p, .left = len };
	uint8_t hash[HASH_LEN];
	uint64_t size = 0;
	uint32_t count, clen;
	int rc;

	chunk_list_init(out);
	rc = decode_header(&r, out, &count);
	if (rc < 0)
		goto out_release;
	size = out->size;
	rc = reserve(out, count);
	if (rc < 0)
		goto out_release;
	for (uint32_t i = 0; i < count; i++) {
		if (rd_be32(&r, &clen) < 0 || rd_bytes(&r, hash, HASH_LEN) < 0 || clen == 0 ||
		    clen > CHUNK_MAX) {
			rc = -EBADMSG;
			goto out_release;
		}
		rc = chunk_list_add(out, clen, hash);
		if (rc < 0)
			goto out_release;
	}
	/* chunk_list_add() recomputed size from the lengths: they must agree. */
	if (out->size != size || (count == 0 && size != 0)) {
		rc = -EBADMSG;
		goto out_release;
	}
	return 0;
out_release:
	chunk_list_release(out);
	return rc == -ENOMEM ? rc : -EBADMSG;
}

int chunk_list_find(const struct chunk_list *l, const uint8_t hash[HASH_LEN], size_t *idx)
{
	for (size_t i = 0; i < l->n; i++) {
		if (memcmp(l->v[i].hash, hash, HASH_LEN) == 0) {
			*idx = i;
			return 0;
		}
	}
	return -ENOENT;
}
