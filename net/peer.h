/*
 * peer.h - the member's connections to its partners: TCP listener, one dialer per
 * [peer] with reconnect and backoff, the secure channel on each connection, framing,
 * keep-alives, the per-peer bandwidth limit, and one connection per pair of members.
 *
 * The layer above (net/session.c) sees a connection only once its channel is
 * ESTABLISHED and it is the one connection kept for that peer; it then exchanges whole
 * messages (one decrypted channel frame each) through the callbacks and net_conn_send().
 *
 * One connection per pair: both members dial each other. When a second connection to the
 * same peer reaches ESTABLISHED, the one kept is the one dialled by the member whose static
 * public key is larger (bytewise); the other is closed before the layer above hears of it.
 * Both ends apply the same rule, so they keep the same connection.
 *
 * How both ends agree (the selection frame): the member with the larger key (the
 * "keeper") alone decides which established connection to a peer goes up, and says so by
 * sending one empty frame on it, before any message. The keeper holds an inbound
 * connection while its own dial to that peer is still in progress (connect or handshake):
 * if the dial establishes, the held connection is closed; if it fails, the held one goes
 * up. A newer connection from the same direction replaces an older one that is up (the
 * older one is then a half-open leftover). The other member puts an established
 * connection up only when that empty frame arrives on it, and then closes every other
 * connection to the same peer; a connection not selected within twice the handshake deadline
 * is closed. So the loser is closed on both ends, and up() never fires for it. Empty
 * frames are also the keep-alives; the layer above never sends or sees one.
 *
 * Refusals and losses are events: a key that is not a configured peer, a protocol version
 * or cipher mismatch, a handshake not finished within 10 s -> 5002; an established
 * connection closed for any reason (peer gone, authentication failure, keep-alive timeout
 * of 60 s without a byte) -> 5014. A frame that fails to authenticate closes the
 * connection.
 *
 * Thread: loop. Every function runs on the net_loop thread, and every callback is called
 * there.
 */
#ifndef DFSR_NET_PEER_H
#define DFSR_NET_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/event.h"
#include "net/loop.h"

#define NET_PEER_HS_TIMEOUT_MS 10000      /* handshake deadline */
#define NET_PEER_IDLE_MS       60000      /* close after this long without a byte */
#define NET_PEER_PING_MS       15000      /* send a keep-alive frame after this long idle */
#define NET_PEER_BACKOFF_MIN   250        /* ms; doubles per failed dial */
#define NET_PEER_BACKOFF_MAX   10000      /* ms */
#define NET_PEER_OUT_HIGH      (8u << 20) /* net_conn_queued() above this: stop producing */
#define NET_PEER_OUT_LOW       (2u << 20) /* the writable callback fires below this */
#define NET_PEER_MAX_PENDING   64         /* inbound connections not yet identified */

struct net_peers;
struct net_conn;

struct net_peers_cb {
	/* @c is established and kept; @peer is its index in cfg->peers. */
	void (*up)(void *arg, struct net_conn *c, size_t peer);
	/* One message (a decrypted frame). @buf is valid during the call only. */
	void (*msg)(void *arg, struct net_conn *c, const uint8_t *buf, size_t len);
	/* The output queue of @c fell below NET_PEER_OUT_LOW after being above it. */
	void (*writable)(void *arg, struct net_conn *c);
	/* @c is closed (@err says why: 0 for a stop, -ECONNRESET, -ETIMEDOUT, -EBADMSG ...);
	 * @c is freed when this returns. Only called for connections that were up. */
	void (*down)(void *arg, struct net_conn *c, int err);
	/* An event to log (5002, 5014, ...), with key=value details naming the peer. */
	void (*event)(void *arg, enum dfsr_event ev, const char *details);
	/* net_peers_stop() is complete: every connection is closed (their down callbacks
	 * ran) and the peers object is freed; the config may be released now. Optional. */
	void (*stopped)(void *arg);
	void *arg;
};

struct net_peers_opts {
	struct net_loop *loop;
	const struct config *cfg;  /* borrowed; must outlive the peers (listen, peers) */
	const uint8_t *secret_key; /* 32 bytes, copied */
	struct net_peers_cb cb;
	bool no_dial; /* tests: only accept */
	/* Tests: the timeouts in ms (0 = NET_PEER_HS_TIMEOUT_MS, NET_PEER_IDLE_MS,
	 * NET_PEER_PING_MS). */
	unsigned hs_timeout_ms;
	unsigned idle_ms;
	unsigned ping_ms;
};

/**
 * net_peers_start() - Listen on cfg->listen and start dialling every configured peer.
 * Thread: loop.
 * Return: 0, -EADDRINUSE (and other -errno of bind/listen), -ENOMEM.
 */
int net_peers_start(const struct net_peers_opts *o, struct net_peers **out);

/**
 * net_peers_stop() - Close every connection (down callbacks with err 0), the listener and
 * the timers; frees @p once libuv has closed every handle. NULL-safe.
 * Thread: loop.
 */
void net_peers_stop(struct net_peers *p);

/**
 * net_conn_send() - Seal @msg into one frame and queue it. Never blocks and never refuses
 * for a full queue: the caller watches net_conn_queued() against NET_PEER_OUT_HIGH and
 * waits for the writable callback. The bandwidth limit (bytes per second of the peer's
 * config, 0 = none) paces the writes, not the queueing.
 * Return: 0, -EMSGSIZE (above NET_CHANNEL_MAX_MSG), -ENOTCONN (closing), -ENOMEM;
 *         -EINVAL for an empty message (empty frames are the keep-alives).
 */
int net_conn_send(struct net_conn *c, const void *msg, size_t len);

/* Bytes sealed and not yet written to the socket. */
size_t net_conn_queued(const struct net_conn *c);

/* The peer's index in cfg->peers. */
size_t net_conn_peer(const struct net_conn *c);

/* Wall-clock difference peer - us from the handshake, in ns (DESIGN: clock comparison). */
int64_t net_conn_clock_skew(const struct net_conn *c);

/**
 * net_conn_close() - Close @c (a protocol error found above, @err < 0). The down callback
 * runs later, from the loop, not from inside this call.
 */
void net_conn_close(struct net_conn *c, int err);

/* Thread: loop. Open connections in any state (handshaking, held, up, closing). */
size_t net_peers_conns(const struct net_peers *p);

/* Thread: loop. Established connections waiting to be selected or dropped (HELD). */
size_t net_peers_held(const struct net_peers *p);

/* Thread: loop. The channel's handshake hash (NET_CHANNEL_HASH_LEN bytes, identical on
 * both ends of one connection), e.g. to match the two ends in logs and tests. */
const uint8_t *net_conn_channel_hash(const struct net_conn *c);

/* Per-connection opaque pointer for the layer above. */
void net_conn_set_data(struct net_conn *c, void *data);
void *net_conn_data(const struct net_conn *c);

#endif
