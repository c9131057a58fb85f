/*
 * test_hostile.c - a member's sessions against a partner that holds a configured key and
 * speaks the protocol, but sends hostile content: names with "/" and "..", DfsrPrivate at
 * the root, records whose parent does not exist, the folder root as an object, too many
 * xattrs, a wrong protocol version, frames that are not protobuf, chunks for transfers
 * that were never asked for, and file data that does not match its record. The member
 * runs for real (RocksDB, staging, the libuv loop, TCP on 127.0.0.1); the hostile partner
 * is this test, driving net/channel.c over a plain blocking socket and packing messages
 * with protobuf-c directly, bypassing the validating encoders.
 *
 * After every case: nothing was created in the local path (only DfsrPrivate is there), the
 * database holds no record, and the member still completes a handshake and sends its
 * Hello on a fresh connection (it did not crash or wedge).
 *
 * Four cases are timing, not content: a well-behaved partner must not be taken for a
 * hostile one. test_ack_waits_for_hello: the member's Hello to a second configured partner
 * is held back (net_sessions_opts.hello_hook) while a merge of the first partner's Done
 * sends Acks; the second partner must still read the Hello first.
 * test_cancel_then_get_at_the_limit: a Get right behind a Cancel at the serve limit.
 * test_want_crossing_upstream_cancel: a Want that crossed the member's own Cancel.
 * test_chunk_crossing_downstream_cancel: a Chunk that crossed the member's Cancel (after a
 * failed write).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <dirent.h>

#include <sodium.h>

#include "core/config.h"
#include "core/dfsr.pb-c.h"
#include "core/event.h"
#include "core/journal.h"
#include "core/layout.h"
#include "core/replica.h"
#include "core/scan.h"
#include "core/stage.h"
#include "net/channel.h"
#include "net/loop.h"
#include "net/session.h"
#include "net/wire.pb-c.h"
#include "tmpdir.h"

#define KL 32u

struct member {
	char dir[128];
	int dir_fd;
	int root_fd;
	uint16_t port;
	uint8_t sk[KL], pk[KL];           /* the member */
	uint8_t evil_sk[KL], evil_pk[KL]; /* the hostile partner (configured) */
	uint8_t two_sk[KL], two_pk[KL];   /* a second configured partner ("evil2", peer 1) */
	/* net_sessions_opts.hello_hook: the Hello to peer i is built only once hold[i] is
	 * cleared */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool hold[2];
	struct config cfg;
	struct journal *j;
	struct stage *stage;
	struct replica *r;
	struct net_loop *loop;
	struct net_sessions *s;
};

/* A free TCP port on 127.0.0.1 (bound, read, released). */
static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void keypair(uint8_t sk[KL], uint8_t pk[KL])
{
	randombytes_buf(sk, KL);
	assert_int_equal(crypto_scalarmult_base(pk, sk), 0);
}

static void hello_hook(void *arg, size_t peer)
{
	struct member *m = arg;

	if (peer >= 2)
		return; /* a pool thread: no cmocka assertion here */
	pthread_mutex_lock(&m->lock);
	while (m->hold[peer])
		pthread_cond_wait(&m->cond, &m->lock);
	pthread_mutex_unlock(&m->lock);
}

static void hello_hold(struct member *m, size_t peer, bool hold)
{
	pthread_mutex_lock(&m->lock);
	m->hold[peer] = hold;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static int setup(void **state)
{
	struct member *m = calloc(1, sizeof(*m));
	char text[2048], err[CONFIG_ERR_LEN], b64[64], b64_two[64], jerr[JOURNAL_ERR_LEN],
		lerr[LAYOUT_ERR_LEN];
	struct journal_opts jo = { 0 };
	struct stage_opts so = { 0 };
	struct replica_opts ro = { 0 };
	struct net_session_folder sf = { 0 };
	struct net_sessions_opts no = { 0 };
	int stg;

	assert_non_null(m);
	assert_int_equal(test_tmpdir_make(m->dir, sizeof(m->dir), "hostile", &m->dir_fd), 0);
	assert_int_equal(mkdirat(m->dir_fd, "share", 0755), 0);
	assert_int_equal(mkdirat(m->dir_fd, "mnt", 0755), 0);
	m->root_fd = openat(m->dir_fd, "share", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(m->root_fd >= 0);
	keypair(m->sk, m->pk);
	keypair(m->evil_sk, m->evil_pk);
	keypair(m->two_sk, m->two_pk);
	sodium_bin2base64(b64, sizeof(b64), m->evil_pk, KL, sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b64_two, sizeof(b64_two), m->two_pk, KL, sodium_base64_VARIANT_ORIGINAL);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->port = free_port();
	snprintf(text, sizeof(text),
		 "[member]\nname = alpha\nlisten = 127.0.0.1:%u\nkey = %s/alpha.key\n"
		 "control = %s/alpha.sock\n"
		 "[folder share]\npath = %s/share\nmount = %s/mnt\nprimary = yes\n"
		 "[peer evil]\naddress = 127.0.0.1:1\npublic_key = %s\n"
		 "[peer evil2]\naddress = 127.0.0.1:1\npublic_key = %s\n",
		 (unsigned)m->port, m->dir, m->dir, m->dir, m->dir, b64, b64_two);
	assert_int_equal(config_parse_string(&m->cfg, "hostile.conf", text, err), 0);

	assert_int_equal(layout_prepare(m->root_fd, lerr), 0);
	jo.cfg = &m->cfg;
	jo.folder = &m->cfg.folders[0];
	jo.root_fd = m->root_fd;
	assert_int_equal(journal_open(&jo, &m->j, jerr), 0);
	assert_int_equal(scan_folder(m->j, NULL), 0);
	assert_int_equal(journal_state(m->j), JOURNAL_STATE_NORMAL);

	stg = openat(m->root_fd, LAYOUT_PRIVATE "/" LAYOUT_STAGING, O_PATH | O_DIRECTORY);
	assert_true(stg >= 0);
	so.dir_fd = stg;
	assert_int_equal(stage_open(&so, &m->stage), 0);
	close(stg);
	ro.j = m->j;
	ro.stage = m->stage;
	assert_int_equal(replica_new(&ro, &m->r), 0);

	assert_int_equal(net_loop_new(&m->loop), 0);
	assert_int_equal(net_loop_start(m->loop), 0);
	sf.name = "share";
	sf.j = m->j;
	sf.r = m->r;
	sf.stage = m->stage;
	no.loop = m->loop;
	no.cfg = &m->cfg;
	no.secret_key = m->sk;
	no.folders = &sf;
	no.nfolders = 1;
	no.hello_hook = hello_hook;
	no.hello_hook_arg = m;
	assert_int_equal(net_sessions_start(&no, &m->s), 0);
	*state = m;
	return 0;
}

static int teardown(void **state)
{
	struct member *m = *state;

	hello_hold(m, 0, false); /* a failed test may have left a Hello held */
	hello_hold(m, 1, false);
	net_sessions_stop(m->s);
	net_loop_stop(m->loop);
	net_loop_free(m->loop);
	replica_free(m->r);
	stage_close(m->stage);
	journal_close(m->j);
	config_release(&m->cfg);
	close(m->root_fd);
	close(m->dir_fd);
	test_tmpdir_remove(m->dir);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return 0;
}

/* ---- the hostile partner: a blocking socket and a channel ----------------------------- */

struct evil {
	int fd;
	struct net_channel *ch;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void evil_flush(struct evil *e)
{
	size_t len;
	uint8_t *out = net_channel_out_detach(e->ch, &len);

	for (size_t off = 0; out && off < len;) {
		ssize_t n = send(e->fd, out + off, len - off, MSG_NOSIGNAL);

		if (n <= 0)
			break; /* the member closed: the caller checks what it expects */
		off += (size_t)n;
	}
	free(out);
}

/* Reads whatever arrives within @ms. Return: false once the member closed the socket. */
static bool evil_pump(struct evil *e, int ms)
{
	int64_t end = now_ms() + ms;
	uint8_t buf[65536];

	for (;;) {
		int64_t left = end - now_ms();
		struct pollfd p = { .fd = e->fd, .events = POLLIN };
		ssize_t n;

		if (left <= 0)
			return true;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		n = recv(e->fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return false;
		if (net_channel_feed(e->ch, buf, (size_t)n) < 0)
			return false;
		evil_flush(e);
	}
}

/* Connects and completes the handshake with secret key @sk (a configured partner's). */
static void evil_connect_as(struct member *m, struct evil *e, const uint8_t *sk)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(m->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct net_channel_opts o = { .role = NET_CHANNEL_INITIATOR,
				      .secret_key = sk,
				      .peer_key = m->pk };
	int64_t end = now_ms() + 10000;

	e->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(e->fd >= 0);
	while (connect(e->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		assert_true(now_ms() < end); /* the listener comes up with the sessions */
		usleep(20000);
	}
	assert_int_equal(net_channel_new(&o, &e->ch), 0);
	evil_flush(e);
	while (net_channel_state(e->ch) != NET_CHANNEL_ESTABLISHED) {
		assert_true(now_ms() < end);
		assert_true(evil_pump(e, 50));
	}
	/* The selection frame (docs/protocol.md SC.10): if our key is the larger, we are the
	 * keeper and choose this channel; otherwise it is a keep-alive. */
	assert_int_equal(net_channel_seal(e->ch, NULL, 0), 0);
	evil_flush(e);
}

/* Connects and completes the handshake with the evil key. */
static void evil_connect(struct member *m, struct evil *e)
{
	evil_connect_as(m, e, m->evil_sk);
}

static void evil_close(struct evil *e)
{
	close(e->fd);
	net_channel_free(e->ch);
}

/* Seals @msg into the channel; evil_flush() sends everything sealed in one go. */
static void evil_seal_msg(struct evil *e, const Dfsrwire__Msg *msg)
{
	size_t len = dfsrwire__msg__get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);

	assert_non_null(buf);
	dfsrwire__msg__pack(msg, buf);
	assert_int_equal(net_channel_seal(e->ch, buf, len), 0);
	free(buf);
}

static void evil_send_msg(struct evil *e, const Dfsrwire__Msg *msg)
{
	evil_seal_msg(e, msg);
	evil_flush(e);
}

static ProtobufCBinaryData bin(const void *p, size_t len)
{
	ProtobufCBinaryData b = { .len = len, .data = (uint8_t *)(uintptr_t)p };

	return b;
}

/* Hello for folder "share" with database id @db and an empty knowledge vector; @serve_max
 * 0 leaves the field out, as a member from before it. */
static void evil_hello_max(struct evil *e, uint32_t proto, const uint8_t db[16], uint32_t serve_max)
{
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT;
	Dfsrwire__Hello h = DFSRWIRE__HELLO__INIT;
	Dfsrwire__FolderHello f = DFSRWIRE__FOLDER_HELLO__INIT;
	Dfsrwire__FolderHello *fp = &f;

	f.name = bin("share", 5);
	f.db_id = bin(db, 16);
	f.state = JOURNAL_STATE_NORMAL;
	h.proto = proto;
	h.serve_max = serve_max;
	h.member = bin("evil", 4);
	h.n_folders = 1;
	h.folders = &fp;
	msg.m_case = DFSRWIRE__MSG__M_HELLO;
	msg.hello = &h;
	evil_send_msg(e, &msg);
}

static void evil_hello(struct evil *e, uint32_t proto, const uint8_t db[16])
{
	evil_hello_max(e, proto, db, 0);
}

/* A Record packed by hand, so that names record_encode() would refuse get through. */
struct raw_rec {
	uint8_t uid[16], parent[16], db[16], hash[32], content[32];
	const char *name;
	char type;
	uint64_t counter, size;
	bool tombstone;
};

static void raw_rec_init(struct raw_rec *r, const struct member *m, const uint8_t db[16],
			 const char *name, char type)
{
	memset(r, 0, sizeof(*r));
	randombytes_buf(r->uid, 16);
	memcpy(r->parent, journal_root_uid(m->j)->b, 16);
	memcpy(r->db, db, 16);
	randombytes_buf(r->hash, 32);
	randombytes_buf(r->content, 32);
	r->name = name;
	r->type = type;
	r->counter = 1;
}

static size_t raw_rec_pack(const struct raw_rec *r, uint8_t *out, size_t cap)
{
	Dfsr__Record rec = DFSR__RECORD__INIT;
	Dfsr__Gvsn g = DFSR__GVSN__INIT;
	Dfsr__Gvsn *vv = &g;
	size_t len;

	g.db = bin(r->db, 16);
	g.counter = r->counter;
	rec.uid = bin(r->uid, 16);
	rec.parent = bin(r->parent, 16);
	rec.name = bin(r->name, strlen(r->name));
	rec.type = (uint32_t)r->type;
	rec.gvsn = &g;
	rec.n_vv = 1;
	rec.vv = &vv;
	rec.hash = bin(r->hash, 32);
	rec.content = bin(r->content, 32);
	rec.size = r->size;
	rec.mode = r->type == 'd' ? 0755 : 0644;
	rec.mtime_ns = 1;
	rec.change_time_ns = 1;
	rec.create_time_ns = 1;
	rec.tombstone = r->tombstone;
	len = dfsr__record__get_packed_size(&rec);
	assert_true(len <= cap);
	dfsr__record__pack(&rec, out);
	return len;
}

/* Sends Updates with the given records (and @nx empty-valued xattrs on each), then Done. */
static void evil_updates(struct evil *e, const struct raw_rec *recs, size_t n, size_t nx)
{
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT;
	Dfsrwire__Updates ups = DFSRWIRE__UPDATES__INIT;
	Dfsrwire__Update *u = calloc(n, sizeof(*u));
	Dfsrwire__Update **up = calloc(n, sizeof(*up));
	Dfsrwire__Xattr *x = calloc(nx ? nx : 1, sizeof(*x));
	Dfsrwire__Xattr **xp = calloc(nx ? nx : 1, sizeof(*xp));
	uint8_t(*buf)[1024] = calloc(n, sizeof(*buf));
	char(*names)[32] = calloc(nx ? nx : 1, sizeof(*names));
	Dfsrwire__Done done = DFSRWIRE__DONE__INIT;

	assert_true(u && up && x && xp && buf && names);
	for (size_t i = 0; i < nx; i++) {
		dfsrwire__xattr__init(&x[i]);
		snprintf(names[i], sizeof(names[i]), "user.x%zu", i);
		x[i].name = bin(names[i], strlen(names[i]));
		xp[i] = &x[i];
	}
	for (size_t i = 0; i < n; i++) {
		dfsrwire__update__init(&u[i]);
		u[i].record = bin(buf[i], raw_rec_pack(&recs[i], buf[i], sizeof(buf[i])));
		u[i].n_xattrs = nx;
		u[i].xattrs = xp;
		if (recs[i].type == 'l')
			u[i].link_target = bin("../../../../etc/passwd", 22);
		up[i] = &u[i];
	}
	ups.folder = bin("share", 5);
	ups.n_updates = n;
	ups.updates = up;
	msg.m_case = DFSRWIRE__MSG__M_UPDATES;
	msg.updates = &ups;
	evil_send_msg(e, &msg);

	done.folder = bin("share", 5);
	done.state = JOURNAL_STATE_NORMAL;
	msg.m_case = DFSRWIRE__MSG__M_DONE;
	msg.done = &done;
	evil_send_msg(e, &msg);
	free(names);
	free(buf);
	free(xp);
	free(x);
	free(up);
	free(u);
}

/* ---- what must hold after every case ---------------------------------------------------- */

static int count_refusal(void *arg, const struct journal_event_info *e)
{
	size_t *n = arg;

	if (getenv("HOSTILE_DEBUG"))
		fprintf(stderr, "event %d %s\n", e->id, e->message);
	if (e->id == EV_UPDATE_REFUSED || e->id == EV_PROTOCOL_ERROR || e->id == EV_PARTNER_REFUSED)
		(*n)++;
	return 0;
}

/* Refusals logged so far (the member says what it refused: 1301, 3101, 5002). */
static size_t refusals(struct member *m)
{
	size_t n = 0;

	assert_int_equal(journal_list_events(m->j, 0, count_refusal, &n), 0);
	return n;
}

/* The local path holds DfsrPrivate only, and nothing was recorded. */
static void assert_untouched(struct member *m)
{
	int fd = openat(m->root_fd, ".", O_RDONLY | O_DIRECTORY);
	DIR *d;
	struct dirent *de;
	struct journal_status st;

	assert_true(fd >= 0);
	d = fdopendir(fd);
	assert_non_null(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (strcmp(de->d_name, LAYOUT_PRIVATE)) {
			fprintf(stderr, "unexpected entry in the local path: %s\n", de->d_name);
			fail();
		}
	}
	closedir(d);
	journal_get_status(m->j, &st);
	assert_int_equal(st.files, 0);
	assert_int_equal(st.folders, 0);
}

/* A fresh connection still completes its handshake and receives the member's Hello. */
static void assert_member_alive(struct member *m)
{
	struct evil e;
	int64_t end = now_ms() + 10000;
	bool hello = false;

	evil_connect(m, &e);
	while (!hello && now_ms() < end) {
		uint8_t *msg;
		size_t len;

		assert_true(evil_pump(&e, 50));
		while (!hello && net_channel_pop(e.ch, &msg, &len) == 0) {
			Dfsrwire__Msg *w = dfsrwire__msg__unpack(NULL, len, msg);

			hello = w && w->m_case == DFSRWIRE__MSG__M_HELLO &&
				w->hello->proto == NET_SESSION_PROTO;
			dfsrwire__msg__free_unpacked(w, NULL);
			free(msg);
		}
	}
	assert_true(hello);
	evil_close(&e);
}

/* ---- the cases ---------------------------------------------------------------------- */

static void run_updates_case(struct member *m, const struct raw_rec *recs, size_t n, size_t nx)
{
	struct evil e;
	uint8_t db[16];

	size_t before = refusals(m);
	int64_t end;

	randombytes_buf(db, sizeof(db));
	evil_connect(m, &e);
	evil_hello(&e, NET_SESSION_PROTO, db);
	evil_updates(&e, recs, n, nx);
	/* the member decides, may answer, may close; it must say what it refused */
	end = now_ms() + 10000;
	while (refusals(m) == before && now_ms() < end && evil_pump(&e, 50))
		;
	evil_close(&e);
	while (refusals(m) == before && now_ms() < end)
		usleep(20000); /* the event may be stored just after the close */
	assert_true(refusals(m) > before);
	assert_untouched(m);
	assert_member_alive(m);
}

static void test_bad_names(void **state)
{
	struct member *m = *state;
	static const char *const names[] = { "..", ".", "a/b", "../escape", "DfsrPrivate", "" };
	struct raw_rec r[DFSR_ARRAY_SIZE(names)];
	uint8_t db[16];

	randombytes_buf(db, sizeof(db));
	for (size_t i = 0; i < DFSR_ARRAY_SIZE(names); i++)
		raw_rec_init(&r[i], m, db, names[i], i % 2 ? 'f' : 'd');
	/* each alone (a connection may be closed by the first), then all together */
	for (size_t i = 0; i < DFSR_ARRAY_SIZE(names); i++)
		run_updates_case(m, &r[i], 1, 0);
	run_updates_case(m, r, DFSR_ARRAY_SIZE(names), 0);
}

static void test_long_name_and_nul(void **state)
{
	struct member *m = *state;
	char longname[400];
	char nul[] = { 'a', '\0', 'b' };
	struct raw_rec r;
	uint8_t db[16];

	randombytes_buf(db, sizeof(db));
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	raw_rec_init(&r, m, db, longname, 'd');
	run_updates_case(m, &r, 1, 0);
	(void)nul; /* a name with NUL cannot be a C string here: covered by record_decode tests */
}

static void test_orphans_and_root(void **state)
{
	struct member *m = *state;
	struct raw_rec r[4];
	uint8_t db[16];

	randombytes_buf(db, sizeof(db));
	raw_rec_init(&r[0], m, db, "orphan-dir", 'd');
	randombytes_buf(r[0].parent, 16); /* a parent that exists nowhere */
	raw_rec_init(&r[1], m, db, "orphan-file", 'f');
	randombytes_buf(r[1].parent, 16);
	raw_rec_init(&r[2], m, db, "root-itself", 'd');
	memcpy(r[2].uid, journal_root_uid(m->j)->b, 16); /* the folder root as an object */
	raw_rec_init(&r[3], m, db, "self-parent", 'd');
	memcpy(r[3].parent, r[3].uid, 16); /* its own parent */
	run_updates_case(m, r, 4, 0);
}

static void test_xattr_flood(void **state)
{
	struct member *m = *state;
	struct raw_rec r;
	uint8_t db[16];

	randombytes_buf(db, sizeof(db));
	raw_rec_init(&r, m, db, "flood", 'd');
	run_updates_case(m, &r, 1, REPLICA_XATTR_MAX + 1);
}

static void test_symlink_escape(void **state)
{
	struct member *m = *state;
	struct raw_rec r;
	uint8_t db[16];

	/* The target is only data, but its hash is wrong: nothing may be created. */
	randombytes_buf(db, sizeof(db));
	raw_rec_init(&r, m, db, "link", 'l');
	run_updates_case(m, &r, 1, 0);
}

static void test_bad_file_data(void **state)
{
	struct member *m = *state;
	struct raw_rec r;
	struct evil e;
	uint8_t db[16];
	int64_t end;
	uint64_t get_id = 0;
	bool got = false;

	size_t before = refusals(m);

	randombytes_buf(db, sizeof(db));
	raw_rec_init(&r, m, db, "big.bin", 'f');
	r.size = 5; /* the member will ask for the data */
	evil_connect(m, &e);
	evil_hello(&e, NET_SESSION_PROTO, db);
	evil_updates(&e, &r, 1, 0);
	/* Wait for the Get, answer with a chunk list that does not match (another digest). */
	end = now_ms() + 10000;
	while (!got && now_ms() < end) {
		uint8_t *msg;
		size_t len;

		if (!evil_pump(&e, 50))
			break;
		while (!got && net_channel_pop(e.ch, &msg, &len) == 0) {
			Dfsrwire__Msg *w = dfsrwire__msg__unpack(NULL, len, msg);

			if (w && w->m_case == DFSRWIRE__MSG__M_GET) {
				got = true;
				get_id = w->get->id;
			}
			dfsrwire__msg__free_unpacked(w, NULL);
			free(msg);
		}
	}
	if (got) {
		Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT;
		Dfsrwire__FileInfo fi = DFSRWIRE__FILE_INFO__INIT;
		Dfsrwire__Chunk ch = DFSRWIRE__CHUNK__INIT;
		/* "DFCL" v1, size 5, a digest of zeros, 1 chunk of 5 bytes with the SHA-256 of
		 * "hello": the data matches its chunk but not the record's hash. */
		uint8_t list[52 + 36] = { 'D', 'F', 'C', 'L', 1 };
		uint8_t h[32];

		list[15] = 5;
		crypto_hash_sha256(list + 16, (const uint8_t *)"hello", 5);
		list[51] = 1;
		list[55] = 5;
		crypto_hash_sha256(h, (const uint8_t *)"hello", 5);
		memcpy(list + 56, h, 32);
		fi.id = get_id;
		fi.status = 0;
		fi.chunk_list = bin(list, sizeof(list));
		msg.m_case = DFSRWIRE__MSG__M_FILE;
		msg.file = &fi;
		evil_send_msg(&e, &msg);
		(void)evil_pump(&e, 300);
		ch.id = get_id;
		ch.index = 0;
		ch.codec = STAGE_CODEC_RAW;
		ch.data = bin("hello", 5);
		msg.m_case = DFSRWIRE__MSG__M_CHUNK;
		msg.chunk = &ch;
		evil_send_msg(&e, &msg);
		/* a chunk for a transfer never asked for, and an index out of range */
		ch.id = get_id + 1000;
		evil_send_msg(&e, &msg);
		end = now_ms() + 10000;
		while (refusals(m) == before && now_ms() < end && evil_pump(&e, 50))
			;
	}
	evil_close(&e);
	while (refusals(m) == before && now_ms() < end)
		usleep(20000); /* the event may be stored just after the close */
	assert_true(got);
	assert_true(refusals(m) > before);
	assert_untouched(m);
	assert_member_alive(m);
}

/* What the member sent on one connection, as the partner reads it in order. */
struct seen {
	size_t gets;        /* Gets so far */
	uint64_t ids[64];   /* the ids of the first 64 */
	uint32_t serve_max; /* the member's Hello's */
	size_t pongs;       /* Ping replies so far */
};

/* Counts one message the member sent. */
static void seen_note(struct seen *s, const uint8_t *msg, size_t len)
{
	Dfsrwire__Msg *w = dfsrwire__msg__unpack(NULL, len, msg);

	assert_non_null(w);
	if (w->m_case == DFSRWIRE__MSG__M_GET) {
		if (s->gets < DFSR_ARRAY_SIZE(s->ids))
			s->ids[s->gets] = w->get->id;
		s->gets++;
	}
	if (w->m_case == DFSRWIRE__MSG__M_HELLO)
		s->serve_max = w->hello->serve_max;
	if (w->m_case == DFSRWIRE__MSG__M_PING && w->ping->reply)
		s->pongs++;
	dfsrwire__msg__free_unpacked(w, NULL);
}

/*
 * Reads the member's messages in order until @gets Gets arrived in all (@pong false), or
 * up to and including the next Ping reply (@pong true); 10 s at most. Messages behind the
 * one it stops at stay in the channel for the next call, so a Get is never counted late.
 */
static void evil_read(struct evil *e, struct seen *s, size_t gets, bool pong)
{
	int64_t end = now_ms() + 10000;
	size_t pongs = s->pongs;

	for (;;) {
		uint8_t *msg;
		size_t len;

		while ((pong ? s->pongs == pongs : s->gets < gets) &&
		       net_channel_pop(e->ch, &msg, &len) == 0) {
			seen_note(s, msg, len);
			free(msg);
		}
		if (pong ? s->pongs > pongs : s->gets >= gets)
			return;
		assert_true(now_ms() < end);
		assert_true(evil_pump(e, 20));
	}
}

static void evil_ping(struct evil *e)
{
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT;
	Dfsrwire__Ping p = DFSRWIRE__PING__INIT;

	p.time_ns = 1;
	msg.m_case = DFSRWIRE__MSG__M_PING;
	msg.ping = &p;
	evil_send_msg(e, &msg);
}

/*
 * The downstream keeps no more downloads in flight than the upstream's Hello allows: 16 for
 * a partner whose Hello has no serve_max (a member from before the field, which treats a
 * 17th open transfer as a protocol error), else that many (up to its own 64). A failed
 * transfer frees its slot for the next file at once. The member announces its own limit.
 *
 * "No more than @expect" is checked with a Ping as a barrier, not by watching for a while.
 * The member's loop thread handles one connection's messages in order and seals what it
 * sends onto the channel in order (net_conn_send()), and it answers a Ping at once
 * (on_ping()). The @N updates come in one Updates message, so one offer job offers them
 * all (NET_SESSION_BATCH_MAX is 256); its done() on the loop holds all of them as FETCH
 * and calls fetch_start(), which sends a Get for each while a slot is free, in that one
 * call. We send the Ping only once @expect Gets arrived, so the loop takes it after that
 * call: a Get beyond the limit would be on the wire before the reply. Nothing queued
 * after it calls fetch_start() again: no transfer ends (we answer none), no offer job
 * follows (items waiting for a slot are not offered again; the Done behind the Updates
 * merges nothing while they are undecided), and the 1 s tick runs the same fetch_start()
 * on the same full slots. Then one FileInfo with status 2 frees one slot: on_file() ->
 * xfer_end() -> fetch_start() sends the next Get before the loop reads the Ping we send
 * right behind it, so the Gets before that reply are exactly what one freed slot allows.
 */
static void serve_limit_case(struct member *m, uint32_t serve_max, size_t expect)
{
	enum {
		N = 40
	};

	static char names[N][16];
	struct raw_rec r[N];
	struct seen s = { 0 };
	struct evil e;
	uint8_t db[16];

	randombytes_buf(db, sizeof(db));
	for (size_t i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "s%u-%zu", serve_max, i);
		raw_rec_init(&r[i], m, db, names[i], 'f');
		r[i].size = 5;
	}
	evil_connect(m, &e);
	evil_hello_max(&e, NET_SESSION_PROTO, db, serve_max);
	evil_updates(&e, r, N, 0);
	evil_read(&e, &s, expect, false);
	evil_ping(&e);
	evil_read(&e, &s, 0, true);
	/* no Get is answered: the count stops at the limit */
	assert_int_equal(s.gets, expect);
	assert_int_equal(s.serve_max, NET_SESSION_SERVE_MAX);
	{
		Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT;
		Dfsrwire__FileInfo fi = DFSRWIRE__FILE_INFO__INIT;

		fi.id = s.ids[0];
		fi.status = 2; /* cannot serve it now: the slot is free again */
		msg.m_case = DFSRWIRE__MSG__M_FILE;
		msg.file = &fi;
		evil_send_msg(&e, &msg);
	}
	evil_ping(&e);
	evil_read(&e, &s, 0, true);
	assert_int_equal(s.gets, expect + 1);
	evil_close(&e);
	assert_member_alive(m);
}

static void test_serve_limit(void **state)
{
	struct member *m = *state;

	serve_limit_case(m, 0, NET_SESSION_SERVE_OLD);
	serve_limit_case(m, 20, 20);
}

/* The member's next message on @e that is not a Ping (10 s at most; empty frames, the
 * keeper's selection and keep-alives, are skipped); the caller frees it with
 * dfsrwire__msg__free_unpacked(). */
static Dfsrwire__Msg *evil_next(struct evil *e)
{
	int64_t end = now_ms() + 10000;

	for (;;) {
		uint8_t *msg;
		size_t len;

		while (net_channel_pop(e->ch, &msg, &len) == 0) {
			Dfsrwire__Msg *w = len ? dfsrwire__msg__unpack(NULL, len, msg) : NULL;

			free(msg);
			if (!len)
				continue;
			assert_non_null(w);
			if (w->m_case != DFSRWIRE__MSG__M_PING)
				return w;
			dfsrwire__msg__free_unpacked(w, NULL);
		}
		assert_true(now_ms() < end);
		assert_true(evil_pump(e, 20));
	}
}

/* The counter of @db in the knowledge of Ack @a (0 if absent). */
static uint64_t ack_counter(const Dfsrwire__Ack *a, const uint8_t db[16])
{
	for (size_t i = 0; i < a->n_knowledge; i++)
		if (a->knowledge[i]->db.len == 16 && !memcmp(a->knowledge[i]->db.data, db, 16))
			return a->knowledge[i]->counter;
	return 0;
}

/*
 * Not hostile, but timing: a merge of one partner's Done sends an Ack to every partner
 * holding the folder, and a connection whose Hello the member is still building (its pool
 * busy) had it before the Hello: the partner saw "message before Hello" and closed
 * (event 3101 in a three-member run under load). Now the Ack follows the Hello. The test
 * holds the member's Hello to evil2 (hello_hook) after evil2's Hello reached the member
 * (a Ping answered behind it is the barrier), makes the member merge a Done from evil,
 * and only then lets the Hello go: evil2 must read the Hello first, then the Ack with
 * what the merge added.
 */
static void test_ack_waits_for_hello(void **state)
{
	struct member *m = *state;
	struct evil one, two;
	struct seen s = { 0 };
	uint8_t db1[16], db2[16];
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT, *w;
	Dfsrwire__Done done = DFSRWIRE__DONE__INIT;
	Dfsr__Gvsn g = DFSR__GVSN__INIT, *gp = &g;
	size_t before = refusals(m);
	bool acked = false;

	randombytes_buf(db1, sizeof(db1));
	randombytes_buf(db2, sizeof(db2));
	hello_hold(m, 1, true);
	evil_connect_as(m, &two, m->two_sk);
	evil_hello(&two, NET_SESSION_PROTO, db2);
	evil_ping(&two);
	evil_read(&two, &s, 0, true);     /* the member has read evil2's Hello */
	assert_int_equal(s.serve_max, 0); /* and holds its own */

	/* evil: a Done that claims db1:1 (no update before it: merged at once) */
	evil_connect(m, &one);
	evil_hello(&one, NET_SESSION_PROTO, db1);
	g.db = bin(db1, 16);
	g.counter = 1;
	done.folder = bin("share", 5);
	done.state = JOURNAL_STATE_NORMAL;
	done.n_knowledge = 1;
	done.knowledge = &gp;
	msg.m_case = DFSRWIRE__MSG__M_DONE;
	msg.done = &done;
	evil_send_msg(&one, &msg);
	while (!acked) {
		w = evil_next(&one);
		acked = w->m_case == DFSRWIRE__MSG__M_ACK && ack_counter(w->ack, db1) == 1;
		dfsrwire__msg__free_unpacked(w, NULL);
	}

	/* the merge is done, and its Acks were sent or owed: now evil2's Hello goes */
	hello_hold(m, 1, false);
	w = evil_next(&two);
	assert_int_equal(w->m_case, DFSRWIRE__MSG__M_HELLO);
	dfsrwire__msg__free_unpacked(w, NULL);
	for (acked = false; !acked;) {
		w = evil_next(&two);
		acked = w->m_case == DFSRWIRE__MSG__M_ACK && ack_counter(w->ack, db1) == 1;
		dfsrwire__msg__free_unpacked(w, NULL);
	}
	evil_ping(&two);
	evil_read(&two, &s, 0, true); /* still connected */
	assert_int_equal(refusals(m), before);
	evil_close(&one);
	evil_close(&two);
	assert_member_alive(m);
}

/*
 * Not hostile, but timing: a downstream frees its transfer slot when it cancels and may
 * send its next Get right behind the Cancel. The member counted a cancelled transfer whose
 * stage job was not back yet against NET_SESSION_SERVE_MAX, so that Get looked like one
 * too many ("bad Get", 3101). NET_SESSION_SERVE_MAX Gets, a Cancel of the first (its stage
 * job is in the pool) and of the last (still waiting for a stage job: STAGES_MAX run at
 * once) and two more Gets go in one write: the member handles them in one read, before any
 * stage job of theirs is back. Every Get but the cancelled ones is answered.
 */
static void test_cancel_then_get_at_the_limit(void **state)
{
	enum {
		N = NET_SESSION_SERVE_MAX + 2
	};

	struct member *m = *state;
	struct evil e;
	struct seen s = { 0 };
	uint8_t db[16], uid[N][16];
	bool answered[N + 1] = { false };
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT, *w;
	Dfsrwire__Get g = DFSRWIRE__GET__INIT;
	Dfsrwire__Cancel c = DFSRWIRE__CANCEL__INIT;
	Dfsr__Gvsn gv = DFSR__GVSN__INIT;
	size_t before = refusals(m), left = N - 2;

	randombytes_buf(db, sizeof(db));
	evil_connect(m, &e);
	evil_hello(&e, NET_SESSION_PROTO, db);
	w = evil_next(&e); /* the member serves only once its Hello is out */
	assert_int_equal(w->m_case, DFSRWIRE__MSG__M_HELLO);
	dfsrwire__msg__free_unpacked(w, NULL);

	gv.db = bin(db, 16);
	gv.counter = 1;
	g.folder = bin("share", 5);
	g.gvsn = &gv;
	for (uint64_t id = 1; id <= N; id++) {
		if (id == NET_SESSION_SERVE_MAX + 1) {
			msg.m_case = DFSRWIRE__MSG__M_CANCEL;
			msg.cancel = &c;
			c.id = 1;
			evil_seal_msg(&e, &msg);
			c.id = NET_SESSION_SERVE_MAX;
			evil_seal_msg(&e, &msg);
		}
		randombytes_buf(uid[id - 1], 16);
		g.id = id;
		g.uid = bin(uid[id - 1], 16);
		msg.m_case = DFSRWIRE__MSG__M_GET;
		msg.get = &g;
		evil_seal_msg(&e, &msg);
	}
	evil_flush(&e);

	/* every Get but the two cancelled is answered (unknown versions: "gone"), no 3101 */
	while (left) {
		w = evil_next(&e);
		if (w->m_case == DFSRWIRE__MSG__M_FILE) {
			uint64_t id = w->file->id;

			assert_true(id >= 1 && id <= N);
			assert_true(id != 1 && id != NET_SESSION_SERVE_MAX);
			assert_false(answered[id]);
			answered[id] = true;
			left--;
		}
		dfsrwire__msg__free_unpacked(w, NULL);
	}
	evil_ping(&e);
	evil_read(&e, &s, 0, true); /* still connected */
	assert_int_equal(refusals(m), before);
	evil_close(&e);
	assert_member_alive(m);
}

/* Truncates every staged version of @m to nothing (a damaged Staging directory). */
static size_t staging_damage(struct member *m)
{
	int fd = openat(m->root_fd, LAYOUT_PRIVATE "/" LAYOUT_STAGING, O_RDONLY | O_DIRECTORY);
	DIR *d;
	struct dirent *de;
	size_t n = 0;

	assert_true(fd >= 0);
	d = fdopendir(fd);
	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		int f;

		if (len < 4 || strcmp(de->d_name + len - 4, ".stg"))
			continue;
		f = openat(dirfd(d), de->d_name, O_WRONLY | O_TRUNC);
		assert_true(f >= 0);
		close(f);
		n++;
	}
	closedir(d);
	return n;
}

/* Sends Want {@id, [@index]}. */
static void evil_want(struct evil *e, uint64_t id, uint32_t index)
{
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT;
	Dfsrwire__Want w = DFSRWIRE__WANT__INIT;

	w.id = id;
	w.n_index = 1;
	w.index = &index;
	msg.m_case = DFSRWIRE__MSG__M_WANT;
	msg.want = &w;
	evil_send_msg(e, &msg);
}

/*
 * Not hostile, but timing: an upstream that cannot read a staged version any more sends
 * Cancel (from_upstream) and forgets the transfer, while the downstream's next Want may
 * already be on its way. The member took that Want for one of a transfer never served
 * ("bad Want", 3101). The member serves a 2 MiB file (staged on disk, several chunks); we
 * damage its staged copy, Want a chunk, get the Cancel, and Want another one as if it had
 * crossed the Cancel: the member drops it and stays connected.
 */
static void test_want_crossing_upstream_cancel(void **state)
{
	struct member *m = *state;
	struct evil e;
	struct seen s = { 0 };
	size_t len = 2u << 20, before;
	uint8_t *data = malloc(len), db[16], uid[16];
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT, *w;
	Dfsrwire__Get g = DFSRWIRE__GET__INIT;
	Dfsr__Gvsn gv = DFSR__GVSN__INIT;
	struct dfsr_uid fuid;
	uint64_t counter = 0;
	bool cancelled = false;
	int fd;

	assert_non_null(data);
	randombytes_buf(data, len);
	fd = openat(m->root_fd, "big.bin", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	free(data);
	fd = openat(m->root_fd, "big.bin", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(journal_note_new(m->j, journal_root_uid(m->j), "big.bin", fd, &fuid), 0);
	close(fd);
	before = refusals(m);

	/* the member's first round offers big.bin: its uid and version */
	randombytes_buf(db, sizeof(db));
	evil_connect(m, &e);
	evil_hello(&e, NET_SESSION_PROTO, db);
	while (!counter) {
		w = evil_next(&e);
		for (size_t i = 0;
		     w->m_case == DFSRWIRE__MSG__M_UPDATES && i < w->updates->n_updates; i++) {
			Dfsr__Record *r = dfsr__record__unpack(NULL,
							       w->updates->updates[i]->record.len,
							       w->updates->updates[i]->record.data);

			assert_non_null(r);
			if (r->uid.len == 16 && !memcmp(r->uid.data, fuid.b, 16)) {
				assert_non_null(r->gvsn);
				assert_int_equal(r->gvsn->db.len, 16);
				memcpy(db, r->gvsn->db.data, 16);
				counter = r->gvsn->counter;
			}
			dfsr__record__free_unpacked(r, NULL);
		}
		dfsrwire__msg__free_unpacked(w, NULL);
	}
	memcpy(uid, fuid.b, 16);
	gv.db = bin(db, 16);
	gv.counter = counter;
	g.id = 7;
	g.folder = bin("share", 5);
	g.uid = bin(uid, 16);
	g.gvsn = &gv;
	msg.m_case = DFSRWIRE__MSG__M_GET;
	msg.get = &g;
	evil_send_msg(&e, &msg);
	for (bool info = false; !info;) {
		w = evil_next(&e);
		info = w->m_case == DFSRWIRE__MSG__M_FILE && w->file->id == 7;
		if (info) {
			assert_int_equal(w->file->status, 0);
			assert_int_equal(w->file->n_chunks, 0); /* too large to go inline */
		}
		dfsrwire__msg__free_unpacked(w, NULL);
	}

	/* the staged copy is damaged: the member cannot serve chunk 0 and cancels */
	assert_true(staging_damage(m) >= 1);
	evil_want(&e, 7, 0);
	while (!cancelled) {
		w = evil_next(&e);
		assert_int_not_equal(w->m_case, DFSRWIRE__MSG__M_CHUNK);
		cancelled = w->m_case == DFSRWIRE__MSG__M_CANCEL && w->cancel->id == 7 &&
			    w->cancel->from_upstream;
		dfsrwire__msg__free_unpacked(w, NULL);
	}
	/* a Want that crossed that Cancel */
	evil_want(&e, 7, 1);
	evil_ping(&e);
	evil_read(&e, &s, 0, true); /* still connected */
	assert_int_equal(refusals(m), before);
	evil_close(&e);
	assert_member_alive(m);
}

/* Sends Chunk {@id, @index, raw @data}. */
static void evil_chunk(struct evil *e, uint64_t id, uint32_t index, const char *data)
{
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT;
	Dfsrwire__Chunk ch = DFSRWIRE__CHUNK__INIT;

	ch.id = id;
	ch.index = index;
	ch.codec = STAGE_CODEC_RAW;
	ch.data = bin(data, strlen(data));
	msg.m_case = DFSRWIRE__MSG__M_CHUNK;
	msg.chunk = &ch;
	evil_send_msg(e, &msg);
}

/*
 * Not hostile, but timing: a downstream whose write of a chunk fails (here: the file size
 * limit; a full disk alike) cancels the download, while chunks it asked for may already be
 * on their way. The member took such a chunk for one never asked for ("bad Chunk", 3101).
 * We serve a 2-chunk file ("hello", "world"), make the member's write of the first fail
 * (RLIMIT_FSIZE of 1 byte for this process, for that moment only: nothing else writes a
 * file meanwhile), get its Cancel, and send the second chunk as if it had crossed it.
 */
static void test_chunk_crossing_downstream_cancel(void **state)
{
	struct member *m = *state;
	struct evil e;
	struct seen s = { 0 };
	struct raw_rec r;
	struct rlimit old, one;
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_sa;
	uint8_t db[16], list[52 + 2 * 36] = { 'D', 'F', 'C', 'L', 1 };
	Dfsrwire__Msg msg = DFSRWIRE__MSG__INIT, *w;
	Dfsrwire__FileInfo fi = DFSRWIRE__FILE_INFO__INIT;
	uint64_t id = 0;
	bool cancelled = false;
	size_t before = refusals(m);

	/* "DFCL" v1, size 10, the digest of "helloworld", chunks "hello" and "world" */
	list[15] = 10;
	crypto_hash_sha256(list + 16, (const uint8_t *)"helloworld", 10);
	list[51] = 2;
	list[55] = 5;
	crypto_hash_sha256(list + 56, (const uint8_t *)"hello", 5);
	list[91] = 5;
	crypto_hash_sha256(list + 92, (const uint8_t *)"world", 5);
	randombytes_buf(db, sizeof(db));
	raw_rec_init(&r, m, db, "two.bin", 'f');
	r.size = 10;
	memcpy(r.content, list + 16, 32);

	evil_connect(m, &e);
	evil_hello(&e, NET_SESSION_PROTO, db);
	evil_updates(&e, &r, 1, 0);
	while (!id) {
		w = evil_next(&e);
		if (w->m_case == DFSRWIRE__MSG__M_GET)
			id = w->get->id;
		dfsrwire__msg__free_unpacked(w, NULL);
	}
	fi.id = id;
	fi.chunk_list = bin(list, sizeof(list));
	msg.m_case = DFSRWIRE__MSG__M_FILE;
	msg.file = &fi;
	evil_send_msg(&e, &msg);
	for (bool want = false; !want;) {
		w = evil_next(&e);
		want = w->m_case == DFSRWIRE__MSG__M_WANT && w->want->id == id;
		if (want)
			assert_int_equal(w->want->n_index, 2); /* both asked for at once */
		dfsrwire__msg__free_unpacked(w, NULL);
	}

	/* the write of chunk 0 fails: the member cancels, chunk 1 still outstanding */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	one = old;
	one.rlim_cur = 1;
	assert_int_equal(sigaction(SIGXFSZ, &ign, &old_sa), 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &one), 0);
	evil_chunk(&e, id, 0, "hello");
	while (!cancelled) {
		w = evil_next(&e);
		cancelled = w->m_case == DFSRWIRE__MSG__M_CANCEL && w->cancel->id == id &&
			    !w->cancel->from_upstream;
		dfsrwire__msg__free_unpacked(w, NULL);
	}
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(sigaction(SIGXFSZ, &old_sa, NULL), 0);

	/* the chunk that crossed the Cancel */
	evil_chunk(&e, id, 1, "world");
	evil_ping(&e);
	evil_read(&e, &s, 0, true); /* still connected */
	assert_int_equal(refusals(m), before);
	evil_close(&e);
	assert_member_alive(m);
}

static void test_wrong_proto_and_garbage(void **state)
{
	struct member *m = *state;
	struct evil e;
	uint8_t db[16];
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x00 };

	size_t before = refusals(m);

	randombytes_buf(db, sizeof(db));
	evil_connect(m, &e);
	evil_hello(&e, 9999, db);
	(void)evil_pump(&e, 500);
	evil_close(&e);

	evil_connect(m, &e);
	assert_int_equal(net_channel_seal(e.ch, junk, sizeof(junk)), 0);
	evil_flush(&e);
	(void)evil_pump(&e, 500);
	evil_close(&e);
	for (int64_t end = now_ms() + 10000; refusals(m) < before + 2 && now_ms() < end;)
		usleep(20000); /* events are stored by the member's threads, maybe after the close
				*/
	assert_true(refusals(m) >= before + 2);
	assert_untouched(m);
	assert_member_alive(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_name_and_nul, setup, teardown),
		cmocka_unit_test_setup_teardown(test_orphans_and_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xattr_flood, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_escape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_file_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_proto_and_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serve_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ack_waits_for_hello, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_then_get_at_the_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_want_crossing_upstream_cancel, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_chunk_crossing_downstream_cancel, setup,
						teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
