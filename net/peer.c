/*
 * peer.c - the member's TCP connections to its partners, on the loop thread.
 *
 * One listener accepts partners; one dialer per [peer] connects out, retrying with an
 * exponential backoff (with jitter, so that two members do not stay in lockstep) while
 * that peer has no connection up. Every connection runs a net_channel (net/channel.h):
 * initiator with the configured key of the peer it dialled, responder with an allow-list
 * of the configured keys. This file owns the sockets, the timers and the bytes in
 * flight; the channel owns everything cryptographic.
 *
 * A connection moves CONNECTING (outbound only) -> HANDSHAKE -> HELD -> UP, and from any
 * state to CLOSING. HELD means established but not (yet) the one kept for its peer; the
 * layer above never hears of a connection before UP. The pair rule (net/peer.h): the
 * member with the larger public key, the keeper, decides, and marks its choice with one
 * empty frame sent before anything else; the other member waits for that frame. The
 * keeper holds an inbound connection while its own dial to that peer is in progress,
 * because both members dialling at once is the normal start-up and the keeper's own
 * dial is the one to keep. So whatever the timing, exactly one connection goes up, the
 * same one on both ends, and a loser is closed before anyone calls up() for it.
 *
 * Output: net_conn_send() seals into the channel's output buffer; one uv_write is in
 * flight at a time, and the next write takes everything the channel collected in the
 * meantime (natural batching of small messages). net_conn_queued() is that backlog. With
 * a bandwidth limit a token bucket slices the writes (at most a tenth of a second's
 * worth each) and a timer waits for the tokens; the average rate is the limit.
 *
 * Input: one 64 KiB read buffer per connection, except that the rest of a large frame
 * body is read straight into the channel's buffer for it (net_channel_rx_space(): the
 * bulk of a chunk's bytes is not copied between buffers). Every read is fed to the channel, and
 * the messages it decrypted are delivered at once, synchronously, through the msg
 * callback, so no more than one read's worth of plaintext (plus one partial frame, at
 * most NET_CHANNEL_MAX_FRAME, which the channel checks before allocating) is ever
 * buffered for a connection: a reader that is slow is slow inside the callback, and the
 * socket is not read meanwhile. Unidentified inbound connections are capped
 * (NET_PEER_MAX_PENDING) and, like every connection, must finish the handshake within
 * the deadline.
 *
 * Life cycle: a connection embeds three handles (the socket, a tick timer for the
 * deadlines and keep-alives, a pacing timer) and is freed when the last of them is
 * closed; the down callback runs from there, never from inside net_conn_close(). The
 * peers object is freed once stopping and its listener, dial timers and connections are
 * all closed, so any callback may call net_peers_stop() safely.
 */
#include "net/peer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "core/util.h"
#include "net/channel.h"

#define RBUF_LEN        (64u << 10)
#define RBUF_DIRECT_MIN (16u << 10) /* on_alloc(): a body rest this large is read in place */
#define SKEW_WARN_NS    (5LL * 1000000000LL)
#define NS_PER_MS       1000000LL
#define BURST_MIN       1024.0
#define BURST_MAX       (1024.0 * 1024.0)

enum conn_state {
	CONN_CONNECTING = 1, /* outbound: uv_tcp_connect in flight */
	CONN_HANDSHAKE = 2,  /* TCP up, channel not established */
	CONN_HELD = 3,       /* established, not selected (yet) */
	CONN_UP = 4,         /* the one connection kept for its peer */
	CONN_CLOSING = 5
};

struct peer_slot {
	struct net_peers *p;
	size_t idx;
	bool keeper; /* our key is the larger one: we select the connection */
	uv_timer_t dial_timer;
	unsigned backoff_ms;
	struct net_conn *dialing; /* our outbound connection until it is up or closed */
	struct net_conn *held;    /* an established inbound connection waiting */
	struct net_conn *up;
};

struct net_peers {
	struct net_loop *loop;
	const struct config *cfg;
	uint8_t sk[NET_CHANNEL_KEY_LEN];
	uint8_t pk[NET_CHANNEL_KEY_LEN];
	struct net_peers_cb cb;
	bool no_dial;
	bool stopping;
	unsigned hs_ms, idle_ms, ping_ms, tick_ms;
	uv_tcp_t listener;
	bool listener_closed;
	struct peer_slot *slots;
	size_t npeers;
	size_t timers_open;
	struct net_conn *conns; /* every connection not yet freed */
	size_t nconns;
	size_t npending; /* inbound connections still in HANDSHAKE */
};

struct net_conn {
	struct net_peers *p;
	struct net_conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t tick;
	uv_timer_t pace;
	uv_connect_t creq;
	uv_write_t wreq;
	unsigned open_handles;
	enum conn_state state;
	bool outbound;
	bool pending; /* counted in p->npending */
	bool was_up;
	int err;                /* why it closed */
	struct peer_slot *slot; /* NULL: inbound, not identified yet */
	struct net_channel *ch;
	int64_t t_start, t_established, last_rx, last_tx; /* monotonic ns */
	int64_t skew;                                     /* ns, peer - us */
	/* Output: the detached bytes being written, one uv_write at a time. */
	uint8_t *wbuf;
	size_t wlen, woff, wslice;
	bool writing;
	bool above_high;
	/* Token bucket; rate 0 = unlimited. */
	uint64_t rate;
	double tokens, burst;
	int64_t t_refill;
	uint8_t *rbuf;
	void *data;
	char name[192];
};

static void conn_close(struct net_conn *c, int err);
static void conn_flush(struct net_conn *c);
static void on_dial_timer(uv_timer_t *t);

static void peers_event(struct net_peers *p, enum dfsr_event ev, const char *fmt, ...)
	DFSR_PRINTF(3, 4);

static void peers_event(struct net_peers *p, enum dfsr_event ev, const char *fmt, ...)
{
	char details[EVENT_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(details, sizeof(details), fmt, ap);
	va_end(ap);
	if (p->cb.event)
		p->cb.event(p->cb.arg, ev, details);
	else
		event_log(ev, "%s", details);
}

static void peers_maybe_free(struct net_peers *p)
{
	struct net_peers_cb cb;

	if (!p->stopping || !p->listener_closed || p->timers_open || p->conns)
		return;
	cb = p->cb;
	sodium_memzero(p->sk, sizeof(p->sk));
	free(p->slots);
	free(p);
	if (cb.stopped)
		cb.stopped(cb.arg);
}

static int64_t ms_to_ns(unsigned ms)
{
	return (int64_t)ms * NS_PER_MS;
}

/* --- dialling ---------------------------------------------------------------- */

static void slot_schedule(struct peer_slot *s, bool failed)
{
	struct net_peers *p = s->p;
	unsigned delay = s->backoff_ms;

	if (p->no_dial || p->stopping || s->up || s->dialing)
		return;
	/* Jitter: somewhere in [delay/2, delay]. */
	delay = delay / 2 + randombytes_uniform(delay / 2 + 1);
	if (failed) {
		s->backoff_ms *= 2;
		if (s->backoff_ms > NET_PEER_BACKOFF_MAX)
			s->backoff_ms = NET_PEER_BACKOFF_MAX;
	}
	uv_timer_start(&s->dial_timer, on_dial_timer, delay, 0);
}

/* --- connection objects ------------------------------------------------------ */

static void on_conn_handle_closed(uv_handle_t *h)
{
	struct net_conn *c = h->data;
	struct net_peers *p = c->p;

	if (--c->open_handles > 0)
		return;
	if (c->was_up && p->cb.down)
		p->cb.down(p->cb.arg, c, c->err);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->nconns--;
	net_channel_free(c->ch);
	free(c->wbuf);
	free(c->rbuf);
	free(c);
	peers_maybe_free(p);
}

static void on_tick(uv_timer_t *t);

static struct net_conn *conn_new(struct net_peers *p, bool outbound, struct peer_slot *s)
{
	uv_loop_t *uv = net_loop_uv(p->loop);
	struct net_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->rbuf = malloc(RBUF_LEN);
	if (!c->rbuf || uv_tcp_init(uv, &c->tcp) < 0) {
		free(c->rbuf);
		free(c);
		return NULL;
	}
	/* Timer init cannot fail on Linux. */
	uv_timer_init(uv, &c->tick);
	uv_timer_init(uv, &c->pace);
	c->tcp.data = c;
	c->tick.data = c;
	c->pace.data = c;
	c->open_handles = 3;
	c->p = p;
	c->outbound = outbound;
	c->slot = s;
	c->t_start = dfsr_mono_ns();
	c->last_rx = c->t_start;
	c->last_tx = c->t_start;
	if (s)
		snprintf(c->name, sizeof(c->name), "%s", p->cfg->peers[s->idx].name);
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->nconns++;
	uv_timer_start(&c->tick, on_tick, p->tick_ms, p->tick_ms);
	return c;
}

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, on_conn_handle_closed);
}

static void slot_set_up(struct net_conn *c);

/*
 * Close @c: every handle is closed now, the down callback (for a connection that was up)
 * and the free follow from the last close callback. The slot is updated at once, and a
 * redial is scheduled if the peer is left without a connection.
 */
static void conn_close(struct net_conn *c, int err)
{
	struct net_peers *p = c->p;
	struct peer_slot *s = c->slot;
	struct net_conn *promote = NULL;
	enum conn_state was = c->state;

	if (was == CONN_CLOSING)
		return;
	c->state = CONN_CLOSING;
	c->err = err;
	if (c->pending) {
		c->pending = false;
		p->npending--;
	}
	if (was == CONN_UP && err != 0)
		peers_event(p, EV_CONNECTION_LOST, "peer=%s reason=%s", c->name,
			    dfsr_strerror(err));
	if (s) {
		if (s->held == c)
			s->held = NULL;
		if (s->up == c) {
			s->up = NULL;
			slot_schedule(s, false);
		}
		if (s->dialing == c) {
			s->dialing = NULL;
			/* The keeper's own dial failed: the inbound connection it held wins. */
			if (s->keeper && s->held && !s->up && !p->stopping)
				promote = s->held;
			else
				slot_schedule(s, true);
		}
	}
	close_handle((uv_handle_t *)&c->tcp);
	close_handle((uv_handle_t *)&c->tick);
	close_handle((uv_handle_t *)&c->pace);
	if (promote)
		slot_set_up(promote);
}

static void conn_name_from_socket(struct net_conn *c)
{
	struct sockaddr_storage ss;
	int len = (int)sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *in = (const void *)&ss;

			uv_ip4_name(in, host, sizeof(host));
			port = ntohs(in->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const void *)&ss;

			uv_ip6_name(in6, host, sizeof(host));
			port = ntohs(in6->sin6_port);
		}
	}
	snprintf(c->name, sizeof(c->name), "%s:%u", host, port);
}

/* --- output ------------------------------------------------------------------- */

static size_t conn_queued(const struct net_conn *c)
{
	return (c->wlen - c->woff) + (c->ch ? net_channel_out_bytes(c->ch) : 0);
}

static void on_pace(uv_timer_t *t)
{
	conn_flush(t->data);
}

static void on_write(uv_write_t *req, int status)
{
	struct net_conn *c = dfsr_container_of(req, struct net_conn, wreq);
	struct net_peers *p = c->p;

	c->writing = false;
	if (status < 0) {
		conn_close(c, status); /* a no-op while closing (UV_ECANCELED) */
		return;
	}
	c->woff += c->wslice;
	if (c->woff == c->wlen) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wlen = 0;
		c->woff = 0;
	}
	if (c->above_high && conn_queued(c) < NET_PEER_OUT_LOW) {
		c->above_high = false;
		if (c->state == CONN_UP && p->cb.writable)
			p->cb.writable(p->cb.arg, c);
	}
	conn_flush(c);
}

static void bucket_refill(struct net_conn *c, int64_t now)
{
	double dt = (double)(now - c->t_refill) / 1e9;

	c->t_refill = now;
	c->tokens += dt * (double)c->rate;
	if (c->tokens > c->burst)
		c->tokens = c->burst;
}

/* Write what is queued, one uv_write at a time, paced by the token bucket. */
static void conn_flush(struct net_conn *c)
{
	size_t slice;
	uv_buf_t b;
	int rc;

	if (c->state == CONN_CLOSING || c->state == CONN_CONNECTING || c->writing || !c->ch)
		return;
	if (!c->wbuf) {
		c->wbuf = net_channel_out_detach(c->ch, &c->wlen);
		c->woff = 0;
		if (!c->wbuf)
			return;
	}
	slice = c->wlen - c->woff;
	if (c->rate) {
		int64_t now = dfsr_mono_ns();

		bucket_refill(c, now);
		if (c->tokens < 1.0) {
			double wait_ms = (1.0 - c->tokens) * 1000.0 / (double)c->rate;

			uv_timer_start(&c->pace, on_pace, (uint64_t)wait_ms + 1, 0);
			return;
		}
		if ((double)slice > c->burst)
			slice = (size_t)c->burst;
		c->tokens -= (double)slice;
	}
	if (slice > UINT32_MAX)
		slice = UINT32_MAX;
	b = uv_buf_init((char *)c->wbuf + c->woff, (unsigned)slice);
	rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (rc < 0) {
		conn_close(c, rc);
		return;
	}
	c->writing = true;
	c->wslice = slice;
	c->last_tx = dfsr_mono_ns();
}

/* --- selection and delivery --------------------------------------------------- */

/* @c becomes the one connection of its peer; every other connection to it closes. */
static void slot_set_up(struct net_conn *c)
{
	struct peer_slot *s = c->slot;
	struct net_peers *p = c->p;
	struct net_conn *old = s->up;
	struct net_conn *k;

	s->up = c;
	if (s->dialing == c)
		s->dialing = NULL;
	if (s->held == c)
		s->held = NULL;
	uv_timer_stop(&s->dial_timer);
	s->backoff_ms = NET_PEER_BACKOFF_MIN;
	for (k = p->conns; k; k = k->next)
		if (k != c && k->slot == s && k->state != CONN_CLOSING)
			conn_close(k, k == old ? -ECONNRESET : 0);
	/* The keeper's selection frame: first on the wire, before any message from above.
	 * Sealed before the state says UP, so that a failure closes a connection that the
	 * layer above never saw. */
	if (s->keeper && net_channel_seal(c->ch, NULL, 0) < 0) {
		conn_close(c, net_channel_error(c->ch) ? net_channel_error(c->ch) : -ENOMEM);
		return;
	}
	c->state = CONN_UP;
	c->was_up = true;
	conn_flush(c);
	if (c->skew > SKEW_WARN_NS || c->skew < -SKEW_WARN_NS)
		peers_event(p, EV_CLOCK_SKEW, "peer=%s skew_ms=%lld", c->name,
			    (long long)(c->skew / NS_PER_MS));
	if (p->cb.up)
		p->cb.up(p->cb.arg, c, s->idx);
}

static struct peer_slot *slot_by_key(struct net_peers *p, const uint8_t *key)
{
	size_t i;

	for (i = 0; i < p->npeers; i++)
		if (memcmp(p->cfg->peers[i].public_key, key, NET_CHANNEL_KEY_LEN) == 0)
			return &p->slots[i];
	return NULL;
}

static bool allow_key(void *arg, const uint8_t key[NET_CHANNEL_KEY_LEN])
{
	return slot_by_key(arg, key) != NULL;
}

/* The channel just reached ESTABLISHED: identify the peer and apply the pair rule. */
static void conn_established(struct net_conn *c)
{
	struct net_peers *p = c->p;
	const uint8_t *key = net_channel_peer_key(c->ch);
	struct peer_slot *s = c->slot;
	int64_t t;

	if (c->pending) {
		c->pending = false;
		p->npending--;
	}
	c->t_established = dfsr_mono_ns();
	if (!s)
		s = key ? slot_by_key(p, key) : NULL;
	if (!s) {
		conn_close(c, -EKEYREJECTED); /* the allow callback let it in: cannot happen */
		return;
	}
	c->slot = s;
	snprintf(c->name, sizeof(c->name), "%s", p->cfg->peers[s->idx].name);
	if (net_channel_peer_time(c->ch, &t) == 0)
		c->skew = t - dfsr_now_ns();
	c->rate = p->cfg->peers[s->idx].bandwidth;
	if (c->rate) {
		c->burst = (double)c->rate / 10.0;
		if (c->burst < BURST_MIN)
			c->burst = BURST_MIN;
		if (c->burst > BURST_MAX)
			c->burst = BURST_MAX;
		c->tokens = c->burst;
		c->t_refill = c->t_established;
	}
	c->state = CONN_HELD;
	if (!s->keeper) {
		/* Wait for the keeper's selection frame; at most one inbound waits. */
		if (!c->outbound) {
			if (s->held)
				conn_close(s->held, 0);
			s->held = c;
		}
		return;
	}
	if (s->up) {
		/* A newer connection in the same direction replaces a half-open leftover;
		 * one dialled by the peer loses against ours. */
		if (c->outbound || !s->up->outbound)
			slot_set_up(c);
		else
			conn_close(c, 0);
		return;
	}
	if (!c->outbound && s->dialing) {
		if (s->held)
			conn_close(s->held, 0);
		s->held = c;
		return;
	}
	slot_set_up(c);
}

static void conn_deliver(struct net_conn *c)
{
	struct net_peers *p = c->p;
	uint8_t *m;
	size_t len;

	while (c->state == CONN_HELD || c->state == CONN_UP) {
		if (net_channel_pop(c->ch, &m, &len) < 0)
			return;
		if (c->state == CONN_UP) {
			if (len > 0 && p->cb.msg)
				p->cb.msg(p->cb.arg, c, m, len);
		} else if (len > 0) {
			/* Nothing but the selection frame (or a keep-alive) comes first. */
			conn_close(c, -EBADMSG);
		} else if (!c->slot->keeper) {
			slot_set_up(c);
		}
		free(m);
	}
}

static const char *refusal_reason(int rc)
{
	switch (rc) {
	case -EKEYREJECTED:
		return "unknown key";
	case -EPROTONOSUPPORT:
		return "protocol mismatch";
	case -EBADMSG:
		return "authentication failed";
	case -EMSGSIZE:
		return "oversized handshake message";
	default:
		return dfsr_strerror(rc);
	}
}

static void conn_refused(struct net_conn *c, int rc)
{
	struct net_peers *p = c->p;
	const uint8_t *key = net_channel_peer_key(c->ch);
	char b64[sodium_base64_ENCODED_LEN(NET_CHANNEL_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)] =
		"";
	uint8_t *out;
	size_t len;

	if (rc == -EKEYREJECTED && key)
		sodium_bin2base64(b64, sizeof(b64), key, NET_CHANNEL_KEY_LEN,
				  sodium_base64_VARIANT_ORIGINAL);
	if (rc == -EPROTONOSUPPORT)
		peers_event(p, EV_PARTNER_REFUSED, "peer=%s reason=\"%s\" version=%u", c->name,
			    refusal_reason(rc), net_channel_peer_version(c->ch));
	else if (b64[0])
		peers_event(p, EV_PARTNER_REFUSED, "peer=%s reason=\"%s\" key=%s", c->name,
			    refusal_reason(rc), b64);
	else
		peers_event(p, EV_PARTNER_REFUSED, "peer=%s reason=\"%s\"", c->name,
			    refusal_reason(rc));
	/* A REFUSE the channel queued: one best-effort try, the socket closes now. */
	if (!c->writing && !c->wbuf) {
		out = net_channel_out_detach(c->ch, &len);
		if (out && len <= UINT32_MAX) {
			uv_buf_t b = uv_buf_init((char *)out, (unsigned)len);

			uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		}
		free(out);
	}
	conn_close(c, rc);
}

/* --- input -------------------------------------------------------------------- */

/* The rest of a large frame body is read straight into the channel's buffer for it; a
 * short rest, prefixes and handshake messages go through rbuf (a read there may take
 * several small frames at once). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct net_conn *c = h->data;
	uint8_t *direct = NULL;
	size_t room = 0;

	(void)suggested;
	if (c->ch)
		direct = net_channel_rx_space(c->ch, &room);
	if (direct && room >= RBUF_DIRECT_MIN) {
		*buf = uv_buf_init((char *)direct,
				   (unsigned)(room < UINT32_MAX ? room : UINT32_MAX));
		return;
	}
	*buf = uv_buf_init((char *)c->rbuf, RBUF_LEN);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct net_conn *c = st->data;
	enum net_channel_state before;
	int rc;

	if (c->state == CONN_CLOSING || nread == 0)
		return;
	if (nread < 0) {
		rc = nread == UV_EOF ? -ECONNRESET : (int)nread;
		if (c->state == CONN_HANDSHAKE && c->outbound)
			peers_event(c->p, EV_PARTNER_REFUSED,
				    "peer=%s reason=\"closed during the handshake\"", c->name);
		conn_close(c, rc);
		return;
	}
	c->last_rx = dfsr_mono_ns();
	before = net_channel_state(c->ch);
	if ((const uint8_t *)buf->base == c->rbuf)
		rc = net_channel_feed(c->ch, buf->base, (size_t)nread);
	else
		rc = net_channel_rx_commit(c->ch,
					   (size_t)nread); /* read into the body: on_alloc() */
	if (rc < 0) {
		if (before != NET_CHANNEL_ESTABLISHED)
			conn_refused(c, rc);
		else
			conn_close(c, rc);
		return;
	}
	if (before != NET_CHANNEL_ESTABLISHED &&
	    net_channel_state(c->ch) == NET_CHANNEL_ESTABLISHED) {
		conn_established(c);
		if (c->state == CONN_CLOSING)
			return;
	}
	conn_flush(c); /* REPLY or CONFIRM */
	conn_deliver(c);
}

static int conn_start_channel(struct net_conn *c)
{
	struct net_peers *p = c->p;
	struct net_channel_opts o = {
		.role = c->outbound ? NET_CHANNEL_INITIATOR : NET_CHANNEL_RESPONDER,
		.secret_key = p->sk,
		.allow = allow_key,
		.allow_arg = p,
	};
	int rc;

	if (c->outbound)
		o.peer_key = p->cfg->peers[c->slot->idx].public_key;
	rc = net_channel_new(&o, &c->ch);
	if (rc < 0)
		return rc;
	uv_tcp_nodelay(&c->tcp, 1);
	c->state = CONN_HANDSHAKE;
	rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc < 0)
		return rc;
	conn_flush(c); /* HELLO */
	return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
	struct net_conn *c = dfsr_container_of(req, struct net_conn, creq);
	int rc;

	if (c->state == CONN_CLOSING)
		return;
	if (status < 0) {
		conn_close(c, status);
		return;
	}
	rc = conn_start_channel(c);
	if (rc < 0)
		conn_close(c, rc);
}

static void slot_dial(struct peer_slot *s)
{
	struct net_peers *p = s->p;
	const struct config_addr *a = &p->cfg->peers[s->idx].address;
	struct net_conn *c = conn_new(p, true, s);
	int rc;

	if (!c) {
		slot_schedule(s, true);
		return;
	}
	s->dialing = c;
	c->state = CONN_CONNECTING;
	rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)(const void *)&a->ss,
			    on_connect);
	if (rc < 0)
		conn_close(c, rc);
}

static void on_dial_timer(uv_timer_t *t)
{
	struct peer_slot *s = t->data;

	if (s->p->stopping || s->up || s->dialing)
		return;
	slot_dial(s);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct net_peers *p = dfsr_container_of(server, struct net_peers, listener);
	struct net_conn *c;
	int rc;

	if (status < 0 || p->stopping)
		return;
	c = conn_new(p, false, NULL);
	if (!c)
		return; /* out of memory: libuv keeps the socket unaccepted and the
			 * listener stalls; the member is failing anyway */
	c->state = CONN_HANDSHAKE;
	rc = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (rc < 0) {
		conn_close(c, rc);
		return;
	}
	conn_name_from_socket(c);
	if (p->npending >= NET_PEER_MAX_PENDING) {
		conn_close(c, -EBUSY);
		return;
	}
	c->pending = true;
	p->npending++;
	rc = conn_start_channel(c);
	if (rc < 0)
		conn_close(c, rc);
}

/* --- deadlines and keep-alives ------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
	struct net_conn *c = t->data;
	struct net_peers *p = c->p;
	int64_t now = dfsr_mono_ns();

	switch (c->state) {
	case CONN_CONNECTING:
	case CONN_HANDSHAKE:
		if (now - c->t_start > ms_to_ns(p->hs_ms)) {
			if (c->state == CONN_HANDSHAKE)
				peers_event(p, EV_PARTNER_REFUSED,
					    "peer=%s reason=\"handshake timeout\"", c->name);
			conn_close(c, -ETIMEDOUT);
		}
		break;
	case CONN_HELD:
		/* Up to one deadline for the keeper's own dial, one more for margin. */
		if (now - c->t_established > 2 * ms_to_ns(p->hs_ms))
			conn_close(c, -ETIMEDOUT);
		break;
	case CONN_UP:
		if (now - c->last_rx > ms_to_ns(p->idle_ms)) {
			conn_close(c, -ETIMEDOUT);
		} else if (now - c->last_tx >= ms_to_ns(p->ping_ms) && !c->writing &&
			   conn_queued(c) == 0) {
			if (net_channel_seal(c->ch, NULL, 0) < 0)
				conn_close(c, -EBADMSG);
			else
				conn_flush(c);
		}
		break;
	case CONN_CLOSING:
		break;
	}
}

/* --- the peers object --------------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h)
{
	struct net_peers *p = dfsr_container_of(h, struct net_peers, listener);

	p->listener_closed = true;
	peers_maybe_free(p);
}

static void on_dial_timer_closed(uv_handle_t *h)
{
	struct peer_slot *s = h->data;
	struct net_peers *p = s->p;

	p->timers_open--;
	peers_maybe_free(p);
}

int net_peers_start(const struct net_peers_opts *o, struct net_peers **out)
{
	uv_loop_t *uv = net_loop_uv(o->loop);
	const struct config *cfg = o->cfg;
	struct net_peers *p;
	unsigned m;
	size_t i;
	int rc;

	if (!o->loop || !cfg || !o->secret_key)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->slots = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*p->slots));
	if (!p->slots) {
		free(p);
		return -ENOMEM;
	}
	p->loop = o->loop;
	p->cfg = cfg;
	p->cb = o->cb;
	p->no_dial = o->no_dial;
	p->npeers = cfg->npeers;
	memcpy(p->sk, o->secret_key, sizeof(p->sk));
	crypto_scalarmult_base(p->pk, p->sk);
	p->hs_ms = o->hs_timeout_ms ? o->hs_timeout_ms : NET_PEER_HS_TIMEOUT_MS;
	p->idle_ms = o->idle_ms ? o->idle_ms : NET_PEER_IDLE_MS;
	p->ping_ms = o->ping_ms ? o->ping_ms : NET_PEER_PING_MS;
	m = p->hs_ms < p->idle_ms ? p->hs_ms : p->idle_ms;
	m = m < p->ping_ms ? m : p->ping_ms;
	p->tick_ms = m / 4 < 5 ? 5 : (m / 4 > 1000 ? 1000 : m / 4);
	rc = uv_tcp_init(uv, &p->listener);
	if (rc < 0) {
		free(p->slots);
		free(p);
		return rc;
	}
	for (i = 0; i < p->npeers; i++) {
		struct peer_slot *s = &p->slots[i];

		s->p = p;
		s->idx = i;
		s->keeper = memcmp(p->pk, cfg->peers[i].public_key, NET_CHANNEL_KEY_LEN) >= 0;
		s->backoff_ms = NET_PEER_BACKOFF_MIN;
		uv_timer_init(uv, &s->dial_timer);
		s->dial_timer.data = s;
		p->timers_open++;
	}
	rc = uv_tcp_bind(&p->listener, (const struct sockaddr *)(const void *)&cfg->listen.ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&p->listener, 128, on_connection);
	if (rc < 0) {
		p->cb.stopped = NULL; /* the caller never had it */
		net_peers_stop(p);    /* frees it from the close callbacks */
		return rc;
	}
	if (!p->no_dial)
		for (i = 0; i < p->npeers; i++)
			uv_timer_start(&p->slots[i].dial_timer, on_dial_timer, 0, 0);
	*out = p;
	return 0;
}

void net_peers_stop(struct net_peers *p)
{
	struct net_conn *c;
	size_t i;

	if (!p || p->stopping)
		return;
	p->stopping = true;
	for (c = p->conns; c; c = c->next)
		conn_close(c, 0);
	for (i = 0; i < p->npeers; i++)
		uv_close((uv_handle_t *)&p->slots[i].dial_timer, on_dial_timer_closed);
	uv_close((uv_handle_t *)&p->listener, on_listener_closed);
}

size_t net_peers_conns(const struct net_peers *p)
{
	return p->nconns;
}

size_t net_peers_held(const struct net_peers *p)
{
	const struct net_conn *c;
	size_t n = 0;

	for (c = p->conns; c; c = c->next)
		n += c->state == CONN_HELD;
	return n;
}

/* --- the connection API -------------------------------------------------------- */

int net_conn_send(struct net_conn *c, const void *msg, size_t len)
{
	int rc;

	if (c->state != CONN_UP)
		return -ENOTCONN;
	if (len == 0)
		return -EINVAL;
	if (len > NET_CHANNEL_MAX_MSG)
		return -EMSGSIZE;
	rc = net_channel_seal(c->ch, msg, len);
	if (rc < 0)
		return rc;
	if (conn_queued(c) > NET_PEER_OUT_HIGH)
		c->above_high = true;
	conn_flush(c);
	return 0;
}

size_t net_conn_queued(const struct net_conn *c)
{
	return conn_queued(c);
}

size_t net_conn_peer(const struct net_conn *c)
{
	return c->slot ? c->slot->idx : SIZE_MAX;
}

int64_t net_conn_clock_skew(const struct net_conn *c)
{
	return c->skew;
}

const uint8_t *net_conn_channel_hash(const struct net_conn *c)
{
	return c->ch ? net_channel_handshake_hash(c->ch) : NULL;
}

void net_conn_close(struct net_conn *c, int err)
{
	conn_close(c, err);
}

void net_conn_set_data(struct net_conn *c, void *data)
{
	c->data = data;
}

void *net_conn_data(const struct net_conn *c)
{
	return c->data;
}
