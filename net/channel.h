/*
 * channel.h - the secure channel between two members: handshake, then AEAD frames.
 *
 * A channel is a pure state machine over byte buffers: no sockets, no libuv, no clock
 * reads except the one wall-clock sample it sends in the handshake. The session code
 * feeds it the bytes it read (net_channel_feed()), writes out what it produced
 * (net_channel_out_detach()), seals outgoing messages (net_channel_seal()) and pops
 * the decrypted incoming ones (net_channel_pop()). The bytes on the wire are specified
 * in docs/protocol.md, "Secure channel"; this header is the contract of the C API.
 *
 * The handshake is three messages (Noise-IK-like, libsodium primitives only):
 *   1. initiator -> responder  HELLO:   version, cipher offer, ephemeral key, the
 *                                       initiator's static key (encrypted), its clock
 *   2. responder -> initiator  REPLY:   version, chosen cipher, ephemeral key, clock
 *   3. initiator -> responder  CONFIRM: proves the initiator finished the key exchange
 * The initiator knows the responder's static public key in advance (from the config);
 * the responder learns the initiator's from HELLO and asks the allow callback before it
 * sends a single byte. Both sides then hold one key per direction; every frame after
 * the handshake is be32 length + AEAD ciphertext, the nonce an implicit per-direction
 * counter.
 *
 * Invariants:
 * - State only moves forward: HELLO_SENT -> ESTABLISHED (initiator),
 *   WAIT_HELLO -> WAIT_CONFIRM -> ESTABLISHED (responder), and any state -> DEAD.
 *   DEAD is final: every later feed or seal returns the error that killed the channel
 *   (messages decrypted before can still be popped).
 * - Nothing but handshake messages is produced before ESTABLISHED: net_channel_seal()
 *   refuses with -ENOTCONN. A responder reaches ESTABLISHED only after CONFIRM
 *   authenticated, so a replayed HELLO never yields a channel that carries data.
 * - A responder whose allow callback refuses the initiator's key produces no output
 *   at all (-EKEYREJECTED; the caller logs event 5002 and closes).
 * - Every length on the wire is checked against NET_CHANNEL_HS_MAX (handshake) or
 *   NET_CHANNEL_MAX_FRAME (frames) before anything is allocated for it.
 * - Any byte that fails to authenticate kills the channel (-EBADMSG); incoming frames
 *   must arrive exactly in order, once (the counter is never sent).
 * - The channel keeps no time: the caller closes a connection whose handshake has not
 *   reached ESTABLISHED within its deadline (a replayed HELLO stalls in WAIT_CONFIRM).
 * - Output only grows until the caller takes it with net_channel_out_detach(); the caller
 *   bounds it by not sealing while net_channel_out_bytes() is above its budget.
 * - Secrets (static secret key, ephemeral secret, chaining key, traffic keys) live only
 *   inside struct net_channel and are wiped when the handshake ends, when the channel
 *   dies, and in net_channel_free(). Decrypted messages handed out are not secrets.
 *
 * Thread: loop. A channel is not thread-safe; one thread (the libuv loop thread that
 * owns the socket) makes every call. sodium_init() must have run (main does it).
 */
#ifndef DFSR_NET_CHANNEL_H
#define DFSR_NET_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_CHANNEL_KEY_LEN   32u         /* X25519 public and secret keys */
#define NET_CHANNEL_TAG_LEN   16u         /* AEAD tag, both ciphers */
#define NET_CHANNEL_MAX_MSG   (16u << 20) /* largest plaintext in one frame: 16 MiB */
#define NET_CHANNEL_MAX_FRAME (NET_CHANNEL_MAX_MSG + NET_CHANNEL_TAG_LEN)
#define NET_CHANNEL_HS_MAX    1024u /* largest handshake message body, any version */
#define NET_CHANNEL_VERSION   1u    /* the protocol version this code speaks */
#define NET_CHANNEL_HASH_LEN  32u   /* handshake transcript hash */

/* Ciphers for frames, as bits of the offer (docs/protocol.md, "Cipher negotiation"). */
#define NET_CHANNEL_XCHACHA20POLY1305 0x01u /* always available, mandatory in every offer */
#define NET_CHANNEL_AES256GCM         0x02u /* only where the CPU has AES-NI + PCLMUL */
#define NET_CHANNEL_CIPHERS_ALL       (NET_CHANNEL_XCHACHA20POLY1305 | NET_CHANNEL_AES256GCM)

enum net_channel_role {
	NET_CHANNEL_INITIATOR = 1, /* dialled out; knows the peer's public key */
	NET_CHANNEL_RESPONDER = 2  /* accepted; learns the peer's key from HELLO */
};

enum net_channel_state {
	NET_CHANNEL_HELLO_SENT = 1,   /* initiator: HELLO queued, waiting for REPLY */
	NET_CHANNEL_WAIT_HELLO = 2,   /* responder: waiting for HELLO */
	NET_CHANNEL_WAIT_CONFIRM = 3, /* responder: REPLY queued, waiting for CONFIRM */
	NET_CHANNEL_ESTABLISHED = 4,  /* frames flow both ways */
	NET_CHANNEL_DEAD = 5          /* failed; final */
};

struct net_channel;

/**
 * net_channel_allow_fn - Is this initiator static key one of the configured peers?
 * @arg: net_channel_opts.allow_arg
 * @key: the initiator's static public key, decrypted from HELLO and authenticated as
 *       far as the handshake can at that point (the sender knows the matching secret
 *       key, or ours)
 *
 * Thread: loop (called from inside net_channel_feed()).
 * Return: true to continue the handshake; false refuses it (-EKEYREJECTED).
 */
typedef bool (*net_channel_allow_fn)(void *arg, const uint8_t key[NET_CHANNEL_KEY_LEN]);

struct net_channel_opts {
	enum net_channel_role role;
	/* Our static X25519 secret key (NET_CHANNEL_KEY_LEN bytes); borrowed, copied. */
	const uint8_t *secret_key;
	/* Initiator only: the responder's static public key; borrowed, copied. */
	const uint8_t *peer_key;
	/* Responder only: the allow-list; required. */
	net_channel_allow_fn allow;
	void *allow_arg;
	/* Ciphers this side accepts (NET_CHANNEL_* bits); 0 means every one the CPU has.
	 * XChaCha20-Poly1305 is always added. AES-256-GCM is dropped where unavailable. */
	unsigned ciphers;
	/* Wall clock sent in the handshake, ns since the epoch; 0 means dfsr_now_ns(). */
	int64_t now_ns;
};

/**
 * net_channel_new() - A channel in its first handshake state.
 * @o:   options; an initiator has HELLO queued in its output on return
 * @out: receives the channel
 *
 * Thread: loop.
 * Ownership: caller frees the result with net_channel_free().
 * Return: 0; -EINVAL if a required key or callback is missing, the role is unknown, or
 *         a key is not a valid X25519 key (the peer key is a low-order point);
 *         -ENOMEM.
 */
int net_channel_new(const struct net_channel_opts *o, struct net_channel **out);

/**
 * net_channel_free() - Wipe every secret and free the channel, its buffers and the
 * messages not popped. NULL-safe.
 * Thread: loop.
 */
void net_channel_free(struct net_channel *ch);

/**
 * net_channel_feed() - Consume bytes read from the peer.
 * @ch:  channel
 * @buf: bytes; any split is fine (one byte at a time, several frames at once)
 * @len: number of bytes
 *
 * Every byte is consumed. Complete handshake messages advance the state (and may queue
 * output: REPLY, CONFIRM, or a version refusal); complete frames are decrypted and
 * queued for net_channel_pop(). At most one partial message is buffered, allocated
 * only after its length prefix passed the maximum check. Decrypted messages stay
 * queued until popped: the caller bounds them by stopping reads while
 * net_channel_rx_bytes() is above its budget. On any error the channel is DEAD, and
 * the output may still hold a version refusal worth sending before the close.
 *
 * Thread: loop.
 * Return: 0;
 *         -EBADMSG: a handshake message or frame is malformed or failed to
 *                   authenticate (also a replayed or reordered frame);
 *         -EKEYREJECTED: responder: the allow callback refused the initiator's key
 *                   (event 5002); nothing was sent;
 *         -EPROTONOSUPPORT: the peer speaks another protocol version
 *                   (net_channel_peer_version() tells which), or offers no cipher
 *                   we accept;
 *         -EMSGSIZE: a length prefix above NET_CHANNEL_HS_MAX during the handshake or
 *                   above NET_CHANNEL_MAX_FRAME after it;
 *         -EOVERFLOW: the receive counter is exhausted (2^64 - 1 frames);
 *         -ENOMEM;
 *         or, if the channel was already DEAD, the error that killed it.
 */
int net_channel_feed(struct net_channel *ch, const void *buf, size_t len);

/**
 * net_channel_rx_space() - Where the next bytes from the peer may be read directly.
 * @ch:  channel
 * @len: receives the number of bytes that fit there (> 0) when the result is not NULL
 *
 * While a frame body is being reassembled, its missing bytes are the next ones on the
 * wire: the caller may read up to *@len bytes straight into the returned buffer and
 * report them with net_channel_rx_commit() instead of passing them to
 * net_channel_feed() through a buffer of its own (one copy less per frame). The pointer
 * is valid until the next call that feeds, commits, pops or frees.
 *
 * Thread: loop.
 * Return: the buffer, or NULL (no body in progress, or not ESTABLISHED: use feed).
 */
uint8_t *net_channel_rx_space(struct net_channel *ch, size_t *len);

/**
 * net_channel_rx_commit() - Account for @n bytes read into net_channel_rx_space()'s
 * buffer; a body that is complete is handled as net_channel_feed() handles it.
 *
 * Thread: loop.
 * Return: 0; -EINVAL (and the channel dies) if @n exceeds the space there was or no
 *         body is in progress; otherwise as net_channel_feed().
 */
int net_channel_rx_commit(struct net_channel *ch, size_t n);

/**
 * net_channel_seal() - Encrypt one message into a frame and queue it for output.
 * @ch:  an ESTABLISHED channel
 * @msg: plaintext; may be NULL when @len is 0
 * @len: at most NET_CHANNEL_MAX_MSG; 0 is a valid (empty) message
 *
 * Thread: loop.
 * Return: 0; -ENOTCONN before ESTABLISHED; -EMSGSIZE if @len is too large; -EOVERFLOW
 *         when the send counter is exhausted (the channel dies); -ENOMEM; or the error
 *         that killed a DEAD channel.
 */
int net_channel_seal(struct net_channel *ch, const void *msg, size_t len);

/**
 * net_channel_pop() - Take the oldest decrypted message.
 * @ch:  channel
 * @msg: receives the message (never NULL, even for an empty message)
 * @len: receives its length
 *
 * Messages decrypted before the channel died can still be popped.
 * Thread: loop.
 * Ownership: the caller free()s *@msg.
 * Return: 0, or -EAGAIN if no message is queued (@msg and @len untouched).
 */
int net_channel_pop(struct net_channel *ch, uint8_t **msg, size_t *len);

/**
 * net_channel_out_detach() - Take every byte queued for the peer.
 * @ch:  channel
 * @len: receives the number of bytes (0 if none)
 *
 * Thread: loop.
 * Ownership: the caller free()s the result (e.g. in the uv_write callback).
 * Return: the bytes (handed over, not copied), or NULL when nothing is queued
 *         (*@len is then 0).
 */
uint8_t *net_channel_out_detach(struct net_channel *ch, size_t *len);

/* Thread: loop. Bytes queued for output (not yet detached). */
size_t net_channel_out_bytes(const struct net_channel *ch);
/* Thread: loop. Plaintext bytes decrypted and not yet popped. */
size_t net_channel_rx_bytes(const struct net_channel *ch);

/* Thread: loop. */
enum net_channel_state net_channel_state(const struct net_channel *ch);
/* Thread: loop. The error that killed the channel, 0 while it is alive. */
int net_channel_error(const struct net_channel *ch);

/**
 * net_channel_peer_key() - The peer's static public key.
 * Initiator: the configured key. Responder: the key from HELLO once it decrypted,
 * including a key the allow callback refused (for event 5002); trustworthy only in
 * ESTABLISHED.
 * Thread: loop.
 * Return: NET_CHANNEL_KEY_LEN bytes owned by @ch, or NULL while unknown.
 */
const uint8_t *net_channel_peer_key(const struct net_channel *ch);

/**
 * net_channel_peer_time() - The wall clock the peer sent in its handshake message.
 * @ch:  channel
 * @out: receives ns since the epoch
 *
 * The caller compares it with its own clock at receipt (DESIGN: log when partners'
 * clocks differ by more than a few seconds). Trustworthy only in ESTABLISHED.
 * Thread: loop.
 * Return: 0, or -ENOTCONN while the peer's handshake message has not authenticated.
 */
int net_channel_peer_time(const struct net_channel *ch, int64_t *out);

/* Thread: loop. The protocol version the peer announced, 0 while none was read. */
unsigned net_channel_peer_version(const struct net_channel *ch);

/* Thread: loop. The frame cipher (one NET_CHANNEL_* bit), 0 while not agreed. */
unsigned net_channel_cipher(const struct net_channel *ch);

/**
 * net_channel_handshake_hash() - The final transcript hash, identical on both sides
 * (channel binding; logs may print a prefix of it to match the two ends).
 * Thread: loop.
 * Return: NET_CHANNEL_HASH_LEN bytes owned by @ch, or NULL before the REPLY was
 *         processed.
 */
const uint8_t *net_channel_handshake_hash(const struct net_channel *ch);

#endif
