/*
 * test_peer.c - connections between members (net/peer.c) over real TCP sockets on
 * 127.0.0.1: two or three members in one process on one net_loop, each with its own
 * config (config_parse_string) and key pair. Covered: both dial at once and exactly one
 * connection per pair goes up, the same one on both ends (repeated, for the race);
 * messages both ways up to 16 MiB and the writable callback; three members; an unknown
 * key is refused (5002, no up); a raw client that runs the handshake itself and then
 * sends a tampered frame is closed (-EBADMSG, 5014); keep-alives and the idle and
 * handshake deadlines; reconnect after a restart; the bandwidth limit (a lower bound on
 * the elapsed time only). Every wait polls a condition with a deadline; ASan/LSan check
 * that stopping frees everything (the stopped callback says when).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>

#include "core/config.h"
#include "core/util.h"
#include "net/channel.h"
#include "net/loop.h"
#include "net/peer.h"

#define MAXM     4
#define WAIT_MS  15000
#define BIG      NET_CHANNEL_MAX_MSG
#define HASH_LEN 32

struct fixture;

struct member {
	struct fixture *f;
	int id;
	bool configured;
	struct config cfg;
	uint8_t pk[32], sk[32];
	struct net_peers *peers;
	struct net_peers_opts opts;
	bool echo;
	/* Observed on the loop thread; read under f->lock. */
	int ups, downs, msgs, writables, stopped;
	int ev5002, ev5014, ev3001;
	int last_down_err;
	char last_5002[EVENT_MSG_MAX];
	struct net_conn *conn[MAXM]; /* up connection per peer index */
	uint8_t hash[MAXM][NET_CHANNEL_HASH_LEN];
	size_t rx_total;
	size_t last_len;
	uint8_t last_hash[HASH_LEN];
	int64_t t_last_rx; /* mono ns of the last message */
	int64_t t_up;      /* mono ns of the last up */
	int64_t skew;      /* net_conn_clock_skew() at the last up */
};

struct fixture {
	pthread_mutex_t lock;
	struct net_loop *loop;
	struct member m[MAXM];
	uint16_t port[MAXM];
};

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * A port nobody listens on, below the kernel's ephemeral range (32768 and up by
 * default), so that no outgoing connection of this or another test takes it between
 * this check and the listener's bind.
 */
static uint16_t free_port(const struct fixture *f)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int one = 1;
	int tries, i;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (tries = 0; tries < 1000; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		uint16_t port = (uint16_t)(20000 + randombytes_uniform(12000));
		int rc;

		assert_true(fd >= 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		a.sin_port = htons(port);
		rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
		close(fd);
		for (i = 0; i < MAXM; i++)
			if (f->port[i] == port)
				rc = -1;
		if (rc == 0)
			return port;
	}
	fail_msg("no free port");
	return 0;
}

/* --- callbacks (loop thread) ---------------------------------------------------- */

static void cb_up(void *arg, struct net_conn *c, size_t peer)
{
	struct member *m = arg;

	pthread_mutex_lock(&m->f->lock);
	m->ups++;
	m->t_up = dfsr_mono_ns();
	m->skew = net_conn_clock_skew(c);
	assert_true(peer < MAXM);
	assert_int_equal(net_conn_peer(c), peer);
	m->conn[peer] = c;
	memcpy(m->hash[peer], net_conn_channel_hash(c), NET_CHANNEL_HASH_LEN);
	pthread_mutex_unlock(&m->f->lock);
}

static void cb_msg(void *arg, struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct member *m = arg;

	assert_true(len > 0);
	pthread_mutex_lock(&m->f->lock);
	m->msgs++;
	m->rx_total += len;
	m->last_len = len;
	crypto_generichash(m->last_hash, HASH_LEN, buf, len, NULL, 0);
	m->t_last_rx = dfsr_mono_ns();
	pthread_mutex_unlock(&m->f->lock);
	if (m->echo)
		assert_int_equal(net_conn_send(c, buf, len), 0);
}

static void cb_writable(void *arg, struct net_conn *c)
{
	struct member *m = arg;

	(void)c;
	pthread_mutex_lock(&m->f->lock);
	m->writables++;
	pthread_mutex_unlock(&m->f->lock);
}

static void cb_down(void *arg, struct net_conn *c, int err)
{
	struct member *m = arg;
	size_t i;

	pthread_mutex_lock(&m->f->lock);
	m->downs++;
	m->last_down_err = err;
	for (i = 0; i < MAXM; i++)
		if (m->conn[i] == c)
			m->conn[i] = NULL;
	pthread_mutex_unlock(&m->f->lock);
}

static void cb_event(void *arg, enum dfsr_event ev, const char *details)
{
	struct member *m = arg;

	pthread_mutex_lock(&m->f->lock);
	if (ev == EV_PARTNER_REFUSED) {
		m->ev5002++;
		snprintf(m->last_5002, sizeof(m->last_5002), "%s", details);
	} else if (ev == EV_CONNECTION_LOST) {
		m->ev5014++;
	} else if (ev == EV_CLOCK_SKEW) {
		m->ev3001++;
	}
	pthread_mutex_unlock(&m->f->lock);
}

static void cb_stopped(void *arg)
{
	struct member *m = arg;

	pthread_mutex_lock(&m->f->lock);
	m->stopped++;
	pthread_mutex_unlock(&m->f->lock);
}

/* --- fixture ---------------------------------------------------------------------- */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int i;

	assert_non_null(f);
	assert_true(sodium_init() >= 0);
	pthread_mutex_init(&f->lock, NULL);
	assert_int_equal(net_loop_new(&f->loop), 0);
	assert_int_equal(net_loop_start(f->loop), 0);
	for (i = 0; i < MAXM; i++) {
		f->m[i].f = f;
		f->m[i].id = i;
		crypto_box_keypair(f->m[i].pk, f->m[i].sk);
	}
	*state = f;
	return 0;
}

static void b64(const uint8_t *key, char *out, size_t len)
{
	sodium_bin2base64(out, len, key, 32, sodium_base64_VARIANT_ORIGINAL);
}

/*
 * Configure member @i with the peers in @peers (indexes, -1 terminated); @bw is the
 * bandwidth of every peer section ("" for none); @keys[j] overrides the key of peer j.
 */
static void configure(struct fixture *f, int i, const int *peers, const char *bw)
{
	struct member *m = &f->m[i];
	char text[4096], err[CONFIG_ERR_LEN], key[64];
	int n, j;

	if (m->configured)
		config_release(&m->cfg);
	n = snprintf(text, sizeof(text),
		     "[member]\nname = m%d\nlisten = 127.0.0.1:%u\nkey = /nonexistent/m%d.key\n"
		     "[folder f]\npath = /nonexistent/f%d\nmount = /nonexistent/f%d\n",
		     i, f->port[i], i, i, i);
	for (j = 0; peers[j] >= 0; j++) {
		b64(f->m[peers[j]].pk, key, sizeof(key));
		n += snprintf(text + n, sizeof(text) - (size_t)n,
			      "[peer m%d]\naddress = 127.0.0.1:%u\npublic_key = %s\n%s%s%s",
			      peers[j], f->port[peers[j]], key, bw[0] ? "bandwidth = " : "", bw,
			      bw[0] ? "\n" : "");
	}
	if (config_parse_string(&m->cfg, "test.conf", text, err) != 0)
		fail_msg("config: %s", err);
	m->configured = true;
	m->opts = (struct net_peers_opts){
		.loop = f->loop,
		.cfg = &m->cfg,
		.secret_key = m->sk,
		.cb = { .up = cb_up,
			.msg = cb_msg,
			.writable = cb_writable,
			.down = cb_down,
			.event = cb_event,
			.stopped = cb_stopped,
			.arg = m },
	};
}

struct start_arg {
	struct fixture *f;
	int which[MAXM + 1]; /* -1 terminated */
	int rc;
};

static void start_on_loop(struct net_loop *l, void *arg)
{
	struct start_arg *a = arg;
	int k;

	(void)l;
	for (k = 0; a->which[k] >= 0; k++) {
		struct member *m = &a->f->m[a->which[k]];

		a->rc = net_peers_start(&m->opts, &m->peers);
		if (a->rc < 0)
			return;
	}
}

/* Start several members in one loop turn, so that they dial each other at once. */
static void start_members(struct fixture *f, const int *which)
{
	struct start_arg a = { .f = f };
	int k;

	for (k = 0; which[k] >= 0; k++)
		a.which[k] = which[k];
	a.which[k] = -1;
	assert_int_equal(net_loop_call(f->loop, start_on_loop, &a), 0);
	assert_int_equal(a.rc, 0);
}

static void stop_on_loop(struct net_loop *l, void *arg)
{
	struct member *m = arg;

	(void)l;
	net_peers_stop(m->peers);
}

typedef bool (*cond_fn)(struct fixture *f, void *arg);

struct cond_call {
	struct fixture *f;
	cond_fn cond;
	void *arg;
	bool ok;
};

static void cond_on_loop(struct net_loop *l, void *arg)
{
	struct cond_call *c = arg;

	(void)l;
	pthread_mutex_lock(&c->f->lock);
	c->ok = c->cond(c->f, c->arg);
	pthread_mutex_unlock(&c->f->lock);
}

/* Conditions are evaluated on the loop thread, between callbacks, so they may also look
 * at the peers objects. */
static bool wait_for(struct fixture *f, cond_fn cond, void *arg, int ms)
{
	int64_t end = dfsr_mono_ns() + (int64_t)ms * 1000000;
	struct cond_call c = { f, cond, arg, false };

	for (;;) {
		assert_int_equal(net_loop_call(f->loop, cond_on_loop, &c), 0);
		if (c.ok)
			return true;
		if (dfsr_mono_ns() > end)
			return false;
		sleep_ms(5);
	}
}

static bool is_stopped(struct fixture *f, void *arg)
{
	(void)f;
	return ((struct member *)arg)->stopped > 0;
}

static void stop_member(struct fixture *f, int i)
{
	struct member *m = &f->m[i];

	if (!m->peers)
		return;
	pthread_mutex_lock(&f->lock);
	m->stopped = 0;
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(net_loop_call(f->loop, stop_on_loop, m), 0);
	assert_true(wait_for(f, is_stopped, m, WAIT_MS));
	m->peers = NULL;
}

static void reset_counts(struct member *m)
{
	pthread_mutex_lock(&m->f->lock);
	m->ups = m->downs = m->msgs = m->writables = m->stopped = 0;
	m->ev5002 = m->ev5014 = m->ev3001 = 0;
	m->rx_total = 0;
	memset(m->conn, 0, sizeof(m->conn));
	pthread_mutex_unlock(&m->f->lock);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int i;

	for (i = 0; i < MAXM; i++)
		stop_member(f, i);
	net_loop_free(f->loop);
	for (i = 0; i < MAXM; i++)
		if (f->m[i].configured)
			config_release(&f->m[i].cfg);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

/* --- helpers on the loop ------------------------------------------------------------ */

/* Loop thread (inside a condition). */
static size_t conns_of(struct fixture *f, int i)
{
	return f->m[i].peers ? net_peers_conns(f->m[i].peers) : 0;
}

struct send_arg {
	struct member *m;
	size_t peer;
	const uint8_t *buf;
	size_t len;
	int rc;
	size_t queued;
};

static void send_on_loop(struct net_loop *l, void *arg)
{
	struct send_arg *a = arg;
	struct net_conn *c = a->m->conn[a->peer];

	(void)l;
	if (!c) {
		a->rc = -ENOTCONN;
		return;
	}
	a->rc = net_conn_send(c, a->buf, a->len);
	a->queued = net_conn_queued(c);
}

static int send_msg(struct fixture *f, int from, size_t peer, const void *buf, size_t len,
		    size_t *queued)
{
	struct send_arg a = { .m = &f->m[from], .peer = peer, .buf = buf, .len = len };

	assert_int_equal(net_loop_call(f->loop, send_on_loop, &a), 0);
	if (queued)
		*queued = a.queued;
	return a.rc;
}

struct pair {
	int a, b;      /* member ids */
	size_t ia, ib; /* a's index of b, b's index of a */
};

/* Exactly one connection up on each end, the same one (equal handshake hashes), and no
 * other connection left open. */
static bool pair_settled(struct fixture *f, void *arg)
{
	struct pair *p = arg;
	struct member *a = &f->m[p->a], *b = &f->m[p->b];

	if (!a->conn[p->ia] || !b->conn[p->ib])
		return false;
	return conns_of(f, p->a) == 1 && conns_of(f, p->b) == 1;
}

struct msg_wait {
	struct member *m;
	int msgs;
};

static bool got_msgs(struct fixture *f, void *arg)
{
	struct msg_wait *w = arg;

	(void)f;
	return w->m->msgs >= w->msgs;
}

static void hash_of(const uint8_t *buf, size_t len, uint8_t out[HASH_LEN])
{
	crypto_generichash(out, HASH_LEN, buf, len, NULL, 0);
}

/* --- tests ------------------------------------------------------------------------------ */

static const int ALL2[] = { 0, 1, -1 };
static const int ONLY0[] = { 0, -1 };
static const int ONLY1[] = { 1, -1 };

static void setup_pair(struct fixture *f, const char *bw0, const char *bw1)
{
	f->port[0] = free_port(f);
	f->port[1] = free_port(f);
	configure(f, 0, ONLY1, bw0);
	configure(f, 1, ONLY0, bw1);
	reset_counts(&f->m[0]);
	reset_counts(&f->m[1]);
}

static void pair_connects_once(void **state)
{
	struct fixture *f = *state;
	struct pair pr = { 0, 1, 0, 0 };
	struct msg_wait w;
	uint8_t h[HASH_LEN];
	int round;

	for (round = 0; round < 10; round++) {
		setup_pair(f, "", "");
		start_members(f, round % 2 ? (const int[]){ 1, 0, -1 } : ALL2);
		assert_true(wait_for(f, pair_settled, &pr, WAIT_MS));
		pthread_mutex_lock(&f->lock);
		assert_int_equal(f->m[0].ups, 1);
		assert_int_equal(f->m[1].ups, 1);
		assert_int_equal(f->m[0].downs, 0);
		assert_int_equal(f->m[1].downs, 0);
		assert_memory_equal(f->m[0].hash[0], f->m[1].hash[0], NET_CHANNEL_HASH_LEN);
		assert_int_equal(f->m[0].ev5002 + f->m[1].ev5002, 0);
		assert_int_equal(f->m[0].ev3001 + f->m[1].ev3001, 0);
		pthread_mutex_unlock(&f->lock);

		/* Both ways. */
		assert_int_equal(send_msg(f, 0, 0, "ping", 4, NULL), 0);
		assert_int_equal(send_msg(f, 1, 0, "pong!", 5, NULL), 0);
		w = (struct msg_wait){ &f->m[1], 1 };
		assert_true(wait_for(f, got_msgs, &w, WAIT_MS));
		w = (struct msg_wait){ &f->m[0], 1 };
		assert_true(wait_for(f, got_msgs, &w, WAIT_MS));
		pthread_mutex_lock(&f->lock);
		hash_of((const uint8_t *)"ping", 4, h);
		assert_int_equal(f->m[1].last_len, 4);
		assert_memory_equal(f->m[1].last_hash, h, HASH_LEN);
		hash_of((const uint8_t *)"pong!", 5, h);
		assert_int_equal(f->m[0].last_len, 5);
		assert_memory_equal(f->m[0].last_hash, h, HASH_LEN);
		pthread_mutex_unlock(&f->lock);

		stop_member(f, 0);
		stop_member(f, 1);
		pthread_mutex_lock(&f->lock);
		/* A stop closes the up connection with a down(0); the other side lost it. */
		assert_int_equal(f->m[0].downs, 1);
		assert_int_equal(f->m[0].last_down_err, 0);
		assert_int_equal(f->m[1].downs, 1);
		assert_int_equal(f->m[0].ups, 1);
		assert_int_equal(f->m[1].ups, 1);
		pthread_mutex_unlock(&f->lock);
	}
}

static void big_messages(void **state)
{
	struct fixture *f = *state;
	struct pair pr = { 0, 1, 0, 0 };
	struct msg_wait w;
	uint8_t *big = malloc(BIG + 1);
	uint8_t h[HASH_LEN];
	size_t queued = 0;

	assert_non_null(big);
	randombytes_buf(big, BIG + 1);
	setup_pair(f, "", "");
	f->m[1].echo = true;
	start_members(f, ALL2);
	assert_true(wait_for(f, pair_settled, &pr, WAIT_MS));

	assert_int_equal(send_msg(f, 0, 0, big, BIG + 1, NULL), -EMSGSIZE);
	assert_int_equal(send_msg(f, 0, 0, big, 0, NULL), -EINVAL);
	assert_int_equal(send_msg(f, 0, 0, big, BIG, &queued), 0);
	assert_true(queued > NET_PEER_OUT_HIGH);
	/* 16 MiB there, echoed back whole. */
	w = (struct msg_wait){ &f->m[0], 1 };
	assert_true(wait_for(f, got_msgs, &w, 60000));
	hash_of(big, BIG, h);
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[1].msgs, 1);
	assert_int_equal(f->m[1].last_len, BIG);
	assert_memory_equal(f->m[1].last_hash, h, HASH_LEN);
	assert_int_equal(f->m[0].last_len, BIG);
	assert_memory_equal(f->m[0].last_hash, h, HASH_LEN);
	/* Both queues went above the high mark and drained below the low one. */
	assert_true(f->m[0].writables >= 1);
	assert_true(f->m[1].writables >= 1);
	pthread_mutex_unlock(&f->lock);
	f->m[1].echo = false;
	free(big);
}

static bool three_settled(struct fixture *f, void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < 3; i++)
		if (!f->m[i].conn[0] || !f->m[i].conn[1] || conns_of(f, i) != 2)
			return false;
	return true;
}

static void three_members(void **state)
{
	struct fixture *f = *state;
	struct msg_wait w;
	int i;

	for (i = 0; i < 3; i++)
		f->port[i] = free_port(f);
	configure(f, 0, (const int[]){ 1, 2, -1 }, "");
	configure(f, 1, (const int[]){ 0, 2, -1 }, "");
	configure(f, 2, (const int[]){ 0, 1, -1 }, "");
	for (i = 0; i < 3; i++)
		reset_counts(&f->m[i]);
	start_members(f, (const int[]){ 0, 1, 2, -1 });
	assert_true(wait_for(f, three_settled, NULL, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < 3; i++) {
		assert_int_equal(f->m[i].ups, 2);
		assert_int_equal(f->m[i].downs, 0);
	}
	/* m0's peer 0 is m1 whose peer 0 is m0; m0's peer 1 is m2 whose peer 0 is m0;
	 * m1's peer 1 is m2 whose peer 1 is m1. */
	assert_memory_equal(f->m[0].hash[0], f->m[1].hash[0], NET_CHANNEL_HASH_LEN);
	assert_memory_equal(f->m[0].hash[1], f->m[2].hash[0], NET_CHANNEL_HASH_LEN);
	assert_memory_equal(f->m[1].hash[1], f->m[2].hash[1], NET_CHANNEL_HASH_LEN);
	pthread_mutex_unlock(&f->lock);
	/* m0 -> m2, m2 -> m1, m1 -> m0. */
	assert_int_equal(send_msg(f, 0, 1, "a", 1, NULL), 0);
	assert_int_equal(send_msg(f, 2, 1, "bb", 2, NULL), 0);
	assert_int_equal(send_msg(f, 1, 0, "ccc", 3, NULL), 0);
	for (i = 0; i < 3; i++) {
		w = (struct msg_wait){ &f->m[i], 1 };
		assert_true(wait_for(f, got_msgs, &w, WAIT_MS));
	}
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[2].last_len, 1);
	assert_int_equal(f->m[1].last_len, 2);
	assert_int_equal(f->m[0].last_len, 3);
	pthread_mutex_unlock(&f->lock);
	for (i = 0; i < 3; i++)
		stop_member(f, i);
}

/* The listen address is taken: start fails with -EADDRINUSE and leaves nothing behind. */
static void listen_in_use(void **state)
{
	struct fixture *f = *state;
	struct start_arg a = { .f = f, .which = { 0, -1 } };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t alen = sizeof(sa);
	int busy = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(busy >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(busy, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(busy, 4), 0);
	assert_int_equal(getsockname(busy, (struct sockaddr *)&sa, &alen), 0);
	f->port[0] = ntohs(sa.sin_port);
	f->port[1] = free_port(f);
	configure(f, 0, ONLY1, "");
	reset_counts(&f->m[0]);
	assert_int_equal(net_loop_call(f->loop, start_on_loop, &a), 0);
	assert_int_equal(a.rc, -EADDRINUSE);
	f->m[0].peers = NULL;
	close(busy);
	/* net_loop_free() in the teardown aborts if a handle was left open; LSan checks
	 * the memory. The stopped callback is not for a start that failed. */
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].stopped, 0);
	pthread_mutex_unlock(&f->lock);
}

static bool refused(struct fixture *f, void *arg)
{
	(void)arg;
	return f->m[0].ev5002 >= 1 && f->m[3].ev5002 >= 1;
}

/* m3 knows m0, but m0 does not know m3's key (its only peer is m1). */
static void unknown_key_refused(void **state)
{
	struct fixture *f = *state;

	f->port[0] = free_port(f);
	f->port[1] = free_port(f);
	f->port[3] = free_port(f);
	configure(f, 0, ONLY1, "");
	configure(f, 3, ONLY0, "");
	f->m[0].opts.no_dial = true;
	reset_counts(&f->m[0]);
	reset_counts(&f->m[3]);
	start_members(f, (const int[]){ 0, 3, -1 });
	assert_true(wait_for(f, refused, NULL, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_non_null(strstr(f->m[0].last_5002, "unknown key"));
	assert_non_null(strstr(f->m[0].last_5002, "127.0.0.1:"));
	assert_non_null(strstr(f->m[3].last_5002, "peer=m0"));
	assert_int_equal(f->m[0].ups, 0);
	assert_int_equal(f->m[3].ups, 0);
	pthread_mutex_unlock(&f->lock);
	stop_member(f, 0);
	stop_member(f, 3);
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ups + f->m[3].ups, 0);
	assert_int_equal(f->m[0].downs + f->m[3].downs, 0);
	pthread_mutex_unlock(&f->lock);
}

/* --- a raw client on the test thread: blocking socket, its own net_channel ---------- */

struct raw {
	int fd;
	struct net_channel *ch;
	bool eof;
	size_t rx;
};

static void raw_connect(struct raw *r, uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { .tv_sec = 10 };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(r->fd >= 0);
	/* No blocking read waits forever. */
	assert_int_equal(setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(r->fd, (struct sockaddr *)&a, sizeof(a)), 0);
}

static void raw_write(struct raw *r, const uint8_t *buf, size_t len)
{
	assert_int_equal(dfsr_write_all(r->fd, buf, len), 0);
}

static void raw_pump(struct raw *r)
{
	size_t len;
	uint8_t *out = net_channel_out_detach(r->ch, &len);

	if (out)
		raw_write(r, out, len);
	free(out);
}

/* Read once (waiting up to @ms) and feed the channel; returns the feed's result. */
static int raw_read(struct raw *r, int ms)
{
	struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
	uint8_t buf[4096];
	ssize_t n;

	if (poll(&pfd, 1, ms) <= 0)
		return -ETIMEDOUT;
	n = read(r->fd, buf, sizeof(buf));
	if (n <= 0) {
		r->eof = true;
		return n == 0 ? -ECONNRESET : -errno;
	}
	r->rx += (size_t)n;
	return net_channel_feed(r->ch, buf, (size_t)n);
}

/* Handshake as m@me towards m0 (a clock @skew_ns ahead), then send the empty selection frame (m0
 * ignores it as a keep-alive when m0 is the keeper). */
static void raw_establish(struct fixture *f, struct raw *r, int me, int64_t skew_ns)
{
	struct net_channel_opts o = {
		.role = NET_CHANNEL_INITIATOR,
		.secret_key = f->m[me].sk,
		.peer_key = f->m[0].pk,
		.now_ns = dfsr_now_ns() + skew_ns,
	};
	int64_t end = dfsr_mono_ns() + (int64_t)WAIT_MS * 1000000;

	memset(r, 0, sizeof(*r));
	assert_int_equal(net_channel_new(&o, &r->ch), 0);
	raw_connect(r, f->port[0]);
	raw_pump(r);
	while (net_channel_state(r->ch) != NET_CHANNEL_ESTABLISHED) {
		int rc = raw_read(r, 100);

		assert_true(rc == 0 || rc == -ETIMEDOUT);
		assert_true(dfsr_mono_ns() < end);
	}
	raw_pump(r); /* CONFIRM */
	assert_int_equal(net_channel_seal(r->ch, NULL, 0), 0);
	raw_pump(r);
}

static void raw_close(struct raw *r)
{
	close(r->fd);
	net_channel_free(r->ch);
}

static bool refused_on_0(struct fixture *f, void *arg)
{
	(void)arg;
	return f->m[0].ev5002 >= 1;
}

/* A HELLO of protocol version 2: m0 answers REFUSE, logs 5002 and closes. */
static void protocol_mismatch_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t hello[4 + 112] = { 0, 0, 0, 112, 'D', 'F', 'S', 'R', 1, 2, 1, 0 };
	uint8_t got[64];
	size_t n = 0;
	ssize_t k;
	struct raw r;

	f->port[0] = free_port(f);
	f->port[3] = free_port(f);
	configure(f, 0, (const int[]){ 3, -1 }, "");
	f->m[0].opts.no_dial = true;
	reset_counts(&f->m[0]);
	start_members(f, ONLY0);
	memset(&r, 0, sizeof(r));
	raw_connect(&r, f->port[0]);
	raw_write(&r, hello, sizeof(hello));
	assert_true(wait_for(f, refused_on_0, NULL, WAIT_MS));
	/* REFUSE (be32 8, "DFSR", 0x7f, 1, 1, 0), then the close. */
	while ((k = read(r.fd, got + n, sizeof(got) - n)) > 0)
		n += (size_t)k;
	assert_int_equal(n, 12);
	assert_int_equal(got[3], 8);
	assert_int_equal(got[8], 0x7f);
	assert_int_equal(got[9], NET_CHANNEL_VERSION);
	pthread_mutex_lock(&f->lock);
	assert_non_null(strstr(f->m[0].last_5002, "protocol mismatch"));
	assert_non_null(strstr(f->m[0].last_5002, "version=2"));
	assert_int_equal(f->m[0].ups, 0);
	pthread_mutex_unlock(&f->lock);
	close(r.fd);
	stop_member(f, 0);
}

static bool up_on_0(struct fixture *f, void *arg)
{
	(void)arg;
	return f->m[0].ups >= 1;
}

static bool down_on_0(struct fixture *f, void *arg)
{
	(void)arg;
	return f->m[0].downs >= 1;
}

/* m0 accepts m3 (the raw client); then a frame with one flipped bit closes it. */
static void tampered_frame_closes(void **state)
{
	struct fixture *f = *state;
	struct msg_wait w = { &f->m[0], 1 };
	struct raw r;
	uint8_t *out;
	size_t len;
	int rc, tries;

	f->port[0] = free_port(f);
	f->port[3] = free_port(f);
	configure(f, 0, (const int[]){ 3, -1 }, "");
	f->m[0].opts.no_dial = true;
	reset_counts(&f->m[0]);
	start_members(f, ONLY0);
	raw_establish(f, &r, 3, 10 * 1000000000LL);
	assert_true(wait_for(f, up_on_0, NULL, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ev3001, 1); /* the raw clock is 10 s ahead */
	assert_true(f->m[0].skew > 9 * 1000000000LL && f->m[0].skew < 11 * 1000000000LL);
	pthread_mutex_unlock(&f->lock);

	/* A good frame first: delivered. */
	assert_int_equal(net_channel_seal(r.ch, "hello", 5), 0);
	raw_pump(&r);
	assert_true(wait_for(f, got_msgs, &w, WAIT_MS));

	/* Then one with a bit flipped in the ciphertext. */
	assert_int_equal(net_channel_seal(r.ch, "world", 5), 0);
	out = net_channel_out_detach(r.ch, &len);
	assert_non_null(out);
	assert_int_equal(len, 4 + 5 + NET_CHANNEL_TAG_LEN);
	out[6] ^= 0x01;
	raw_write(&r, out, len);
	free(out);
	assert_true(wait_for(f, down_on_0, NULL, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].last_down_err, -EBADMSG);
	assert_int_equal(f->m[0].ev5014, 1);
	assert_int_equal(f->m[0].msgs, 1); /* "world" never delivered */
	pthread_mutex_unlock(&f->lock);
	/* The raw side sees the close. */
	for (tries = 0; !r.eof && tries < 200; tries++) {
		rc = raw_read(&r, 100);
		(void)rc;
	}
	assert_true(r.eof);
	raw_close(&r);
	stop_member(f, 0);
}

static bool timed_out_on_0(struct fixture *f, void *arg)
{
	(void)arg;
	return f->m[0].downs >= 1 || f->m[0].ev5002 >= 1;
}

/* Short deadlines: a silent raw client gets keep-alives, then is closed for idleness;
 * a client that never sends HELLO is closed by the handshake deadline (5002). */
static void keepalive_and_deadlines(void **state)
{
	struct fixture *f = *state;
	struct raw r;
	int64_t end;
	int rc, pings;

	f->port[0] = free_port(f);
	f->port[3] = free_port(f);
	configure(f, 0, (const int[]){ 3, -1 }, "");
	f->m[0].opts.no_dial = true;
	f->m[0].opts.ping_ms = 50;
	f->m[0].opts.idle_ms = 600;
	f->m[0].opts.hs_timeout_ms = 300;
	reset_counts(&f->m[0]);
	start_members(f, ONLY0);

	raw_establish(f, &r, 3, 0);
	assert_true(wait_for(f, up_on_0, NULL, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ev3001, 0);
	assert_true(f->m[0].skew > -1000000000LL && f->m[0].skew < 1000000000LL);
	pthread_mutex_unlock(&f->lock);
	/* Keep-alives arrive (empty frames: the channel pops them as len 0). */
	end = dfsr_mono_ns() + (int64_t)WAIT_MS * 1000000;
	for (pings = 0;;) {
		uint8_t *m;
		size_t len;

		rc = raw_read(&r, 100);
		if (rc != 0 && rc != -ETIMEDOUT)
			fail_msg("raw_read: %s after %d keep-alives", dfsr_strerror(rc), pings);
		while (net_channel_pop(r.ch, &m, &len) == 0) {
			assert_int_equal(len, 0);
			pings++;
			free(m);
		}
		if (pings >= 3)
			break;
		assert_true(dfsr_mono_ns() < end);
	}
	/* We never answer: m0 closes after idle_ms without a byte. */
	assert_true(wait_for(f, down_on_0, NULL, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].last_down_err, -ETIMEDOUT);
	assert_int_equal(f->m[0].ev5014, 1);
	assert_int_equal(f->m[0].ev5002, 0);
	pthread_mutex_unlock(&f->lock);
	raw_close(&r);

	/* Connect and say nothing. */
	reset_counts(&f->m[0]);
	memset(&r, 0, sizeof(r));
	raw_connect(&r, f->port[0]);
	assert_true(wait_for(f, timed_out_on_0, NULL, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ev5002, 1);
	assert_non_null(strstr(f->m[0].last_5002, "handshake timeout"));
	assert_int_equal(f->m[0].downs, 0);
	pthread_mutex_unlock(&f->lock);
	close(r.fd);
	stop_member(f, 0);
}

static bool both_up(struct fixture *f, void *arg)
{
	int n = *(int *)arg;

	return f->m[0].ups >= n && f->m[1].ups >= n && f->m[0].conn[0] && f->m[1].conn[0];
}

static bool m0_lost(struct fixture *f, void *arg)
{
	(void)arg;
	return f->m[0].downs >= 1 && !f->m[0].conn[0];
}

static void reconnect_after_restart(void **state)
{
	struct fixture *f = *state;
	struct pair pr = { 0, 1, 0, 0 };
	struct msg_wait w = { &f->m[1], 1 };
	int one = 1;

	setup_pair(f, "", "");
	start_members(f, ALL2);
	assert_true(wait_for(f, both_up, &one, WAIT_MS));
	stop_member(f, 1);
	assert_true(wait_for(f, m0_lost, NULL, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ev5014, 1);
	assert_true(f->m[0].last_down_err < 0);
	pthread_mutex_unlock(&f->lock);
	/* m0 keeps dialling (connection refused, backing off); m1 comes back. */
	reset_counts(&f->m[1]);
	start_members(f, ONLY1);
	assert_true(wait_for(f, pair_settled, &pr, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ups, 2);
	assert_int_equal(f->m[1].ups, 1);
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(send_msg(f, 0, 0, "again", 5, NULL), 0);
	assert_true(wait_for(f, got_msgs, &w, WAIT_MS));
	stop_member(f, 0);
	stop_member(f, 1);
}

/*
 * The keeper's own dial hangs in the handshake (its address for the other member is a
 * socket that never answers), so it holds the inbound connection until that dial times
 * out, then selects it: one connection up on both ends, and only after the timeout.
 */
static void keeper_holds_while_dialling(void **state)
{
	struct fixture *f = *state;
	struct pair pr = { 0, 1, 0, 0 };
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int k = memcmp(f->m[0].pk, f->m[1].pk, 32) > 0 ? 0 : 1;
	int n = 1 - k;
	int sink = socket(AF_INET, SOCK_STREAM, 0);
	int64_t t0;
	uint16_t port_n;

	assert_true(sink >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(sink, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(sink, 4), 0); /* connects complete; nobody ever reads */
	assert_int_equal(getsockname(sink, (struct sockaddr *)&a, &alen), 0);
	setup_pair(f, "", "");
	port_n = f->port[n];
	f->port[n] = ntohs(a.sin_port);
	configure(f, k, n == 1 ? ONLY1 : ONLY0, "");
	f->port[n] = port_n;
	f->m[k].opts.hs_timeout_ms = 500;
	t0 = dfsr_mono_ns();
	start_members(f, ALL2);
	assert_true(wait_for(f, pair_settled, &pr, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ups, 1);
	assert_int_equal(f->m[1].ups, 1);
	assert_memory_equal(f->m[0].hash[0], f->m[1].hash[0], NET_CHANNEL_HASH_LEN);
	assert_true(f->m[k].t_up - t0 >= 450 * 1000000LL);
	assert_true(f->m[n].t_up - t0 >= 450 * 1000000LL);
	assert_int_equal(f->m[k].ev5002, 1);
	assert_non_null(strstr(f->m[k].last_5002, "handshake timeout"));
	pthread_mutex_unlock(&f->lock);
	stop_member(f, 0);
	stop_member(f, 1);
	close(sink);
}

/* A relay on its own thread: accepts one connection, waits for the go, then connects
 * to the target and copies bytes both ways until either side closes. */
struct proxy {
	struct fixture *f;
	int lfd;
	uint16_t port, target;
	bool go, stop; /* under f->lock */
	pthread_t th;
};

static bool proxy_flag(struct proxy *x, const bool *flag)
{
	bool v;

	pthread_mutex_lock(&x->f->lock);
	v = *flag;
	pthread_mutex_unlock(&x->f->lock);
	return v;
}

static int proxy_accept(struct proxy *x)
{
	struct pollfd pfd = { .fd = x->lfd, .events = POLLIN };

	while (!proxy_flag(x, &x->stop))
		if (poll(&pfd, 1, 20) == 1)
			return accept(x->lfd, NULL, NULL);
	return -1;
}

static void *proxy_main(void *arg)
{
	struct proxy *x = arg;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(x->target) };
	static __thread uint8_t buf[1 << 16];
	int cfd = proxy_accept(x), tfd = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	while (cfd >= 0 && !proxy_flag(x, &x->go) && !proxy_flag(x, &x->stop))
		poll(NULL, 0, 5);
	if (cfd >= 0 && !proxy_flag(x, &x->stop)) {
		tfd = socket(AF_INET, SOCK_STREAM, 0);
		if (tfd >= 0 && connect(tfd, (struct sockaddr *)&a, sizeof(a)) < 0) {
			close(tfd);
			tfd = -1;
		}
	}
	while (tfd >= 0 && !proxy_flag(x, &x->stop)) {
		struct pollfd pfd[2] = { { .fd = cfd, .events = POLLIN },
					 { .fd = tfd, .events = POLLIN } };
		int i;

		if (poll(pfd, 2, 20) < 0)
			break;
		for (i = 0; i < 2; i++) {
			ssize_t n;

			if (!pfd[i].revents)
				continue;
			n = read(pfd[i].fd, buf, sizeof(buf));
			if (n <= 0 || dfsr_write_all(pfd[1 - i].fd, buf, (size_t)n) < 0)
				goto out;
		}
	}
out:
	if (cfd >= 0)
		close(cfd);
	if (tfd >= 0)
		close(tfd);
	return NULL;
}

struct held_wait {
	int k, n;
};

static bool both_held(struct fixture *f, void *arg)
{
	struct held_wait *h = arg;

	return f->m[h->k].peers && f->m[h->n].peers && net_peers_held(f->m[h->k].peers) == 1 &&
	       net_peers_held(f->m[h->n].peers) == 1;
}

/*
 * Both dial at once and the keeper's own dial is the slow one (a relay holds it back):
 * the keeper holds the inbound connection, the other member holds its outbound one
 * waiting for the selection. Then the keeper's dial goes through: it wins, the held
 * connection is closed on both ends without up(), and both ends keep the same one.
 */
static void keeper_own_dial_wins(void **state)
{
	struct fixture *f = *state;
	struct pair pr = { 0, 1, 0, 0 };
	struct proxy x = { .f = f };
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int k = memcmp(f->m[0].pk, f->m[1].pk, 32) > 0 ? 0 : 1;
	struct held_wait hw = { k, 1 - k };
	uint16_t port_n;

	x.lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(x.lfd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(x.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(x.lfd, 4), 0);
	assert_int_equal(getsockname(x.lfd, (struct sockaddr *)&a, &alen), 0);
	setup_pair(f, "", "");
	x.target = f->port[hw.n];
	port_n = f->port[hw.n];
	f->port[hw.n] = ntohs(a.sin_port);
	configure(f, k, hw.n == 1 ? ONLY1 : ONLY0, "");
	f->port[hw.n] = port_n;
	assert_int_equal(pthread_create(&x.th, NULL, proxy_main, &x), 0);
	start_members(f, ALL2);
	assert_true(wait_for(f, both_held, &hw, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ups + f->m[1].ups, 0);
	x.go = true;
	pthread_mutex_unlock(&f->lock);
	assert_true(wait_for(f, pair_settled, &pr, WAIT_MS));
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->m[0].ups, 1);
	assert_int_equal(f->m[1].ups, 1);
	assert_int_equal(f->m[0].downs + f->m[1].downs, 0);
	assert_memory_equal(f->m[0].hash[0], f->m[1].hash[0], NET_CHANNEL_HASH_LEN);
	assert_int_equal(f->m[0].ev5002 + f->m[1].ev5002, 0);
	pthread_mutex_unlock(&f->lock);
	/* The kept connection is the relayed one: messages cross it. */
	assert_int_equal(send_msg(f, k, 0, "via relay", 9, NULL), 0);
	{
		struct msg_wait w = { &f->m[hw.n], 1 };

		assert_true(wait_for(f, got_msgs, &w, WAIT_MS));
	}
	stop_member(f, 0);
	stop_member(f, 1);
	pthread_mutex_lock(&f->lock);
	x.stop = true;
	pthread_mutex_unlock(&f->lock);
	pthread_join(x.th, NULL);
	close(x.lfd);
}

static bool got_bytes(struct fixture *f, void *arg)
{
	(void)arg;
	return f->m[0].rx_total >= 3u << 20;
}

/* m1 sends to m0 at most 1 MiB/s: 3 MiB take more than 2 s (burst 0.1 s). */
static void bandwidth_limit(void **state)
{
	struct fixture *f = *state;
	struct pair pr = { 0, 1, 0, 0 };
	uint8_t *buf = calloc(1, 1u << 20);
	int64_t t0, t1;
	int i;

	assert_non_null(buf);
	setup_pair(f, "", "1M");
	start_members(f, ALL2);
	assert_true(wait_for(f, pair_settled, &pr, WAIT_MS));
	t0 = dfsr_mono_ns();
	for (i = 0; i < 3; i++)
		assert_int_equal(send_msg(f, 1, 0, buf, 1u << 20, NULL), 0);
	assert_true(wait_for(f, got_bytes, NULL, 30000));
	pthread_mutex_lock(&f->lock);
	t1 = f->m[0].t_last_rx;
	assert_int_equal(f->m[0].msgs, 3);
	pthread_mutex_unlock(&f->lock);
	assert_true(t1 - t0 > 2000 * 1000000LL);
	stop_member(f, 0);
	stop_member(f, 1);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(pair_connects_once, setup, teardown),
		cmocka_unit_test_setup_teardown(big_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(three_members, setup, teardown),
		cmocka_unit_test_setup_teardown(listen_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(unknown_key_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(tampered_frame_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(protocol_mismatch_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(keepalive_and_deadlines, setup, teardown),
		cmocka_unit_test_setup_teardown(keeper_holds_while_dialling, setup, teardown),
		cmocka_unit_test_setup_teardown(keeper_own_dial_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(reconnect_after_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(bandwidth_limit, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
