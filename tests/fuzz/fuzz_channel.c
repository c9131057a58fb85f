/*
 * fuzz_channel.c - libFuzzer harness for the secure channel's decoders (net/channel.c).
 *
 * The first input byte picks the victim, the second how the rest is split into feeds (an
 * odd split also writes frame bodies in progress through net_channel_rx_space()):
 *   0  a fresh responder (HELLO parser, allow-list, version refusal)
 *   1  an initiator waiting for REPLY (REPLY and REFUSE parsers)
 *   2  a responder that answered a genuine HELLO, waiting for CONFIRM
 *   3  an established responder (frame reassembly, length checks, decryption)
 *   4  round trip: the rest is cut into messages the initiator seals and an
 *      established responder must return unchanged, in order
 * Any bytes: no crash, no leak, no read out of bounds, and the channel's invariants
 * hold (an error leaves it DEAD with that error; a responder refusing a key or failing
 * a HELLO sent nothing; no frame from arbitrary bytes ever authenticates).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "net/channel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed static keys: inputs that reach deep states stay meaningful across runs. */
static const uint8_t sk_i[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17 };
static const uint8_t sk_r[32] = { 99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89, 88, 87, 86 };

struct fz {
	uint8_t pk_i[32];
	uint8_t pk_r[32];
};

static bool allow(void *arg, const uint8_t key[NET_CHANNEL_KEY_LEN])
{
	const struct fz *z = arg;

	return sodium_memcmp(key, z->pk_i, 32) == 0;
}

static struct net_channel *mk(struct fz *z, enum net_channel_role role, unsigned ciphers)
{
	struct net_channel *ch = NULL;
	struct net_channel_opts o = { .role = role,
				      .secret_key = role == NET_CHANNEL_INITIATOR ? sk_i : sk_r,
				      .peer_key = z->pk_r,
				      .allow = allow,
				      .allow_arg = z,
				      .ciphers = ciphers,
				      .now_ns = 1 };

	if (net_channel_new(&o, &ch) != 0)
		abort();
	return ch;
}

/* Deliver a's output to b; abort if the genuine exchange fails. */
static void xfer(struct net_channel *a, struct net_channel *b)
{
	size_t len;
	uint8_t *p = net_channel_out_detach(a, &len);

	if (p && net_channel_feed(b, p, len) != 0)
		abort();
	free(p);
}

/* Feed @d in pieces of @chunk bytes (0: at once); with an odd @chunk, the bytes that go to
 * a frame body in progress are written into net_channel_rx_space() and committed, as
 * net/peer.c reads large frames. */
static void feed_split(struct net_channel *ch, const uint8_t *d, size_t n, unsigned chunk)
{
	size_t step = chunk ? chunk : n, room;
	uint8_t *space;
	int rc = 0;

	for (size_t off = 0; off < n && rc == 0;) {
		size_t len = n - off < step ? n - off : step;

		space = (chunk & 1u) ? net_channel_rx_space(ch, &room) : NULL;
		if (space) {
			len = len < room ? len : room;
			memcpy(space, d + off, len);
			rc = net_channel_rx_commit(ch, len);
		} else {
			rc = net_channel_feed(ch, d + off, len);
		}
		off += len;
	}
	if (rc != 0 && (net_channel_state(ch) != NET_CHANNEL_DEAD || net_channel_error(ch) != rc))
		abort();
	if (rc == -EKEYREJECTED && net_channel_out_bytes(ch) != 0)
		abort(); /* a refused key must see nothing */
}

static void roundtrip(struct net_channel *ini, struct net_channel *resp, const uint8_t *d, size_t n)
{
	uint8_t *got, *p;
	size_t glen, len, off = 0;

	while (off < n) {
		size_t m = d[off] % 64u;

		off++;
		if (m > n - off)
			m = n - off;
		if (net_channel_seal(ini, d + off, m) != 0)
			abort();
		p = net_channel_out_detach(ini, &len);
		if (net_channel_feed(resp, p, len) != 0 ||
		    net_channel_pop(resp, &got, &glen) != 0 || glen != m ||
		    (m && memcmp(got, d + off, m) != 0))
			abort();
		free(p);
		free(got);
		off += m;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct net_channel *ini, *resp;
	struct fz z;
	unsigned mode, chunk;

	if (sodium_init() < 0)
		abort();
	if (size < 2)
		return 0;
	crypto_scalarmult_base(z.pk_i, sk_i);
	crypto_scalarmult_base(z.pk_r, sk_r);
	mode = data[0] % 5u;
	chunk = data[1] % 8u; /* 0: all at once, else feeds of 1..7 bytes */
	data += 2;
	size -= 2;
	ini = mk(&z, NET_CHANNEL_INITIATOR, (unsigned)(data[-2] >> 7) + 1u);
	resp = mk(&z, NET_CHANNEL_RESPONDER, 0);
	if (mode == 0) {
		feed_split(resp, data, size, chunk);
		if (net_channel_state(resp) == NET_CHANNEL_WAIT_CONFIRM ||
		    net_channel_state(resp) == NET_CHANNEL_ESTABLISHED)
			abort(); /* a HELLO needs the initiator's secret key */
	} else if (mode == 1) {
		feed_split(ini, data, size, chunk);
		if (net_channel_state(ini) == NET_CHANNEL_ESTABLISHED)
			abort(); /* a REPLY needs the responder's ephemeral secret */
	} else {
		xfer(ini, resp);
		if (mode >= 3) {
			xfer(resp, ini);
			xfer(ini, resp);
			if (net_channel_state(resp) != NET_CHANNEL_ESTABLISHED)
				abort();
		}
		if (mode == 4) {
			roundtrip(ini, resp, data, size);
		} else {
			feed_split(resp, data, size, chunk);
			if (net_channel_rx_bytes(resp) != 0)
				abort(); /* forged frames never authenticate */
		}
	}
	net_channel_free(ini);
	net_channel_free(resp);
	return 0;
}
