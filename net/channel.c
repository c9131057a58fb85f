/*
 * channel.c - the secure channel: a three-message authenticated key exchange, then
 * length-prefixed AEAD frames. The byte layout, the hash and key chain and the error
 * behaviour are specified in docs/protocol.md, "Secure channel" (cited below as §SC.n);
 * this file follows it step by step, and a second implementation should be written from
 * the document, not from here.
 *
 * The key exchange is shaped after Noise IK (and WireGuard's use of it): the initiator
 * knows the responder's static key, each side contributes a fresh ephemeral key, and the
 * four Diffie-Hellman results es, ss, ee, se are mixed one after the other into a
 * chaining key. A transcript hash h covers every handshake byte (the protocol name, the
 * prologue, the responder's static key, every header, every ephemeral key and every
 * ciphertext) and is the associated data of every handshake AEAD, so a changed byte
 * anywhere, including the cipher offer, fails the next authentication. The traffic keys
 * are derived from the chaining key keyed over the final h. A third message (CONFIRM)
 * proves to the responder that the initiator really completed the exchange; until it
 * arrives the responder sends nothing but its REPLY, which is what makes a replayed
 * HELLO worthless (§SC.7).
 *
 * Everything is a state machine over bytes: net_channel_feed() reassembles messages
 * (be32 length + body) from any split of the input, allocating a body only after its
 * length passed the maximum for the current state, and hands each complete body to the
 * handler of the current state. Any failure goes through channel_kill(), which wipes
 * every secret and makes the error sticky.
 *
 * Handshake AEAD is ChaCha20-Poly1305-IETF with an all-zero nonce: every handshake key
 * comes out of the chain fresh and encrypts exactly one message. Frames use AES-256-GCM
 * or XChaCha20-Poly1305-IETF with the nonce built from a per-direction counter.
 * AES-256-GCM keys are expanded once per direction (crypto_aead_aes256gcm_beforenm() into
 * gcm_tx / gcm_rx, secrets like the keys they come from), not again for every frame.
 *
 * A frame body is decrypted in place, and the reassembly buffer becomes the message: one
 * buffer per frame, no copy. The caller may read the rest of a large body straight into
 * that buffer (net_channel_rx_space(), net_channel_rx_commit()) instead of passing it
 * through its own read buffer.
 *
 * Future work: rekeying after a number of frames (the 2^64 counter will not run out, but
 * long-lived connections would like fresh keys).
 */
#include "net/channel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/util.h"

/* §SC.2: names fed into the hash chain. Never change them within a version. */
static const char channel_protocol_name[] = "dfsr channel 1: X25519 BLAKE2b-256 ChaChaPoly";
static const char channel_prologue[] = "dfsr/1";
static const char label_ck[] = "dfsr/1 ck";
static const char label_key[] = "dfsr/1 key";
static const char label_confirm[] = "dfsr/1 confirm";
static const char label_i2r[] = "dfsr/1 initiator to responder";
static const char label_r2i[] = "dfsr/1 responder to initiator";

/* §SC.3: message layout. */
#define HDR_LEN      8u
#define TYPE_HELLO   0x01u
#define TYPE_REPLY   0x02u
#define TYPE_CONFIRM 0x03u
#define TYPE_REFUSE  0x7fu
#define TIME_LEN     8u
#define HELLO_LEN    (HDR_LEN + 32u + (32u + 16u) + (TIME_LEN + 16u)) /* 112 */
#define REPLY_LEN    (HDR_LEN + 32u + (TIME_LEN + 16u))               /* 64 */
#define CONFIRM_LEN  (HDR_LEN + 16u)                                  /* 24 */
#define REFUSE_LEN   HDR_LEN                                          /* 8 */
/* field offsets in the bodies (docs §SC.3) */
#define HELLO_E      8u  /* ephemeral key */
#define HELLO_S      40u /* enc(static key) */
#define HELLO_T      88u /* enc(time) */
#define REPLY_E      8u
#define REPLY_T      40u
#define LEN_PREFIX   4u
#define KEY_LEN      NET_CHANNEL_KEY_LEN
#define HASH_LEN     NET_CHANNEL_HASH_LEN
#define HS_NONCE_LEN crypto_aead_chacha20poly1305_ietf_NPUBBYTES

static const uint8_t channel_magic[4] = { 'D', 'F', 'S', 'R' };

_Static_assert(crypto_scalarmult_BYTES == KEY_LEN, "X25519 output is 32 bytes");
_Static_assert(crypto_scalarmult_SCALARBYTES == KEY_LEN, "X25519 scalar is 32 bytes");
_Static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == NET_CHANNEL_TAG_LEN, "tag");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == NET_CHANNEL_TAG_LEN, "tag");
_Static_assert(crypto_aead_aes256gcm_ABYTES == NET_CHANNEL_TAG_LEN, "tag");
_Static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == KEY_LEN, "key");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == KEY_LEN, "key");
_Static_assert(crypto_aead_aes256gcm_KEYBYTES == KEY_LEN, "key");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24, "XChaCha nonce");
_Static_assert(crypto_aead_aes256gcm_NPUBBYTES == 12, "GCM nonce");
_Static_assert(HASH_LEN == crypto_generichash_BYTES, "BLAKE2b-256");
_Static_assert(KEY_LEN == crypto_generichash_KEYBYTES, "BLAKE2b keyed with 32 bytes");
_Static_assert(NET_CHANNEL_MAX_FRAME <= UINT32_MAX, "length prefix is be32");
_Static_assert(HELLO_LEN == 112 && REPLY_LEN == 64 && CONFIRM_LEN == 24, "docs §SC.3");
_Static_assert(HELLO_S == HELLO_E + KEY_LEN && HELLO_T == HELLO_S + KEY_LEN + NET_CHANNEL_TAG_LEN &&
		       HELLO_LEN == HELLO_T + TIME_LEN + NET_CHANNEL_TAG_LEN,
	       "HELLO layout");
_Static_assert(REPLY_T == REPLY_E + KEY_LEN &&
		       REPLY_LEN == REPLY_T + TIME_LEN + NET_CHANNEL_TAG_LEN,
	       "REPLY layout");
_Static_assert(NET_CHANNEL_HS_MAX >= HELLO_LEN, "a HELLO fits");

struct channel_msg {
	struct channel_msg *next;
	uint8_t *data;
	size_t len;
};

struct net_channel {
	enum net_channel_role role;
	enum net_channel_state state;
	int err;                    /* sticky error once DEAD */
	unsigned ciphers;           /* accepted (initiator: offered) cipher bits */
	unsigned cipher;            /* agreed frame cipher, 0 before REPLY */
	unsigned peer_version;      /* last version byte read, 0 before */
	int64_t now_ns;             /* our clock, sent in our handshake message */
	int64_t peer_time;          /* valid if have_peer_time */
	net_channel_allow_fn allow; /* responder */
	void *allow_arg;
	bool have_peer_key; /* rs valid */
	bool have_peer_time;
	bool have_hash; /* h is the final transcript hash */

	/* Secrets: wiped by wipe_handshake() / channel_kill() / net_channel_free(). */
	uint8_t s_sk[KEY_LEN];      /* our static secret key */
	uint8_t e_sk[KEY_LEN];      /* our ephemeral secret key */
	uint8_t ck[HASH_LEN];       /* chaining key */
	uint8_t k_confirm[KEY_LEN]; /* CONFIRM key */
	uint8_t k_tx[KEY_LEN];      /* frames we send */
	uint8_t k_rx[KEY_LEN];      /* frames we receive */

	uint8_t s_pk[KEY_LEN]; /* our static public key */
	uint8_t e_pk[KEY_LEN]; /* our ephemeral public key */
	uint8_t rs[KEY_LEN];   /* the peer's static public key */
	uint8_t re[KEY_LEN];   /* the peer's ephemeral public key */
	uint8_t h[HASH_LEN];   /* transcript hash */
	/* AES-256-GCM key schedules of k_tx / k_rx, expanded on first use (gcm_ready). */
	crypto_aead_aes256gcm_state gcm_tx;
	crypto_aead_aes256gcm_state gcm_rx;
	bool gcm_ready;
	uint64_t n_tx; /* counter of the next frame we send */
	uint64_t n_rx; /* counter of the next frame we accept */

	/* Reassembly of the incoming message: prefix, then body. */
	uint8_t prefix[LEN_PREFIX];
	size_t prefix_have;
	uint8_t *body; /* NULL until the prefix passed the checks */
	size_t body_len;
	size_t body_have;

	/* Output queued for the peer. */
	uint8_t *out;
	size_t out_len;
	size_t out_cap;

	/* Decrypted messages, oldest first. */
	struct channel_msg *rx_head;
	struct channel_msg **rx_tail;
	size_t rx_bytes;
};

/* --- small encoders ------------------------------------------------------------------ */

/* §SC.3: the 8-byte header of every handshake message. */
static void put_header(uint8_t hdr[static HDR_LEN], uint8_t type, uint8_t b6)
{
	memcpy(hdr, channel_magic, sizeof(channel_magic));
	hdr[4] = type;
	hdr[5] = NET_CHANNEL_VERSION;
	hdr[6] = b6;
	hdr[7] = 0;
}

/* --- output ------------------------------------------------------------------------- */

/* Reserve @n more output bytes; return where they go, or NULL on -ENOMEM/-EOVERFLOW. */
static uint8_t *out_reserve(struct net_channel *ch, size_t n)
{
	size_t need, cap;
	uint8_t *p;

	if (__builtin_add_overflow(ch->out_len, n, &need))
		return NULL;
	if (need > ch->out_cap) {
		cap = ch->out_cap ? ch->out_cap : 256;
		while (cap < need)
			if (__builtin_mul_overflow(cap, 2, &cap))
				return NULL;
		p = realloc(ch->out, cap);
		if (!p)
			return NULL;
		ch->out = p;
		ch->out_cap = cap;
	}
	p = ch->out + ch->out_len;
	ch->out_len = need;
	return p;
}

/* --- the hash and key chain (§SC.2) --------------------------------------------------- */

/* BLAKE2b-256 of (@a || @b), keyed with @key (NULL: unkeyed). */
static void blake2b(uint8_t out[static HASH_LEN], const uint8_t *key, const void *a, size_t alen,
		    const void *b, size_t blen)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, key ? KEY_LEN : 0, HASH_LEN);
	crypto_generichash_update(&st, a, alen);
	if (blen)
		crypto_generichash_update(&st, b, blen);
	crypto_generichash_final(&st, out, HASH_LEN);
	sodium_memzero(&st, sizeof(st));
}

/* MixHash: h = BLAKE2b-256(h || data). */
static void mix_hash(struct net_channel *ch, const uint8_t *data, size_t len)
{
	blake2b(ch->h, NULL, ch->h, HASH_LEN, data, len);
}

/*
 * MixKey: prk = BLAKE2b-256(key = ck, ikm); ck = BLAKE2b-256(key = prk, "dfsr/1 ck");
 * k = BLAKE2b-256(key = prk, "dfsr/1 key").
 */
static void mix_key(struct net_channel *ch, const uint8_t ikm[static KEY_LEN],
		    uint8_t k[static KEY_LEN])
{
	uint8_t prk[HASH_LEN];

	blake2b(prk, ch->ck, ikm, KEY_LEN, NULL, 0);
	blake2b(ch->ck, prk, label_ck, strlen(label_ck), NULL, 0);
	blake2b(k, prk, label_key, strlen(label_key), NULL, 0);
	sodium_memzero(prk, sizeof(prk));
}

/* MixKey(X25519(@sk, @pk)); an all-zero result (low-order @pk) is -EBADMSG. */
static int mix_dh(struct net_channel *ch, const uint8_t sk[static KEY_LEN],
		  const uint8_t pk[static KEY_LEN], uint8_t k[static KEY_LEN])
{
	uint8_t dh[KEY_LEN];
	int rc = 0;

	if (crypto_scalarmult(dh, sk, pk) != 0) {
		rc = -EBADMSG;
		goto out_wipe;
	}
	mix_key(ch, dh, k);
out_wipe:
	sodium_memzero(dh, sizeof(dh));
	return rc;
}

/* EncryptAndHash: c = ChaCha20-Poly1305(k, nonce 0, ad = h, p); h = H(h || c). */
static void hs_encrypt(struct net_channel *ch, const uint8_t k[static KEY_LEN], const uint8_t *p,
		       size_t plen, uint8_t *c)
{
	static const uint8_t nonce[HS_NONCE_LEN];

	crypto_aead_chacha20poly1305_ietf_encrypt(c, NULL, p, plen, ch->h, HASH_LEN, NULL, nonce,
						  k);
	mix_hash(ch, c, plen + NET_CHANNEL_TAG_LEN);
}

/* DecryptAndHash: the inverse; -EBADMSG if the tag does not verify. */
static int hs_decrypt(struct net_channel *ch, const uint8_t k[static KEY_LEN], const uint8_t *c,
		      size_t plen, uint8_t *p)
{
	static const uint8_t nonce[HS_NONCE_LEN];

	if (crypto_aead_chacha20poly1305_ietf_decrypt(p, NULL, NULL, c, plen + NET_CHANNEL_TAG_LEN,
						      ch->h, HASH_LEN, nonce, k) != 0)
		return -EBADMSG;
	mix_hash(ch, c, plen + NET_CHANNEL_TAG_LEN);
	return 0;
}

/* §SC.2 start: h = H(name); ck = h; MixHash(prologue); MixHash(responder static key). */
static void chain_init(struct net_channel *ch, const uint8_t rs_pub[static KEY_LEN])
{
	blake2b(ch->h, NULL, channel_protocol_name, strlen(channel_protocol_name), NULL, 0);
	memcpy(ch->ck, ch->h, HASH_LEN);
	mix_hash(ch, (const uint8_t *)channel_prologue, strlen(channel_prologue));
	mix_hash(ch, rs_pub, KEY_LEN);
}

/* §SC.5 Split: prk = H(key = ck, h); three keys by label. */
static void chain_split(struct net_channel *ch)
{
	bool ini = ch->role == NET_CHANNEL_INITIATOR;
	uint8_t prk[HASH_LEN];

	blake2b(prk, ch->ck, ch->h, HASH_LEN, NULL, 0);
	blake2b(ch->k_confirm, prk, label_confirm, strlen(label_confirm), NULL, 0);
	blake2b(ini ? ch->k_tx : ch->k_rx, prk, label_i2r, strlen(label_i2r), NULL, 0);
	blake2b(ini ? ch->k_rx : ch->k_tx, prk, label_r2i, strlen(label_r2i), NULL, 0);
	sodium_memzero(prk, sizeof(prk));
	sodium_memzero(ch->ck, sizeof(ch->ck));
	sodium_memzero(ch->e_sk, sizeof(ch->e_sk));
	sodium_memzero(ch->s_sk, sizeof(ch->s_sk));
	ch->have_hash = true;
}

/* --- lifecycle -------------------------------------------------------------------------- */

static void wipe_secrets(struct net_channel *ch)
{
	sodium_memzero(ch->s_sk, sizeof(ch->s_sk));
	sodium_memzero(ch->e_sk, sizeof(ch->e_sk));
	sodium_memzero(ch->ck, sizeof(ch->ck));
	sodium_memzero(ch->k_confirm, sizeof(ch->k_confirm));
	sodium_memzero(ch->k_tx, sizeof(ch->k_tx));
	sodium_memzero(ch->k_rx, sizeof(ch->k_rx));
	sodium_memzero(&ch->gcm_tx, sizeof(ch->gcm_tx));
	sodium_memzero(&ch->gcm_rx, sizeof(ch->gcm_rx));
	ch->gcm_ready = false;
}

static void body_release(struct net_channel *ch)
{
	free(ch->body);
	ch->body = NULL;
	ch->body_len = 0;
	ch->body_have = 0;
	ch->prefix_have = 0;
}

/* Every failure ends here: DEAD for good, secrets gone. Returns @rc. */
static int channel_kill(struct net_channel *ch, int rc)
{
	ch->state = NET_CHANNEL_DEAD;
	ch->err = rc;
	wipe_secrets(ch);
	body_release(ch);
	return rc;
}

static int make_ephemeral(struct net_channel *ch)
{
	randombytes_buf(ch->e_sk, sizeof(ch->e_sk));
	return crypto_scalarmult_base(ch->e_pk, ch->e_sk) == 0 ? 0 : -EINVAL;
}

/* Queue one handshake message (prefix + @len body bytes); returns the body or NULL. */
static uint8_t *out_message(struct net_channel *ch, size_t len)
{
	uint8_t *p = out_reserve(ch, LEN_PREFIX + len);

	if (!p)
		return NULL;
	dfsr_put_be32(p, (uint32_t)len);
	return p + LEN_PREFIX;
}

/* §SC.4 HELLO: hdr | e | enc(s) | enc(time). */
static int send_hello(struct net_channel *ch)
{
	uint8_t k[KEY_LEN], t[TIME_LEN];
	uint8_t *m;
	int rc;

	m = out_message(ch, HELLO_LEN);
	if (!m)
		return -ENOMEM;
	put_header(m, TYPE_HELLO, (uint8_t)ch->ciphers);
	mix_hash(ch, m, HDR_LEN);
	memcpy(m + HELLO_E, ch->e_pk, KEY_LEN);
	mix_hash(ch, ch->e_pk, KEY_LEN);
	rc = mix_dh(ch, ch->e_sk, ch->rs, k); /* es */
	if (rc < 0)
		goto out_wipe;
	hs_encrypt(ch, k, ch->s_pk, KEY_LEN, m + HELLO_S);
	rc = mix_dh(ch, ch->s_sk, ch->rs, k); /* ss */
	if (rc < 0)
		goto out_wipe;
	dfsr_put_be64(t, (uint64_t)ch->now_ns);
	hs_encrypt(ch, k, t, TIME_LEN, m + HELLO_T);
	ch->state = NET_CHANNEL_HELLO_SENT;
out_wipe:
	sodium_memzero(k, sizeof(k));
	return rc;
}

static unsigned usable_ciphers(unsigned want)
{
	unsigned c = (want ? want : NET_CHANNEL_CIPHERS_ALL) & NET_CHANNEL_CIPHERS_ALL;

	if (!crypto_aead_aes256gcm_is_available())
		c &= ~NET_CHANNEL_AES256GCM;
	return c | NET_CHANNEL_XCHACHA20POLY1305;
}

static int check_opts(const struct net_channel_opts *o)
{
	if (!o->secret_key)
		return -EINVAL;
	if (o->role == NET_CHANNEL_INITIATOR)
		return o->peer_key ? 0 : -EINVAL;
	if (o->role == NET_CHANNEL_RESPONDER)
		return o->allow ? 0 : -EINVAL;
	return -EINVAL;
}

int net_channel_new(const struct net_channel_opts *o, struct net_channel **out)
{
	struct net_channel *ch;
	uint8_t probe[KEY_LEN];
	int rc = check_opts(o);

	if (rc < 0)
		return rc;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->role = o->role;
	ch->allow = o->allow;
	ch->allow_arg = o->allow_arg;
	ch->rx_tail = &ch->rx_head;
	ch->ciphers = usable_ciphers(o->ciphers);
	ch->now_ns = o->now_ns ? o->now_ns : dfsr_now_ns();
	memcpy(ch->s_sk, o->secret_key, KEY_LEN);
	rc = -EINVAL;
	if (crypto_scalarmult_base(ch->s_pk, ch->s_sk) != 0)
		goto out_free;
	if (ch->role == NET_CHANNEL_RESPONDER) {
		chain_init(ch, ch->s_pk);
		ch->state = NET_CHANNEL_WAIT_HELLO;
		*out = ch;
		return 0;
	}
	memcpy(ch->rs, o->peer_key, KEY_LEN);
	ch->have_peer_key = true;
	if (crypto_scalarmult(probe, ch->s_sk, ch->rs) != 0)
		goto out_free; /* a low-order point is no one's key */
	if (make_ephemeral(ch) < 0)
		goto out_free;
	chain_init(ch, ch->rs);
	rc = send_hello(ch);
	if (rc < 0)
		goto out_free;
	sodium_memzero(probe, sizeof(probe));
	*out = ch;
	return 0;
out_free:
	sodium_memzero(probe, sizeof(probe));
	net_channel_free(ch);
	return rc == -EBADMSG ? -EINVAL : rc;
}

void net_channel_free(struct net_channel *ch)
{
	struct channel_msg *m, *next;

	if (!ch)
		return;
	wipe_secrets(ch);
	body_release(ch);
	for (m = ch->rx_head; m; m = next) {
		next = m->next;
		free(m->data);
		free(m);
	}
	free(ch->out);
	sodium_memzero(ch, sizeof(*ch));
	free(ch);
}

/* --- handshake input ------------------------------------------------------------------ */

/*
 * §SC.3 common checks of a received handshake body: magic, then the version (a REFUSE is
 * recognised before the version check), then the type and the exact length. The
 * version-independent part is bytes 0..5, so any version can read another's refusal.
 */
static int check_header(struct net_channel *ch, const uint8_t *b, size_t len, uint8_t type,
			size_t want_len)
{
	if (len < HDR_LEN || memcmp(b, channel_magic, sizeof(channel_magic)) != 0)
		return -EBADMSG;
	if (b[4] == TYPE_REFUSE && ch->role == NET_CHANNEL_INITIATOR &&
	    ch->state == NET_CHANNEL_HELLO_SENT) {
		if (len != REFUSE_LEN)
			return -EBADMSG;
		ch->peer_version = b[5];
		return -EPROTONOSUPPORT;
	}
	ch->peer_version = b[5];
	if (b[5] != NET_CHANNEL_VERSION)
		return -EPROTONOSUPPORT;
	if (b[4] != type || len != want_len || b[7] != 0)
		return -EBADMSG;
	return 0;
}

/* §SC.3 REFUSE: what a responder answers to a HELLO of a version it does not speak. */
static void send_refuse(struct net_channel *ch)
{
	uint8_t *m = out_message(ch, REFUSE_LEN);

	/* best effort: without memory the close says enough */
	if (!m)
		return;
	/* byte 5: the highest version we speak, byte 6: the lowest */
	put_header(m, TYPE_REFUSE, NET_CHANNEL_VERSION);
}

/* §SC.4 responder, REPLY: hdr | e | enc(time). */
static int send_reply(struct net_channel *ch)
{
	uint8_t k[KEY_LEN], t[TIME_LEN];
	uint8_t *m;
	int rc;

	rc = make_ephemeral(ch);
	if (rc < 0)
		return rc;
	m = out_message(ch, REPLY_LEN);
	if (!m)
		return -ENOMEM;
	put_header(m, TYPE_REPLY, (uint8_t)ch->cipher);
	mix_hash(ch, m, HDR_LEN);
	memcpy(m + REPLY_E, ch->e_pk, KEY_LEN);
	mix_hash(ch, ch->e_pk, KEY_LEN);
	rc = mix_dh(ch, ch->e_sk, ch->re, k); /* ee */
	if (rc < 0)
		goto out_wipe;
	rc = mix_dh(ch, ch->e_sk, ch->rs, k); /* se */
	if (rc < 0)
		goto out_wipe;
	dfsr_put_be64(t, (uint64_t)ch->now_ns);
	hs_encrypt(ch, k, t, TIME_LEN, m + REPLY_T);
out_wipe:
	sodium_memzero(k, sizeof(k));
	return rc;
}

/* §SC.6: the responder picks the strongest cipher both sides have. */
static int pick_cipher(struct net_channel *ch, uint8_t offer)
{
	if (!(offer & NET_CHANNEL_XCHACHA20POLY1305))
		return -EPROTONOSUPPORT; /* mandatory in every v1 offer */
	if ((offer & NET_CHANNEL_AES256GCM) && (ch->ciphers & NET_CHANNEL_AES256GCM))
		ch->cipher = NET_CHANNEL_AES256GCM;
	else
		ch->cipher = NET_CHANNEL_XCHACHA20POLY1305;
	return 0;
}

/* §SC.4 responder, HELLO: authenticate, ask the allow-list, answer with REPLY. */
static int on_hello(struct net_channel *ch, const uint8_t *b, size_t len)
{
	uint8_t k[KEY_LEN], t[TIME_LEN];
	int rc = check_header(ch, b, len, TYPE_HELLO, HELLO_LEN);

	if (rc == -EPROTONOSUPPORT)
		send_refuse(ch);
	if (rc < 0)
		return rc;
	mix_hash(ch, b, HDR_LEN);
	memcpy(ch->re, b + HELLO_E, KEY_LEN);
	mix_hash(ch, ch->re, KEY_LEN);
	rc = mix_dh(ch, ch->s_sk, ch->re, k); /* es */
	if (rc == 0)
		rc = hs_decrypt(ch, k, b + HELLO_S, KEY_LEN, ch->rs);
	if (rc == 0) {
		ch->have_peer_key = true;
		rc = mix_dh(ch, ch->s_sk, ch->rs, k); /* ss */
	}
	if (rc == 0)
		rc = hs_decrypt(ch, k, b + HELLO_T, TIME_LEN, t);
	sodium_memzero(k, sizeof(k));
	if (rc < 0)
		return rc;
	ch->peer_time = (int64_t)dfsr_get_be64(t);
	ch->have_peer_time = true;
	/* after authentication, so a tampered offer reads as tampering (-EBADMSG) */
	return pick_cipher(ch, b[6]);
}

/* §SC.4 initiator, REPLY: finish the exchange, queue CONFIRM. */
static int on_reply(struct net_channel *ch, const uint8_t *b, size_t len)
{
	uint8_t k[KEY_LEN], t[TIME_LEN];
	int rc = check_header(ch, b, len, TYPE_REPLY, REPLY_LEN);

	if (rc < 0)
		return rc;
	if ((b[6] != NET_CHANNEL_XCHACHA20POLY1305 && b[6] != NET_CHANNEL_AES256GCM) ||
	    !(b[6] & ch->ciphers))
		return -EBADMSG; /* not one cipher of our offer */
	ch->cipher = b[6];
	mix_hash(ch, b, HDR_LEN);
	memcpy(ch->re, b + REPLY_E, KEY_LEN);
	mix_hash(ch, ch->re, KEY_LEN);
	rc = mix_dh(ch, ch->e_sk, ch->re, k); /* ee */
	if (rc == 0)
		rc = mix_dh(ch, ch->s_sk, ch->re, k); /* se */
	if (rc == 0)
		rc = hs_decrypt(ch, k, b + REPLY_T, TIME_LEN, t);
	sodium_memzero(k, sizeof(k));
	if (rc < 0)
		return rc;
	ch->peer_time = (int64_t)dfsr_get_be64(t);
	ch->have_peer_time = true;
	return 0;
}

/* §SC.5 CONFIRM: hdr | tag of ChaCha20-Poly1305(k_confirm, nonce 0, ad = hdr, empty). */
static int send_confirm(struct net_channel *ch)
{
	static const uint8_t nonce[HS_NONCE_LEN];
	static const uint8_t empty[1];
	uint8_t *m = out_message(ch, CONFIRM_LEN);

	if (!m)
		return -ENOMEM;
	put_header(m, TYPE_CONFIRM, 0);
	crypto_aead_chacha20poly1305_ietf_encrypt(m + HDR_LEN, NULL, empty, 0, m, HDR_LEN, NULL,
						  nonce, ch->k_confirm);
	sodium_memzero(ch->k_confirm, sizeof(ch->k_confirm));
	return 0;
}

static int on_confirm(struct net_channel *ch, const uint8_t *b, size_t len)
{
	static const uint8_t nonce[HS_NONCE_LEN];
	uint8_t empty[1];
	int rc = check_header(ch, b, len, TYPE_CONFIRM, CONFIRM_LEN);

	if (rc < 0)
		return rc;
	if (b[6] != 0)
		return -EBADMSG;
	if (crypto_aead_chacha20poly1305_ietf_decrypt(empty, NULL, NULL, b + HDR_LEN,
						      NET_CHANNEL_TAG_LEN, b, HDR_LEN, nonce,
						      ch->k_confirm) != 0)
		return -EBADMSG;
	sodium_memzero(ch->k_confirm, sizeof(ch->k_confirm));
	return 0;
}

/* One complete handshake body, by state (§SC.4, §SC.5). */
static int on_handshake(struct net_channel *ch, const uint8_t *b, size_t len)
{
	int rc;

	switch (ch->state) {
	case NET_CHANNEL_WAIT_HELLO:
		rc = on_hello(ch, b, len);
		if (rc < 0)
			return rc;
		/* §SC.4: the allow-list is asked before a single byte goes out (event 5002). */
		if (!ch->allow(ch->allow_arg, ch->rs))
			return -EKEYREJECTED;
		rc = send_reply(ch);
		if (rc < 0)
			return rc;
		chain_split(ch);
		ch->state = NET_CHANNEL_WAIT_CONFIRM;
		return 0;
	case NET_CHANNEL_HELLO_SENT:
		rc = on_reply(ch, b, len);
		if (rc < 0)
			return rc;
		chain_split(ch);
		rc = send_confirm(ch);
		if (rc < 0)
			return rc;
		ch->state = NET_CHANNEL_ESTABLISHED;
		return 0;
	case NET_CHANNEL_WAIT_CONFIRM:
		rc = on_confirm(ch, b, len);
		if (rc < 0)
			return rc;
		ch->state = NET_CHANNEL_ESTABLISHED;
		return 0;
	case NET_CHANNEL_ESTABLISHED:
	case NET_CHANNEL_DEAD:
		break;
	}
	return -EBADMSG;
}

/* --- frames (§SC.8) ------------------------------------------------------------------ */

/* Nonce = zero bytes || be64(counter): 12 bytes for AES-256-GCM, 24 for XChaCha20. */
static void frame_nonce(uint8_t nonce[static 24], unsigned cipher, uint64_t counter)
{
	size_t n = cipher == NET_CHANNEL_AES256GCM ? 12 : 24;

	memset(nonce, 0, 24);
	dfsr_put_be64(nonce + n - 8, counter);
}

/* Expand both directions' AES-256-GCM keys, once. */
static void gcm_prepare(struct net_channel *ch)
{
	if (ch->gcm_ready)
		return;
	crypto_aead_aes256gcm_beforenm(&ch->gcm_tx, ch->k_tx);
	crypto_aead_aes256gcm_beforenm(&ch->gcm_rx, ch->k_rx);
	ch->gcm_ready = true;
}

/* AEAD over @m into @c (plen + tag), ad = the 4-byte length prefix. */
static void frame_encrypt(struct net_channel *ch, uint8_t *c, const uint8_t *m, size_t plen,
			  const uint8_t ad[static LEN_PREFIX])
{
	uint8_t nonce[24];

	frame_nonce(nonce, ch->cipher, ch->n_tx);
	if (ch->cipher == NET_CHANNEL_AES256GCM) {
		gcm_prepare(ch);
		crypto_aead_aes256gcm_encrypt_afternm(c, NULL, m, plen, ad, LEN_PREFIX, NULL, nonce,
						      &ch->gcm_tx);
	} else {
		crypto_aead_xchacha20poly1305_ietf_encrypt(c, NULL, m, plen, ad, LEN_PREFIX, NULL,
							   nonce, ch->k_tx);
	}
}

/* Open @c (clen bytes with the tag) into @m; @m may equal @c (libsodium allows in-place
 * decryption; on a tag that does not verify the output is garbage and is dropped). */
static int frame_decrypt(struct net_channel *ch, uint8_t *m, const uint8_t *c, size_t clen,
			 const uint8_t ad[static LEN_PREFIX])
{
	uint8_t nonce[24];
	int rc;

	frame_nonce(nonce, ch->cipher, ch->n_rx);
	if (ch->cipher == NET_CHANNEL_AES256GCM) {
		gcm_prepare(ch);
		rc = crypto_aead_aes256gcm_decrypt_afternm(m, NULL, NULL, c, clen, ad, LEN_PREFIX,
							   nonce, &ch->gcm_rx);
	} else {
		rc = crypto_aead_xchacha20poly1305_ietf_decrypt(m, NULL, NULL, c, clen, ad,
								LEN_PREFIX, nonce, ch->k_rx);
	}
	return rc == 0 ? 0 : -EBADMSG;
}

int net_channel_seal(struct net_channel *ch, const void *msg, size_t len)
{
	static const uint8_t empty[1];
	uint8_t *p;
	size_t clen = len + NET_CHANNEL_TAG_LEN;

	if (ch->state == NET_CHANNEL_DEAD)
		return ch->err;
	if (ch->state != NET_CHANNEL_ESTABLISHED)
		return -ENOTCONN;
	if (len > NET_CHANNEL_MAX_MSG)
		return -EMSGSIZE;
	if (ch->n_tx == UINT64_MAX)
		return channel_kill(ch, -EOVERFLOW);
	p = out_reserve(ch, LEN_PREFIX + clen);
	if (!p)
		return -ENOMEM;
	dfsr_put_be32(p, (uint32_t)clen);
	frame_encrypt(ch, p + LEN_PREFIX, len ? msg : empty, len, p);
	ch->n_tx++;
	return 0;
}

/* The complete frame body (ch->body): decrypt it in place with the next counter and queue
 * it as the plaintext (the tag's 16 bytes stay behind it, unused); the channel lets go of
 * the body. */
static int on_frame(struct net_channel *ch)
{
	size_t plen = ch->body_len - NET_CHANNEL_TAG_LEN; /* >= tag: checked with the prefix */
	struct channel_msg *m;
	int rc;

	if (ch->n_rx == UINT64_MAX)
		return -EOVERFLOW;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	rc = frame_decrypt(ch, ch->body, ch->body, ch->body_len, ch->prefix);
	if (rc < 0) {
		free(m);
		return rc;
	}
	ch->n_rx++;
	m->data = ch->body;
	m->len = plen;
	ch->body = NULL; /* the message's now; body_release() resets the rest */
	*ch->rx_tail = m;
	ch->rx_tail = &m->next;
	ch->rx_bytes += plen;
	return 0;
}

/* --- input ----------------------------------------------------------------------------- */

/* The prefix is complete: check it against the current state, allocate the body. */
static int body_start(struct net_channel *ch)
{
	bool frames = ch->state == NET_CHANNEL_ESTABLISHED;
	uint32_t len = dfsr_get_be32(ch->prefix);

	if (len > (frames ? NET_CHANNEL_MAX_FRAME : NET_CHANNEL_HS_MAX))
		return -EMSGSIZE;
	if (len < (frames ? NET_CHANNEL_TAG_LEN : HDR_LEN))
		return -EBADMSG;
	ch->body = malloc(len);
	if (!ch->body)
		return -ENOMEM;
	ch->body_len = len;
	ch->body_have = 0;
	return 0;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* The body is complete: hand it to the current state's handler, ready for a new prefix. */
static int body_done(struct net_channel *ch)
{
	int rc;

	if (ch->state == NET_CHANNEL_ESTABLISHED)
		rc = on_frame(ch);
	else
		rc = on_handshake(ch, ch->body, ch->body_len);
	if (rc < 0)
		return channel_kill(ch, rc);
	body_release(ch);
	return 0;
}

int net_channel_feed(struct net_channel *ch, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t n;
	int rc;

	if (ch->state == NET_CHANNEL_DEAD)
		return ch->err;
	while (len > 0) {
		if (!ch->body) {
			n = min_size(LEN_PREFIX - ch->prefix_have, len);
			memcpy(ch->prefix + ch->prefix_have, p, n);
			ch->prefix_have += n;
			p += n;
			len -= n;
			if (ch->prefix_have < LEN_PREFIX)
				break;
			rc = body_start(ch);
			if (rc < 0)
				return channel_kill(ch, rc);
		}
		n = min_size(ch->body_len - ch->body_have, len);
		memcpy(ch->body + ch->body_have, p, n);
		ch->body_have += n;
		p += n;
		len -= n;
		if (ch->body_have < ch->body_len)
			break;
		rc = body_done(ch);
		if (rc < 0)
			return rc;
	}
	return 0;
}

uint8_t *net_channel_rx_space(struct net_channel *ch, size_t *len)
{
	if (ch->state != NET_CHANNEL_ESTABLISHED || !ch->body)
		return NULL;
	*len = ch->body_len - ch->body_have; /* > 0: a full body is handled at once */
	return ch->body + ch->body_have;
}

int net_channel_rx_commit(struct net_channel *ch, size_t n)
{
	if (ch->state == NET_CHANNEL_DEAD)
		return ch->err;
	if (!ch->body || n > ch->body_len - ch->body_have)
		return channel_kill(ch, -EINVAL);
	ch->body_have += n;
	if (ch->body_have < ch->body_len)
		return 0;
	return body_done(ch);
}

/* --- accessors ------------------------------------------------------------------------ */

int net_channel_pop(struct net_channel *ch, uint8_t **msg, size_t *len)
{
	struct channel_msg *m = ch->rx_head;

	if (!m)
		return -EAGAIN;
	ch->rx_head = m->next;
	if (!ch->rx_head)
		ch->rx_tail = &ch->rx_head;
	ch->rx_bytes -= m->len;
	*msg = m->data;
	*len = m->len;
	free(m);
	return 0;
}

uint8_t *net_channel_out_detach(struct net_channel *ch, size_t *len)
{
	uint8_t *p = ch->out;

	*len = ch->out_len;
	if (!ch->out_len)
		return NULL;
	ch->out = NULL;
	ch->out_len = 0;
	ch->out_cap = 0;
	return p;
}

size_t net_channel_out_bytes(const struct net_channel *ch)
{
	return ch->out_len;
}

size_t net_channel_rx_bytes(const struct net_channel *ch)
{
	return ch->rx_bytes;
}

enum net_channel_state net_channel_state(const struct net_channel *ch)
{
	return ch->state;
}

int net_channel_error(const struct net_channel *ch)
{
	return ch->state == NET_CHANNEL_DEAD ? ch->err : 0;
}

const uint8_t *net_channel_peer_key(const struct net_channel *ch)
{
	return ch->have_peer_key ? ch->rs : NULL;
}

int net_channel_peer_time(const struct net_channel *ch, int64_t *out)
{
	if (!ch->have_peer_time)
		return -ENOTCONN;
	*out = ch->peer_time;
	return 0;
}

unsigned net_channel_peer_version(const struct net_channel *ch)
{
	return ch->peer_version;
}

unsigned net_channel_cipher(const struct net_channel *ch)
{
	return ch->cipher;
}

const uint8_t *net_channel_handshake_hash(const struct net_channel *ch)
{
	return ch->have_hash ? ch->h : NULL;
}
