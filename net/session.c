/*
 * session.c - replication sessions: the messages of docs/protocol.md, "Replication
 * messages", between this member and each connected partner, for every folder both hold.
 *
 * Where things run. Everything in a struct sconn (one per established connection) and its
 * links (one per folder) belongs to the loop thread, except the few fields an upstream
 * walk shares with the loop (the queue of packed Updates waiting to be sent, the flow
 * control counters, the cancel flag, the partner's knowledge), which s->lock protects. Work
 * that touches the disk runs on the libuv thread pool as a `struct job`: the job's run()
 * touches only the job and the core objects (replica, journal, stage, stage_asm), its
 * done() runs back on the loop and applies the result. Walks are jobs too but run on a
 * thread of their own (walk_spawn(): they wait on the partner's flow control). A
 * connection is freed only once it is down and no job refers to it (k->refs); the
 * sessions are freed only once the peers are stopped, every connection is gone, no job is
 * in flight (s->pool_busy) and the two handles (kick, tick) are closed. The loop never
 * calls journal_state() (it takes the journal's mutex): pool jobs keep a copy per folder,
 * read again every few seconds, and a folder turning normal starts its walks.
 *
 * Upstream, per link: a walk job runs outbound_missing() once (against the partner's
 * Hello knowledge), then outbound_changes() from the sequence it returned, once per wake
 * (coalesced: a wake during a walk means one more walk after it). The walk packs updates
 * into Updates messages of at most NET_SESSION_BATCH_MAX updates and 1 MiB (or one larger
 * update alone; every update fits in one message, walk_cb()) and queues them
 * on the link; the loop (kicked through the uv_async `kick`) sends them while the
 * connection's output queue is under NET_PEER_OUT_HIGH. The walk thread waits (on
 * s->cond) while four messages are queued or NET_SESSION_WINDOW updates are beyond the
 * partner's Progress, so neither side ever holds more than a window of updates in memory
 * (an update waiting for its file transfer stays in the window).
 * Each walk ends with Done (our knowledge read before the walk, our state).
 *
 * Downstream, per link: decoded updates queue in arrival order (`inq`); one offer job at a
 * time offers them in order (replica_offer), then re-offers the ones waiting for a parent
 * while the batch decided something. Verdicts: DONE/REFUSED are decided; WAIT and BUSY are
 * held and offered again every NET_SESSION_RETRY_MS (WAIT ones also whenever a Done
 * arrives or another link of the folder decided something, which may be their parent);
 * FETCH is held until a transfer slot is
 * free (NET_SESSION_FETCH_MAX per connection, or fewer if the partner's Hello says it serves
 * fewer; at most NET_SESSION_FETCH_LARGE of them for files that do not go inline): Get -> FileInfo
 * (chunk list) -> open job (stage_asm_open in Installing, seeded from the local file of the same
 * UID) -> Want (a sliding window of NET_SESSION_CHUNK_WINDOW chunks) -> Chunk -> write jobs
 * (stage_asm_put_stored) -> stage_asm_finish + replica_install -> Cancel (the upstream
 * unpins the staged version). A Done is merged (replica_merge, then Ack) once every update
 * that arrived before it is decided: nothing of its epoch queued, offered, waiting, busy
 * or fetching.
 *
 * The upstream serves Gets: a stage job (outbound_serve: a small file read into memory,
 * a larger one staged and pinned, until the downstream's Cancel or the connection ends;
 * at most STAGES_MAX in the pool per connection, the other Gets wait in arrival order),
 * a FileInfo that carries every chunk of a file of at most NET_SESSION_INLINE_MAX (so
 * the downstream's open job writes and installs it at once), then chunks from the Want queues
 * of that connection's transfers round robin, a few chunks per read job, while the output
 * queue is under NET_PEER_OUT_HIGH. A version whose file is open for writing cannot be
 * staged (outbound_serve -EAGAIN: status 2, the downstream asks again later); the folder
 * remembers such versions (sfolder.busy) and logs event 4302 once per version when it
 * stayed so for busy_event_ns (the downstream's own 4302 is the replica's, on a BUSY
 * install: net/session.h says which member logs what), and each such answer counts in
 * the partner's busy_serves, once its 4302 (if it logged one) is in the event log.
 *
 * Status, and `dfsr wait` (net_sessions_status): each recount notes the journal's next_seq
 * it counted up to (pstat.counted_seq); a partner is unsettled while the journal went past
 * it (a wake not handled yet, a recount queued, deferred or running) or while a Done of
 * its is not merged; updates received from it and not decided count in backlog_in. A
 * connection just (re)established is unsettled too until the partner's first Done or
 * Backlog on it (link.unheard, pstat.unheard), unless its Hello says it sends none: until
 * then backlog_in is the previous connection's, blind to what the partner changed while
 * apart. So zero figures are never a snapshot taken between a change and its count.
 *
 * Untrusted input: every message is checked before use (lengths of ids exact, counts
 * bounded, records via record_decode + replica_update_check, chunk lists via
 * chunk_list_decode, transfer ids and indexes against our own state). Anything wrong is a
 * protocol error: event 3101 and the connection is closed.
 */
#include "net/session.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "core/chunk.h"
#include "core/dfsr.pb-c.h"
#include "core/event.h"
#include "core/outbound.h"
#include "core/record.h"
#include "core/space.h"
#include "net/channel.h"
#include "net/peer.h"
#include "net/wire.pb-c.h"

#define OUTQ_MAX          4u /* packed Updates queued per link before the walk waits */
#define READS_MAX         2u /* chunk read jobs in flight per connection */
/* Stage jobs (outbound_serve) in the pool per connection; more Gets wait their turn in the
 * connection's FIFO, so that chunk reads for files already served are not queued behind
 * dozens of small files' stage jobs (a partner may have NET_SESSION_SERVE_MAX open). */
#define STAGES_MAX        4u
#define READ_CHUNKS       4u    /* chunks per read job */
#define WAIT_PASSES       8u    /* re-offer passes over waiting updates per offer job */
#define TICK_MS           1000u /* or the retry or state interval when shorter (tests) */
#define STATE_MS          5000u /* folder states are read again every 5 s */
#define FILE_GONE         1u    /* FileInfo.status */
#define FILE_FAILED       2u
#define MONO_MS(ms)       ((int64_t)(ms)*1000000)
/* Recounts of backlog_out of one (folder, peer) start at least RECOUNT_GAP_MS apart and at
 * least RECOUNT_SHARE times the last recount's duration apart (see recount_start()). */
#define RECOUNT_GAP_MS    100u
#define RECOUNT_SHARE     4
/* fetch_start(): files this large are downloaded first, FETCH_BIG_MAX at a time */
#define FETCH_BIG         (16u << 20)
#define FETCH_BIG_MAX     2u
#define BIG_SCAN_MS       100u
/* state_run(): journal_tombstone_care() once an hour */
#define TOMBSTONE_CARE_MS (3600u * 1000u)
/* again_note(): skipped objects are offered again after AGAIN_MS, AGAIN_ROUNDS times */
#define AGAIN_MS          1000u
#define AGAIN_ROUNDS      30u
#define AGAIN_LOGGED      16u /* events 1401 for one give-up, then a count */
#define GONE_IDS          8u  /* sconn.gone */
/* Held updates per link, in windows: no Progress while HELD_PAUSE windows of busy ones are
 * held (send_progress()); more than HELD_MAX windows and a batch held is a partner that
 * does not keep to the window (on_updates()). */
#define HELD_PAUSE        4u
#define HELD_MAX          8u
/* Bytes an Update adds to an Updates message beyond its own encoding (field tag, length). */
#define UPDATE_FRAMING    8u
/* The largest Update a walk packs from what core/outbound.c hands out: a stored record
 * (RECORD_ENC_MAX), REPLICA_XATTR_MAX attributes of REPLICA_XATTR_BYTES in all (names
 * included), each framed (3 tags, 3 lengths), a link target, and its own framing. */
#define UPDATE_MAX \
	(RECORD_ENC_MAX + REPLICA_XATTR_BYTES + REPLICA_XATTR_MAX * 16u + REPLICA_LINK_MAX + 64u)
/* An Updates message's envelope: the Msg and Updates tags and lengths, the folder name. */
#define UPDATES_ENVELOPE 1024u
/* A batch is at most NET_SESSION_BATCH_BYTES or one update (walk_cb()), and either fits in
 * one message: the receiver's channel takes no more. */
_Static_assert(NET_SESSION_BATCH_BYTES + UPDATES_ENVELOPE <= NET_CHANNEL_MAX_MSG &&
		       UPDATE_MAX + UPDATES_ENVELOPE <= NET_CHANNEL_MAX_MSG,
	       "an Updates message may exceed NET_CHANNEL_MAX_MSG");

struct net_sessions;
struct sconn;
struct link;

/* ---- downstream items ------------------------------------------------------------ */

enum item_st {
	IT_NEW = 0,     /* in inq, or in an offer job for the first time */
	IT_WAIT,        /* held: parent unknown */
	IT_BUSY,        /* held: retry at retry_ns */
	IT_FETCH,       /* held: needs a transfer slot */
	IT_FETCHING,    /* held: a transfer has it */
	IT_FETCH_RETRY, /* held: transfer failed; fetch again at retry_ns */
	IT_DECIDED,     /* (offer job result) done or refused */
};

struct item {
	struct item *prev, *next; /* inq or held */
	struct replica_update u;
	uint64_t epoch; /* the Dones received before it arrived */
	enum item_st st;
	int64_t retry_ns; /* monotonic */
	bool counted;     /* in the initial-sync totals */
	bool refused;     /* offer job: the verdict was REFUSED (log only) */
	bool in_window;   /* counts against the upstream's window (not yet in Progress) */
};

struct item_list {
	struct item *head, *tail;
	size_t n;
};

struct done_rec {
	struct done_rec *next;
	uint64_t epoch;
	struct version_vector kv;
	uint32_t state;
};

/* ---- transfers ------------------------------------------------------------------- */

struct rx_chunk {
	struct rx_chunk *next;
	uint32_t index;
	uint8_t codec;
	size_t len;
	uint8_t *data;
};

enum xfer_phase {
	XF_GET = 0,
	XF_OPEN,
	XF_RECV
};

/* A download (downstream side): one slot of k->fetch. */
struct xfer {
	uint64_t id;
	struct link *l;
	struct item *it;
	enum xfer_phase phase;
	struct stage_asm *a;
	size_t nchunks;
	uint32_t *todo; /* missing indexes, in order; todo_pos of them requested */
	size_t ntodo, todo_pos;
	size_t outstanding; /* requested, not received */
	struct rx_chunk *rx_head, *rx_tail;
	size_t nrx;
	bool writing;   /* a write job owns a; */
	bool cancelled; /* the upstream sent Cancel */
};

/* A transfer we serve (upstream side). */
struct serve {
	struct serve *next;
	uint64_t id;
	struct link *l;
	struct stage_key key;
	struct stage_version *v;
	size_t nchunks;
	uint32_t *want; /* FIFO ring of requested indexes */
	size_t want_head, want_n, want_cap;
	bool ready;     /* FileInfo sent */
	bool busy;      /* a job owns v */
	bool cancelled; /* free once the job is back */
};

struct outmsg {
	struct outmsg *next;
	uint8_t *buf;
	size_t len;
};

/* One folder on one connection. */
struct link {
	struct sconn *k;
	size_t f;
	bool common;
	uint32_t partner_state;
	bool partner_ro;
	struct dfsr_uid partner_db; /* from its Hello */
	/* §12: our Hello on this connection asked for everything again (the folder was stale):
	 * only a Done of such a link ends the stale initial sync (replica_merge_from) */
	bool hello_stale;
	/* §12: a Done of a normal partner was merged on this connection: while it stays up the
	 * partner sends every change as it is made, so each state tick notes contact */
	bool synced;
	/* An Ack due while our Hello was not sent yet (a merge of another connection's Done):
	 * sent right after the Hello, with the knowledge the Hello carried merged in */
	bool ack_owed;
	struct version_vector ack_kv;
	/* upstream (partner_kv, cancel, outq*, pushed, offered: protected by s->lock) */
	struct version_vector partner_kv;
	bool cancel;
	struct outmsg *outq_head, *outq_tail;
	size_t outq_n;
	uint64_t pushed;  /* updates queued to be sent */
	uint64_t offered; /* partner's Progress */
	bool missing_done;
	uint64_t next_seq;
	bool walking, walk_again;
	int64_t walk_retry_ns;
	/* objects the last walk skipped as not found (outbound_skips): offered again by the
	 * next walk, from again_ns on; again_rounds walks in a row skipped some */
	struct dfsr_uid *again;
	size_t nagain;
	unsigned again_rounds;
	int64_t again_ns;
	/* downstream (loop) */
	struct item_list inq;
	struct item_list held;
	uint64_t rx_epoch;
	struct done_rec *dones_head, *dones_tail;
	bool offering, merging;
	int64_t merge_retry_ns;
	uint64_t taken, progress_sent;
	uint64_t rx_items, rx_dones; /* in pstat's rx_undecided, rx_dones (status) */
	/* Counted in pstat.unheard: from the connection's start until the partner's first Done
	 * or Backlog of this folder on it, or its Hello says it sends neither (net_sessions_status,
	 * RM.4) */
	bool unheard;
};

struct sconn {
	struct net_sessions *s;
	struct sconn *prev, *next;
	struct net_conn *c; /* NULL once down */
	size_t peer;
	unsigned refs; /* jobs in flight that point here */
	bool closing;  /* a protocol error closed it: ignore further messages */
	bool hello_sent, hello_rcvd;
	struct link *links; /* s->nfolders */
	struct xfer *fetch[NET_SESSION_FETCH_MAX];
	size_t fetch_max; /* downloads in flight allowed: ours and the partner's serve limit */

	/* downloads we abandoned while chunks we asked for were on the wire (our Cancel
	 * crosses them): those chunks are dropped as they come, then the id is forgotten;
	 * a ring, the oldest overwritten */
	struct {
		uint64_t id;
		size_t left, f;
	} drain[NET_SESSION_FETCH_MAX];

	size_t drain_next;
	struct serve *serves;
	size_t nserves;
	unsigned stages;                           /* stage jobs queued in the pool */
	struct stage_job *stage_head, *stage_tail; /* stage jobs waiting for one of those */
	unsigned reads;
	uint64_t next_id;
	/* Transfers we served and cancelled ourselves (read_done()): the downstream's Wants
	 * may cross our Cancel; the last GONE_IDS ids, Wants for them are dropped. */
	uint64_t gone[GONE_IDS];
	unsigned gone_next;
	int64_t big_scan_ns; /* fetch_start(): the last pass for large files */
};

/* Per folder and peer: status figures (s->lock), recount state (loop). */
struct pstat {
	bool connected;
	uint64_t backlog_out, backlog_in, bytes_sent, bytes_received, transfers;
	uint64_t busy_serves; /* Gets answered busy, each once its 4302 (if any) is logged */
	uint64_t files_done, files_total, bytes_done, bytes_total;
	bool kv_known;
	struct version_vector kv;       /* partner's last knowledge (Hello, then Acks) */
	struct dfsr_uid partner_db;     /* its database id (with kv_known) */
	bool recounting, recount_again; /* recount_again: one is due (maybe deferred) */
	int64_t recount_t0_ns;          /* the running recount's start (loop) */
	int64_t recount_next_ns;        /* the next may not start before (loop) */
	bool backlog_sent_valid;
	uint64_t backlog_sent;
	/* `dfsr wait` (s->lock): the journal's next_seq read before the last recount that
	 * completed (backlog_out counts every entry below it); updates received from the
	 * partner and not decided; its Dones not merged yet */
	uint64_t counted_seq;
	uint64_t rx_undecided, rx_dones;
	/* connections up whose first Done or Backlog is still due (link.unheard): until then
	 * backlog_in is the last connection's figure */
	unsigned unheard;
};

/* A version a partner asked for that could not be staged because it is open for writing
 * (outbound_serve() -EAGAIN): event 4302 once it stayed so for busy_event_ms. Loop. */
struct busy_version {
	struct stage_key key;
	int64_t first_ns, last_ns;
	bool used, logged;
};

#define BUSY_VERSIONS 32u /* remembered per folder */

struct sfolder {
	char *name;
	size_t name_len;
	struct journal *j;
	struct replica *r;
	struct stage *stage;
	bool read_only;
	uint32_t tombstone_days;
	_Atomic int64_t care_ns;                 /* next journal_tombstone_care() (pool) */
	struct busy_version busy[BUSY_VERSIONS]; /* loop */
	atomic_bool wake;
	/* the last download that failed on this disk (errno, when logged): event 3103 for
	 * the same error at most once a minute (a full disk fails every retry). Loop. */
	int dl_err;
	int64_t dl_err_ns;
	/* journal_state(), as last read on the pool: journal_state() takes the journal's
	 * mutex, which a database write may hold, and the loop thread must not wait on it */
	atomic_int state;
};

struct net_sessions {
	struct net_loop *loop;
	const struct config *cfg;
	uint8_t key[NET_CHANNEL_KEY_LEN];
	struct sfolder *folders;
	size_t nfolders;
	struct net_peers *peers;
	uv_async_t kick;
	uv_timer_t tick;
	uv_timer_t recount_timer; /* deferred recounts (loop) */
	int64_t recount_timer_ns; /* when it fires; 0: not armed (loop) */
	unsigned handles_open;    /* loop */
	bool handles_closing;     /* loop */
	bool stopping;            /* loop */
	struct sconn *conns;      /* loop */
	size_t pool_busy;         /* loop: jobs in flight */
	pthread_mutex_t lock;     /* protects the pstat figures, link upstream fields, finished */
	pthread_cond_t cond;      /* walks wait on it; stop waits for finished */
	bool finished;
	int64_t state_ns;            /* loop: the next states_refresh() */
	uint64_t window;             /* NET_SESSION_WINDOW, or the tests' */
	int64_t busy_event_ns;       /* NET_SESSION_BUSY_LOG_MS, or the tests' */
	int64_t retry_ns;            /* NET_SESSION_RETRY_MS, or the tests' */
	int64_t state_every_ns;      /* STATE_MS, or the tests' */
	uint64_t tick_ms;            /* TICK_MS, or the tests' retry interval if shorter */
	struct pstat *stats;         /* nfolders * npeers */
	struct walk_job *walks_done; /* walk threads finished, to join (s->lock) */
	void (*hello_hook)(void *arg, size_t peer); /* tests (net_sessions_opts) */
	void *hello_hook_arg;
};

/* ---- jobs ------------------------------------------------------------------------ */

struct job {
	uv_work_t w;
	struct net_sessions *s;
	struct sconn *k; /* NULL for jobs of the sessions */
	void (*run)(struct job *jb);
	void (*done)(struct job *jb, bool cancelled); /* loop; frees the job */
};

static void job_work(uv_work_t *w)
{
	struct job *jb = dfsr_container_of(w, struct job, w);

	jb->run(jb);
}

static void conn_maybe_free(struct sconn *k);
static void sessions_maybe_finish(struct net_sessions *s);

/* A job is back on the loop: apply it, drop its references. Thread: loop. */
static void job_finish(struct job *jb, bool cancelled)
{
	struct net_sessions *s = jb->s;
	struct sconn *k = jb->k;

	jb->done(jb, cancelled);
	s->pool_busy--;
	if (k) {
		k->refs--;
		conn_maybe_free(k);
	}
	sessions_maybe_finish(s);
}

static void job_after(uv_work_t *w, int status)
{
	job_finish(dfsr_container_of(w, struct job, w), status < 0);
}

/* Queue @jb; on failure its done() runs at once with cancelled set. Thread: loop. */
static void job_queue(struct net_sessions *s, struct sconn *k, struct job *jb)
{
	jb->s = s;
	jb->k = k;
	s->pool_busy++;
	if (k)
		k->refs++;
	if (uv_queue_work(net_loop_uv(s->loop), &jb->w, job_work, job_after) < 0)
		job_finish(jb, true);
}

/* ---- small helpers ---------------------------------------------------------------- */

static struct pstat *pstat_of(struct net_sessions *s, size_t f, size_t peer)
{
	return &s->stats[f * s->cfg->npeers + peer];
}

static bool conn_live(const struct sconn *k)
{
	return k->c && !k->closing && !k->s->stopping;
}

static const char *peer_name(const struct sconn *k)
{
	return k->s->cfg->peers[k->peer].name;
}

static void list_push(struct item_list *q, struct item *it)
{
	it->next = NULL;
	it->prev = q->tail;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->n++;
}

static void list_del(struct item_list *q, struct item *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		q->head = it->next;
	if (it->next)
		it->next->prev = it->prev;
	else
		q->tail = it->prev;
	it->prev = it->next = NULL;
	q->n--;
}

static void item_free(struct item *it)
{
	if (!it)
		return;
	replica_update_release(&it->u);
	free(it);
}

static void add_bytes(struct net_sessions *s, size_t f, size_t peer, size_t len, bool sent)
{
	struct pstat *ps;

	if (f >= s->nfolders)
		return;
	pthread_mutex_lock(&s->lock);
	ps = pstat_of(s, f, peer);
	if (sent)
		ps->bytes_sent += len;
	else
		ps->bytes_received += len;
	pthread_mutex_unlock(&s->lock);
}

static void add_transfers(struct net_sessions *s, size_t f, size_t peer, int delta)
{
	struct pstat *ps;

	pthread_mutex_lock(&s->lock);
	ps = pstat_of(s, f, peer);
	if (delta > 0)
		ps->transfers++;
	else if (ps->transfers)
		ps->transfers--;
	pthread_mutex_unlock(&s->lock);
}

/* Updates (@items) and Dones (@dones) received on @l: more of them undecided (> 0) or fewer
 * (< 0); for net_sessions_status(). Thread: loop. */
static void rx_count(struct link *l, int64_t items, int64_t dones)
{
	struct net_sessions *s = l->k->s;
	struct pstat *ps = pstat_of(s, l->f, l->k->peer);

	l->rx_items += (uint64_t)items;
	l->rx_dones += (uint64_t)dones;
	pthread_mutex_lock(&s->lock);
	ps->rx_undecided += (uint64_t)items;
	ps->rx_dones += (uint64_t)dones;
	pthread_mutex_unlock(&s->lock);
}

/* The partner's first Done or Backlog of @l's folder arrived on this connection, or it will
 * send none, or the connection is down: its backlog_in is this connection's. Caller holds
 * s->lock. Thread: loop. */
static void heard_locked(struct link *l)
{
	if (!l->unheard)
		return;
	l->unheard = false;
	pstat_of(l->k->s, l->f, l->k->peer)->unheard--;
}

/* ---- events ----------------------------------------------------------------------- */

struct event_job {
	struct job base;
	enum dfsr_event ev;
	size_t f;         /* SIZE_MAX: every folder */
	size_t busy_peer; /* SIZE_MAX, or a 4302 of a Get of this peer's: count it once logged */
	char details[EVENT_MSG_MAX];
};

/* A Get of partner @peer for folder @f was answered busy (its 4302, if it logged one, is
 * in the event log by now): count it in pstat.busy_serves. Thread: loop. */
static void busy_serve_count(struct net_sessions *s, size_t f, size_t peer)
{
	pthread_mutex_lock(&s->lock);
	pstat_of(s, f, peer)->busy_serves++;
	pthread_mutex_unlock(&s->lock);
}

static void event_run(struct job *jb)
{
	struct event_job *e = dfsr_container_of(jb, struct event_job, base);
	struct net_sessions *s = jb->s;

	for (size_t f = 0; f < s->nfolders; f++)
		if (e->f == SIZE_MAX || e->f == f)
			journal_event(s->folders[f].j, e->ev, "%s", e->details);
}

static void event_done(struct job *jb, bool cancelled)
{
	struct event_job *e = dfsr_container_of(jb, struct event_job, base);

	if (cancelled)
		event_log(e->ev, "%s", e->details);
	if (e->busy_peer != SIZE_MAX)
		busy_serve_count(jb->s, e->f, e->busy_peer);
	free(e);
}

/* Log event job @e (takes it) on the pool; while the handles close, at once to syslog. */
static void event_submit(struct net_sessions *s, struct event_job *e)
{
	if (s->handles_closing) {
		event_log(e->ev, "%s", e->details);
		if (e->busy_peer != SIZE_MAX)
			busy_serve_count(s, e->f, e->busy_peer);
		free(e);
		return;
	}
	e->base.run = event_run;
	e->base.done = event_done;
	job_queue(s, NULL, &e->base);
}

/* Log @ev into folder @f's event log (SIZE_MAX: every folder's), on the pool. */
static void sess_event(struct net_sessions *s, size_t f, enum dfsr_event ev, const char *fmt, ...)
	DFSR_PRINTF(4, 5);

static void sess_event(struct net_sessions *s, size_t f, enum dfsr_event ev, const char *fmt, ...)
{
	struct event_job *e = calloc(1, sizeof(*e));
	va_list ap;

	if (!e)
		return;
	va_start(ap, fmt);
	vsnprintf(e->details, sizeof(e->details), fmt, ap);
	va_end(ap);
	e->ev = ev;
	e->f = f;
	e->busy_peer = SIZE_MAX;
	event_submit(s, e);
}

/* A partner broke the protocol: event 3101 and close the connection. Thread: loop. */
static void proto_error(struct sconn *k, const char *what)
{
	if (!k->c || k->closing)
		return;
	k->closing = true;
	sess_event(k->s, SIZE_MAX, EV_PROTOCOL_ERROR, "peer=%s error=%s", peer_name(k), what);
	net_conn_close(k->c, -EBADMSG);
}

/*
 * A failure of ours on @k (@err: no memory, a message we cannot send): the partner did
 * nothing wrong, so no 3101; but a message lost would break the order the protocol relies
 * on (a Done claiming updates that never left, a transfer waiting for a chunk), so the
 * connection closes (5014 names @err) and the dialer connects again; event 3103 says
 * which step failed. Thread: loop.
 */
static void local_error(struct sconn *k, const char *step, int err)
{
	if (!k->c || k->closing)
		return;
	k->closing = true;
	sess_event(k->s, SIZE_MAX, EV_REPLICATION_RETRY, "peer=%s step=%s error=%s", peer_name(k),
		   step, dfsr_strerror(err));
	net_conn_close(k->c, err < 0 ? err : -EIO);
}

/* ---- wire helpers ------------------------------------------------------------------ */

struct pb_kv {
	Dfsr__Gvsn *ents;
	Dfsr__Gvsn **ptrs;
	size_t n;
};

/* Borrowing view of @vv as protobuf Gvsn pointers (the db bytes point into @vv). */
static int pb_kv_init(struct pb_kv *p, const struct version_vector *vv)
{
	p->n = vv->n;
	p->ents = calloc(vv->n ? vv->n : 1, sizeof(*p->ents));
	p->ptrs = calloc(vv->n ? vv->n : 1, sizeof(*p->ptrs));
	if (!p->ents || !p->ptrs) {
		free(p->ents);
		free(p->ptrs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < vv->n; i++) {
		dfsr__gvsn__init(&p->ents[i]);
		p->ents[i].db.data = (uint8_t *)(uintptr_t)vv->v[i].db.b;
		p->ents[i].db.len = DFSR_UID_LEN;
		p->ents[i].counter = vv->v[i].counter;
		p->ptrs[i] = &p->ents[i];
	}
	return 0;
}

static void pb_kv_release(struct pb_kv *p)
{
	free(p->ents);
	free(p->ptrs);
}

static int gvsn_decode(const Dfsr__Gvsn *g, struct version_gvsn *out)
{
	if (!g || g->db.len != DFSR_UID_LEN || g->counter == 0)
		return -EBADMSG;
	memcpy(out->db.b, g->db.data, DFSR_UID_LEN);
	out->counter = g->counter;
	return dfsr_uid_is_zero(&out->db) ? -EBADMSG : 0;
}

/* Untrusted knowledge vector into @out (initialised, empty). */
static int kv_decode(Dfsr__Gvsn *const *g, size_t n, struct version_vector *out)
{
	struct version_gvsn *v;

	if (n > VERSION_VV_MAX)
		return -EBADMSG;
	if (n == 0)
		return 0;
	v = calloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (gvsn_decode(g[i], &v[i]) < 0) {
			free(v);
			return -EBADMSG;
		}
	}
	out->v = v;
	out->n = n;
	out->cap = n;
	if (!version_vector_valid(out)) {
		version_vector_release(out);
		return -EBADMSG;
	}
	return 0;
}

static int msg_pack(const Dfsrwire__Msg *m, uint8_t **out, size_t *len)
{
	size_t n = dfsrwire__msg__get_packed_size(m);
	uint8_t *p = malloc(n ? n : 1);

	if (!p)
		return -ENOMEM;
	dfsrwire__msg__pack(m, p);
	*out = p;
	*len = n;
	return 0;
}

/* Send packed bytes on @k, counted for folder @f (SIZE_MAX: none). Thread: loop. */
static int conn_send_raw(struct sconn *k, size_t f, const uint8_t *p, size_t len)
{
	int rc;

	if (!conn_live(k))
		return -ENOTCONN;
	rc = net_conn_send(k->c, p, len);
	if (rc == 0)
		add_bytes(k->s, f, k->peer, len, true);
	else if (rc != -ENOTCONN)
		local_error(k, "send", rc);
	return rc;
}

static int conn_send(struct sconn *k, size_t f, const Dfsrwire__Msg *m)
{
	uint8_t *p;
	size_t len;
	int rc;

	if (!conn_live(k))
		return -ENOTCONN;
	rc = msg_pack(m, &p, &len);
	if (rc < 0) {
		local_error(k, "send", rc);
		return rc;
	}
	rc = conn_send_raw(k, f, p, len);
	free(p);
	return rc;
}

static ProtobufCBinaryData folder_bin(const struct net_sessions *s, size_t f)
{
	ProtobufCBinaryData b = { .len = s->folders[f].name_len,
				  .data = (uint8_t *)(uintptr_t)s->folders[f].name };

	return b;
}

/* The common link named @name, or NULL (then the caller reports a protocol error). */
static struct link *link_by_name(struct sconn *k, ProtobufCBinaryData name)
{
	struct net_sessions *s = k->s;

	for (size_t f = 0; f < s->nfolders; f++) {
		if (s->folders[f].name_len == name.len &&
		    memcmp(s->folders[f].name, name.data, name.len) == 0)
			return k->links[f].common ? &k->links[f] : NULL;
	}
	return NULL;
}

/* ---- status recount (backlog_out) --------------------------------------------------- */

/*
 * A member holds every version its own database made, whatever its last Ack said: raise
 * the partner's own entry of a copy of its knowledge to the top before walking or counting
 * against it, so that its own changes never go back to it (no echo after each install)
 * and never count as its backlog.
 */
static int own_versions(struct version_vector *kv, const struct dfsr_uid *db)
{
	int rc = version_vector_raise(kv, db, UINT64_MAX);

	return rc == -E2BIG ? 0 : rc;
}

struct recount_job {
	struct job base;
	size_t f, peer;
	int old_state;
	bool kv_known;
	struct version_vector kv;
	uint64_t count;
	uint64_t seq; /* the journal's next_seq before counting: every entry below is counted */
	int rc;
};

static void recount_run(struct job *jb)
{
	struct recount_job *r = dfsr_container_of(jb, struct recount_job, base);
	struct sfolder *sf = &jb->s->folders[r->f];
	struct journal_status js;

	journal_get_status(sf->j, &js);
	r->seq = js.next_seq;
	r->rc = outbound_backlog(sf->j, r->kv_known ? &r->kv : NULL, &r->count, 0, NULL, NULL);
	r->old_state = atomic_exchange(&sf->state, (int)journal_state(sf->j));
}

static void recount_start(struct net_sessions *s, size_t f, size_t peer);
static void folder_changed_state(struct net_sessions *s, size_t f);
static void send_backlog(struct net_sessions *s, size_t f, size_t peer);

static void recount_done(struct job *jb, bool cancelled)
{
	struct recount_job *r = dfsr_container_of(jb, struct recount_job, base);
	struct net_sessions *s = jb->s;
	struct pstat *ps = pstat_of(s, r->f, r->peer);
	bool again;

	pthread_mutex_lock(&s->lock);
	if (!cancelled && r->rc == 0) {
		ps->backlog_out = s->folders[r->f].read_only ? 0 : r->count;
		ps->counted_seq = r->seq; /* one recount at a time per folder and peer */
	}
	pthread_mutex_unlock(&s->lock);
	size_t f = r->f, peer = r->peer;
	bool now_normal = !cancelled && r->old_state != JOURNAL_STATE_NORMAL &&
			  atomic_load(&s->folders[f].state) == JOURNAL_STATE_NORMAL;

	ps->recounting = false;
	{
		int64_t now = dfsr_mono_ns(), took = now - ps->recount_t0_ns;

		ps->recount_next_ns = now + (took * RECOUNT_SHARE > MONO_MS(RECOUNT_GAP_MS)
						     ? took * RECOUNT_SHARE
						     : MONO_MS(RECOUNT_GAP_MS));
	}
	again = ps->recount_again;
	version_vector_release(&r->kv);
	free(r);
	if (s->stopping)
		return;
	if (now_normal)
		folder_changed_state(s, f); /* e.g. the initial build ended */
	send_backlog(s, f, peer);
	if (again)
		recount_start(s, f, peer);
}

static void on_recount_timer(uv_timer_t *t);

/* Fire the recount timer at @at_ns at the latest. Thread: loop. */
static void recount_timer_arm(struct net_sessions *s, int64_t at_ns)
{
	int64_t now = dfsr_mono_ns();

	if (s->recount_timer_ns && s->recount_timer_ns <= at_ns)
		return;
	s->recount_timer_ns = at_ns;
	uv_timer_start(&s->recount_timer, on_recount_timer,
		       at_ns > now ? (uint64_t)((at_ns - now + 999999) / 1000000) : 0, 0);
}

/*
 * Recount backlog_out of (@f, @peer) on the pool, coalesced. Thread: loop.
 *
 * A recount walks every record, and while updates are installed (initial sync) every
 * install changes the journal and asks for one: back to back, those walks cost more than
 * the installs. So a recount starts at most once per RECOUNT_GAP_MS (or RECOUNT_SHARE
 * times the last one's duration, whichever is longer) per folder and peer; one asked for
 * sooner is deferred (recount_again, the recount timer), never dropped: the last change is
 * always followed by a complete recount, so the count settles exact, only up to a gap
 * later. The first change after a quiet period is counted at once.
 */
static void recount_start(struct net_sessions *s, size_t f, size_t peer)
{
	struct pstat *ps = pstat_of(s, f, peer);
	struct recount_job *r;

	if (s->stopping)
		return;
	if (ps->recounting) {
		ps->recount_again = true;
		return;
	}
	if (ps->recount_next_ns > dfsr_mono_ns()) {
		ps->recount_again = true;
		recount_timer_arm(s, ps->recount_next_ns);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->f = f;
	r->peer = peer;
	version_vector_init(&r->kv);
	pthread_mutex_lock(&s->lock);
	r->kv_known = ps->kv_known;
	if (r->kv_known &&
	    (version_vector_copy(&r->kv, &ps->kv) < 0 || own_versions(&r->kv, &ps->partner_db) < 0))
		r->kv_known = false;
	pthread_mutex_unlock(&s->lock);
	ps->recounting = true;
	ps->recount_again = false;
	ps->recount_t0_ns = dfsr_mono_ns();
	r->base.run = recount_run;
	r->base.done = recount_done;
	job_queue(s, NULL, &r->base);
}

/* Start the deferred recounts that are due. Thread: loop. */
static void on_recount_timer(uv_timer_t *t)
{
	struct net_sessions *s = dfsr_container_of(t, struct net_sessions, recount_timer);

	s->recount_timer_ns = 0;
	for (size_t f = 0; f < s->nfolders && !s->stopping; f++) {
		for (size_t p = 0; p < s->cfg->npeers; p++) {
			const struct pstat *ps = pstat_of(s, f, p);

			if (ps->recount_again && !ps->recounting)
				recount_start(s, f, p); /* re-arms the timer if not due yet */
		}
	}
}

/* ---- Hello ---------------------------------------------------------------------------- */

struct hello_job {
	struct job base;
	uint8_t *buf;
	size_t len;
	bool *stale; /* per folder: stale when its knowledge was read (link.hello_stale) */
	struct version_vector *kv; /* per folder: the knowledge the Hello carries */
	int rc;
};

static void hello_run(struct job *jb)
{
	struct hello_job *h = dfsr_container_of(jb, struct hello_job, base);
	struct net_sessions *s = jb->s;
	Dfsrwire__Hello hello = DFSRWIRE__HELLO__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
	Dfsrwire__FolderHello *fh = calloc(s->nfolders ? s->nfolders : 1, sizeof(*fh));
	Dfsrwire__FolderHello **fp = calloc(s->nfolders ? s->nfolders : 1, sizeof(*fp));
	struct version_vector *kv = calloc(s->nfolders ? s->nfolders : 1, sizeof(*kv));
	struct pb_kv *pk = calloc(s->nfolders ? s->nfolders : 1, sizeof(*pk));
	size_t done = 0;

	if (s->hello_hook)
		s->hello_hook(s->hello_hook_arg, jb->k->peer);
	h->rc = -ENOMEM;
	h->stale = calloc(s->nfolders ? s->nfolders : 1, sizeof(*h->stale));
	if (!fh || !fp || !kv || !pk || !h->stale)
		goto out;
	for (; done < s->nfolders; done++) {
		struct sfolder *sf = &s->folders[done];

		version_vector_init(&kv[done]);
		/* read before the knowledge: a folder that turns stale in between reconnects */
		h->stale[done] = journal_stale(sf->j, NULL);
		/* lowered below what a read-only member must install again (conflicts.md §11) */
		if (replica_hello_knowledge(sf->r, &kv[done]) < 0 ||
		    pb_kv_init(&pk[done], &kv[done]) < 0) {
			version_vector_release(&kv[done]);
			goto out;
		}
		dfsrwire__folder_hello__init(&fh[done]);
		fh[done].name = folder_bin(s, done);
		fh[done].db_id.data = (uint8_t *)(uintptr_t)journal_db_id(sf->j)->b;
		fh[done].db_id.len = DFSR_UID_LEN;
		fh[done].state = (uint32_t)journal_state(sf->j);
		fh[done].n_knowledge = pk[done].n;
		fh[done].knowledge = pk[done].ptrs;
		fh[done].read_only = sf->read_only;
		fp[done] = &fh[done];
	}
	hello.proto = NET_SESSION_PROTO;
	hello.serve_max = NET_SESSION_SERVE_MAX;
	hello.member.data = (uint8_t *)(uintptr_t)s->cfg->member_name;
	hello.member.len = strlen(s->cfg->member_name);
	hello.n_folders = s->nfolders;
	hello.folders = fp;
	m.m_case = DFSRWIRE__MSG__M_HELLO;
	m.hello = &hello;
	h->rc = msg_pack(&m, &h->buf, &h->len);
out:
	for (size_t i = 0; i < done; i++) {
		pb_kv_release(&pk[i]);
		if (h->rc < 0)
			version_vector_release(&kv[i]);
	}
	if (h->rc == 0)
		h->kv = kv; /* taken: an Ack owed meanwhile is sent with it merged in */
	else
		free(kv);
	free(fh);
	free(fp);
	free(pk);
}

static void conn_maybe_start(struct sconn *k);
static void send_ack(struct link *l, const struct version_vector *kv);

/* Our Hello on @k just went out: send the Acks that merges owed meanwhile (merge_done()),
 * each with the knowledge the Hello carried merged in, so that it never tells the partner
 * less than the Hello did. Thread: loop. */
static void acks_owed(struct sconn *k, const struct version_vector *hello_kv)
{
	for (size_t f = 0; f < k->s->nfolders && conn_live(k); f++) {
		struct link *l = &k->links[f];

		if (!l->ack_owed)
			continue;
		l->ack_owed = false;
		/* should the merge fail (no memory), the Ack still tells true knowledge */
		if (hello_kv)
			(void)version_vector_merge(&l->ack_kv, &hello_kv[f]);
		if (l->common)
			send_ack(l, &l->ack_kv);
		version_vector_release(&l->ack_kv);
	}
}

static void hello_done(struct job *jb, bool cancelled)
{
	struct hello_job *h = dfsr_container_of(jb, struct hello_job, base);
	struct sconn *k = jb->k;

	if (!cancelled && h->rc == 0 && conn_live(k)) {
		for (size_t f = 0; f < jb->s->nfolders; f++)
			k->links[f].hello_stale = h->stale[f];
		if (conn_send_raw(k, SIZE_MAX, h->buf, h->len) == 0) {
			k->hello_sent = true;
			acks_owed(k, h->kv);
			conn_maybe_start(k);
		}
	} else if (conn_live(k)) {
		local_error(k, "hello", cancelled ? -ECANCELED : h->rc);
	}
	for (size_t f = 0; h->kv && f < jb->s->nfolders; f++)
		version_vector_release(&h->kv[f]);
	free(h->kv);
	free(h->buf);
	free(h->stale);
	free(h);
}

static int hello_folder(struct sconn *k, const Dfsrwire__FolderHello *fh)
{
	struct net_sessions *s = k->s;
	struct version_vector kv;
	struct link *l = NULL;
	struct pstat *ps;
	size_t f;

	if (!fh || fh->name.len == 0 || fh->name.len > CONFIG_NAME_MAX ||
	    fh->db_id.len != DFSR_UID_LEN || fh->state > JOURNAL_STATE_ERROR)
		return -EBADMSG;
	for (f = 0; f < s->nfolders; f++) {
		if (s->folders[f].name_len == fh->name.len &&
		    memcmp(s->folders[f].name, fh->name.data, fh->name.len) == 0) {
			l = &k->links[f];
			break;
		}
	}
	version_vector_init(&kv);
	if (kv_decode(fh->knowledge, fh->n_knowledge, &kv) < 0)
		return -EBADMSG;
	if (!l || memcmp(fh->db_id.data, journal_db_id(s->folders[f].j)->b, DFSR_UID_LEN) == 0) {
		version_vector_release(&kv); /* a folder only they hold, or ourselves */
		return 0;
	}
	if (l->common) {
		version_vector_release(&kv);
		return -EBADMSG; /* the same folder twice */
	}
	l->common = true;
	l->partner_state = fh->state;
	l->partner_ro = fh->read_only;
	memcpy(l->partner_db.b, fh->db_id.data, DFSR_UID_LEN);
	pthread_mutex_lock(&s->lock);
	version_vector_release(&l->partner_kv);
	l->partner_kv = kv;
	ps = pstat_of(s, f, k->peer);
	ps->kv_known = version_vector_copy(&ps->kv, &kv) == 0;
	ps->partner_db = l->partner_db;
	pthread_mutex_unlock(&s->lock);
	recount_start(s, f, k->peer);
	return 0;
}

static int hello_check(const Dfsrwire__Hello *h);

static void on_hello(struct sconn *k, const Dfsrwire__Hello *h)
{
	if (k->hello_rcvd) {
		proto_error(k, "second Hello");
		return;
	}
	if (h->proto != NET_SESSION_PROTO) {
		sess_event(k->s, SIZE_MAX, EV_PARTNER_REFUSED,
			   "peer=%s proto=%" PRIu32 " expected=%d", peer_name(k), h->proto,
			   NET_SESSION_PROTO);
		k->closing = true;
		net_conn_close(k->c, -EPROTONOSUPPORT);
		return;
	}
	if (hello_check(h) < 0) {
		proto_error(k, "bad Hello");
		return;
	}
	for (size_t i = 0; i < h->n_folders; i++)
		if (hello_folder(k, h->folders[i]) < 0) {
			proto_error(k, "bad Hello folder");
			return;
		}
	k->fetch_max = h->serve_max ? h->serve_max : NET_SESSION_SERVE_OLD;
	if (k->fetch_max > NET_SESSION_FETCH_MAX)
		k->fetch_max = NET_SESSION_FETCH_MAX;
	k->hello_rcvd = true;
	/* A partner sends Done and Backlog only for a folder both hold, that is normal and not
	 * read-only on its side (RM.3): the others will send nothing to wait for. One that
	 * turns normal later sends a Done then (unsettled while it is not merged). */
	pthread_mutex_lock(&k->s->lock);
	for (size_t f = 0; f < k->s->nfolders; f++) {
		const struct link *l = &k->links[f];

		if (!l->common || l->partner_ro || l->partner_state != JOURNAL_STATE_NORMAL)
			heard_locked(&k->links[f]);
	}
	pthread_mutex_unlock(&k->s->lock);
	conn_maybe_start(k);
}

/* ---- upstream: walks ------------------------------------------------------------------- */

struct walk_job {
	struct job base;
	pthread_t tid;
	struct walk_job *done_next;
	struct link *l;
	bool missing;
	uint64_t from, next_seq;
	struct dfsr_uid *again; /* the link's, taken for this walk */
	size_t nagain;
	bool claim;                  /* claim skipped versions in Done all the same */
	struct outbound_skips skips; /* what this walk skipped */
	struct version_vector partner;
	Dfsrwire__Update **ups; /* the batch being filled */
	size_t n, bytes;
	int rc;
};

static void pb_update_free(Dfsrwire__Update *p)
{
	if (!p)
		return;
	free(p->record.data);
	for (size_t i = 0; i < p->n_xattrs; i++) {
		if (!p->xattrs[i])
			continue;
		free(p->xattrs[i]->name.data);
		free(p->xattrs[i]->value.data);
		free(p->xattrs[i]);
	}
	free(p->xattrs);
	free(p->link_target.data);
	free(p);
}

static uint8_t *memdup0(const void *p, size_t len)
{
	uint8_t *q = malloc(len ? len : 1);

	if (q && len)
		memcpy(q, p, len);
	return q;
}

/* A packable copy of @u; *@bytes receives what it adds to an Updates message. */
static int pb_update_new(const struct replica_update *u, Dfsrwire__Update **out, size_t *bytes)
{
	Dfsrwire__Update *p = calloc(1, sizeof(*p));
	struct dfsr_buf rb;
	int rc;

	if (!p)
		return -ENOMEM;
	dfsrwire__update__init(p);
	dfsr_buf_init(&rb);
	rc = record_encode(&u->rec, &rb);
	if (rc < 0) {
		dfsr_buf_release(&rb);
		free(p);
		return rc;
	}
	p->record.data = (uint8_t *)dfsr_buf_detach(&rb, &p->record.len);
	rc = -ENOMEM;
	if (u->nxattrs) {
		p->xattrs = calloc(u->nxattrs, sizeof(*p->xattrs));
		if (!p->xattrs)
			goto out_free;
	}
	for (size_t i = 0; i < u->nxattrs; i++) {
		Dfsrwire__Xattr *x = calloc(1, sizeof(*x));

		if (!x)
			goto out_free;
		dfsrwire__xattr__init(x);
		p->xattrs[p->n_xattrs++] = x;
		x->name.len = strlen(u->xattrs[i].name);
		x->name.data = memdup0(u->xattrs[i].name, x->name.len);
		x->value.len = u->xattrs[i].len;
		x->value.data = memdup0(u->xattrs[i].value, x->value.len);
		if (!x->name.data || !x->value.data)
			goto out_free;
	}
	if (u->link_target) {
		p->link_target.len = strlen(u->link_target);
		p->link_target.data = memdup0(u->link_target, p->link_target.len);
		if (!p->link_target.data)
			goto out_free;
	}
	*out = p;
	*bytes = dfsrwire__update__get_packed_size(p) + UPDATE_FRAMING;
	return 0;
out_free:
	pb_update_free(p);
	return rc;
}

static void batch_clear(struct walk_job *w)
{
	for (size_t i = 0; i < w->n; i++)
		pb_update_free(w->ups[i]);
	w->n = 0;
	w->bytes = 0;
}

/* Queue packed @buf on the link, waiting for room (flow control); takes @buf.
 * @nupd: updates in it (counted against the window). Thread: pool. */
static int link_push(struct walk_job *w, uint8_t *buf, size_t len, size_t nupd)
{
	struct net_sessions *s = w->base.s;
	struct link *l = w->l;
	struct outmsg *om = calloc(1, sizeof(*om));

	if (!om) {
		free(buf);
		return -ENOMEM;
	}
	om->buf = buf;
	om->len = len;
	pthread_mutex_lock(&s->lock);
	while (!l->cancel &&
	       (l->outq_n >= OUTQ_MAX || (nupd && l->pushed - l->offered >= s->window)))
		pthread_cond_wait(&s->cond, &s->lock);
	if (l->cancel) {
		pthread_mutex_unlock(&s->lock);
		free(buf);
		free(om);
		return -ECANCELED;
	}
	if (l->outq_tail)
		l->outq_tail->next = om;
	else
		l->outq_head = om;
	l->outq_tail = om;
	l->outq_n++;
	l->pushed += nupd;
	pthread_mutex_unlock(&s->lock);
	uv_async_send(&s->kick);
	return 0;
}

static int batch_flush(struct walk_job *w)
{
	Dfsrwire__Updates ups = DFSRWIRE__UPDATES__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
	size_t n = w->n, len;
	uint8_t *buf;
	int rc;

	if (n == 0)
		return 0;
	ups.folder = folder_bin(w->base.s, w->l->f);
	ups.n_updates = n;
	ups.updates = w->ups;
	m.m_case = DFSRWIRE__MSG__M_UPDATES;
	m.updates = &ups;
	rc = msg_pack(&m, &buf, &len);
	batch_clear(w);
	if (rc < 0)
		return rc;
	return link_push(w, buf, len, n);
}

/*
 * Add @u to the batch. A batch is flushed before an update that would take it past
 * NET_SESSION_BATCH_BYTES, and once it holds NET_SESSION_BATCH_MAX updates or reaches that
 * size, so a message is at most NET_SESSION_BATCH_BYTES or one update (and its envelope).
 * An update too large for one message even alone cannot be built within the limits
 * outbound keeps (UPDATE_MAX, checked at compile time); should one come all the same, it
 * is skipped with event 1401, as outbound skips an object whose attributes exceed them,
 * rather than failing the send, and so the connection, again on every reconnect.
 */
static int walk_cb(void *arg, const struct replica_update *u)
{
	struct walk_job *w = arg;
	Dfsrwire__Update *p;
	size_t sz;
	int rc;

	rc = pb_update_new(u, &p, &sz);
	if (rc == -EINVAL)
		return 0; /* a record breaking an invariant is not sent (cannot happen) */
	if (rc < 0)
		return rc;
	if (sz + UPDATES_ENVELOPE > NET_CHANNEL_MAX_MSG) {
		char hex[DFSR_UID_HEX_LEN];

		dfsr_uid_hex(&u->rec.uid, hex);
		journal_event(w->base.s->folders[w->l->f].j, EV_OUTBOUND_SKIPPED,
			      "name=%s uid=%s err=its update (%zu bytes) is too large to replicate",
			      u->rec.name, hex, sz);
		pb_update_free(p);
		return 0;
	}
	if (w->n && w->bytes + sz > NET_SESSION_BATCH_BYTES) {
		rc = batch_flush(w);
		if (rc < 0) {
			pb_update_free(p);
			return rc;
		}
	}
	w->ups[w->n++] = p;
	w->bytes += sz;
	if (w->n >= NET_SESSION_BATCH_MAX || w->bytes >= NET_SESSION_BATCH_BYTES)
		return batch_flush(w);
	return 0;
}

static int push_done(struct walk_job *w, const struct version_vector *kv, uint32_t state)
{
	struct net_sessions *s = w->base.s;
	Dfsrwire__Done d = DFSRWIRE__DONE__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
	struct pb_kv pk;
	uint8_t *buf;
	size_t len;
	int rc;

	rc = pb_kv_init(&pk, kv);
	if (rc < 0)
		return rc;
	d.folder = folder_bin(s, w->l->f);
	d.n_knowledge = pk.n;
	d.knowledge = pk.ptrs;
	d.state = state;
	pthread_mutex_lock(&s->lock);
	d.backlog = pstat_of(s, w->l->f, w->base.k->peer)->backlog_out;
	pthread_mutex_unlock(&s->lock);
	m.m_case = DFSRWIRE__MSG__M_DONE;
	m.done = &d;
	rc = msg_pack(&m, &buf, &len);
	pb_kv_release(&pk);
	if (rc < 0)
		return rc;
	return link_push(w, buf, len, 0);
}

static void walk_run(struct job *jb)
{
	struct walk_job *w = dfsr_container_of(jb, struct walk_job, base);
	struct sfolder *sf = &jb->s->folders[w->l->f];
	struct version_vector kv;
	uint32_t state;

	/* Our knowledge before the walk: every version in it is in the records (or journal
	 * entries) the walk reads, so Done never claims more than was sent, but for the
	 * objects the walk could not find on disk: their versions are left out of it (which
	 * un-claims the later versions of the same database too, until the next Done). */
	version_vector_init(&kv);
	state = (uint32_t)journal_state(sf->j);
	w->rc = replica_knowledge(sf->r, &kv);
	if (w->rc < 0)
		goto out;
	if (w->nagain)
		w->rc = outbound_again(sf->j, w->again, w->nagain, &w->partner, &w->skips, walk_cb,
				       w);
	if (w->rc == 0 && w->missing)
		w->rc = outbound_missing(sf->j, &w->partner, &w->next_seq, &w->skips, walk_cb, w);
	else if (w->rc == 0)
		w->rc = outbound_changes(sf->j, w->from, 0, &w->partner, &w->next_seq, &w->skips,
					 walk_cb, w);
	if (w->rc == 0)
		w->rc = batch_flush(w);
	for (size_t i = 0; w->rc == 0 && !w->claim && i < w->skips.n; i++)
		version_vector_lower(&kv, &w->skips.gvsn[i].db, w->skips.gvsn[i].counter - 1);
	if (w->rc == 0)
		w->rc = push_done(w, &kv, state);
out:
	batch_clear(w);
	version_vector_release(&kv);
}

static void walk_start(struct link *l);

/*
 * After a walk: the objects it skipped as not found are offered again by the next walk,
 * at the latest AGAIN_MS later (on_tick()). After AGAIN_ROUNDS walks in a row that
 * skipped some, the next one claims them (an object deleted behind dfsr's back is gone
 * until the next start's scan), and they are logged with event 1401. Thread: loop.
 */
static void again_note(struct link *l, struct walk_job *w)
{
	struct net_sessions *s = l->k->s;
	char hex[DFSR_UID_HEX_LEN];

	free(l->again);
	l->again = NULL;
	l->nagain = 0;
	if (w->skips.n == 0) {
		l->again_rounds = 0;
		return;
	}
	if (w->claim) {
		for (size_t i = 0; i < w->skips.n && i < AGAIN_LOGGED; i++) {
			dfsr_uid_hex(&w->skips.uid[i], hex);
			sess_event(s, l->f, EV_OUTBOUND_SKIPPED,
				   "uid=%s peer=%s err=not found on disk (tried %u times)", hex,
				   peer_name(l->k), l->again_rounds);
		}
		if (w->skips.n > AGAIN_LOGGED)
			sess_event(s, l->f, EV_OUTBOUND_SKIPPED,
				   "peer=%s err=%zu more objects not found on disk",
				   peer_name(l->k), w->skips.n - AGAIN_LOGGED);
		l->again_rounds = 0;
		return;
	}
	l->again = w->skips.uid; /* taken */
	l->nagain = w->skips.n;
	w->skips.uid = NULL;
	l->again_rounds++;
	l->again_ns = dfsr_mono_ns() + MONO_MS(AGAIN_MS);
}

static void walk_done(struct job *jb, bool cancelled)
{
	struct walk_job *w = dfsr_container_of(jb, struct walk_job, base);
	struct link *l = w->l;
	struct net_sessions *s = jb->s;

	l->walking = false;
	if (!cancelled && w->rc == 0) {
		l->missing_done = true;
		l->next_seq = w->next_seq;
		again_note(l, w);
	} else {
		if (!cancelled && w->rc != -ECANCELED && conn_live(l->k)) {
			sess_event(s, l->f, EV_REPLICATION_RETRY, "peer=%s step=send error=%s",
				   peer_name(l->k), dfsr_strerror(w->rc));
			l->walk_retry_ns = dfsr_mono_ns() + s->retry_ns;
		}
		if (!l->again) { /* not offered: the next walk does */
			l->again = w->again;
			l->nagain = w->nagain;
			w->again = NULL;
		}
	}
	free(w->again);
	outbound_skips_release(&w->skips);
	version_vector_release(&w->partner);
	free(w->ups);
	free(w);
	uv_async_send(&s->kick); /* flush what the walk queued last */
	if (l->walk_again)
		walk_start(l);
}

static bool up_allowed(const struct link *l)
{
	const struct sfolder *sf = &l->k->s->folders[l->f];

	return conn_live(l->k) && l->k->hello_sent && l->k->hello_rcvd && l->common &&
	       !sf->read_only && atomic_load(&sf->state) == JOURNAL_STATE_NORMAL;
}

/*
 * Walks run on a thread of their own, not on the libuv pool: a walk waits for the
 * partner's Progress (flow control) for as long as the partner takes, and a pool thread
 * held that long, one per link, could leave no pool thread for the offers and transfers
 * that let the partners make progress (both sides walking to each other would deadlock
 * with 4 pool threads). The thread queues itself on s->walks_done and kicks the loop,
 * which joins it and runs the done() as for a pool job.
 */
static void *walk_thread(void *arg)
{
	struct walk_job *w = arg;
	struct net_sessions *s = w->base.s;

	walk_run(&w->base);
	pthread_mutex_lock(&s->lock);
	w->done_next = s->walks_done;
	s->walks_done = w;
	pthread_mutex_unlock(&s->lock);
	uv_async_send(&s->kick);
	return NULL;
}

static void walk_spawn(struct net_sessions *s, struct sconn *k, struct walk_job *w)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int rc;

	w->base.s = s;
	w->base.k = k;
	s->pool_busy++;
	k->refs++;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* signals go to main only */
	pthread_attr_init(&attr);
	rc = pthread_create(&w->tid, &attr, walk_thread, w);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		w->rc = -rc;
		job_finish(&w->base, false);
	}
}

/* Join and finish the walks whose threads are done. Thread: loop. */
static void walks_reap(struct net_sessions *s)
{
	struct walk_job *w;

	pthread_mutex_lock(&s->lock);
	w = s->walks_done;
	s->walks_done = NULL;
	pthread_mutex_unlock(&s->lock);
	while (w) {
		struct walk_job *next = w->done_next;

		pthread_join(w->tid, NULL);
		job_finish(&w->base, false);
		w = next;
	}
}

/* Start a walk of @l now, or once the running one ends. Thread: loop. */
static void walk_start(struct link *l)
{
	struct net_sessions *s = l->k->s;
	struct walk_job *w;

	if (!up_allowed(l) || l->walk_retry_ns > dfsr_mono_ns())
		return;
	if (l->walking) {
		l->walk_again = true;
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->ups = calloc(NET_SESSION_BATCH_MAX, sizeof(*w->ups));
	version_vector_init(&w->partner);
	pthread_mutex_lock(&s->lock);
	if (!w->ups || version_vector_copy(&w->partner, &l->partner_kv) < 0 ||
	    own_versions(&w->partner, &l->partner_db) < 0) {
		pthread_mutex_unlock(&s->lock);
		free(w->ups);
		free(w);
		return;
	}
	pthread_mutex_unlock(&s->lock);
	w->l = l;
	w->missing = !l->missing_done;
	w->from = l->next_seq;
	outbound_skips_init(&w->skips);
	w->again = l->again;
	w->nagain = l->nagain;
	w->claim = l->again_rounds >= AGAIN_ROUNDS;
	l->again = NULL;
	l->nagain = 0;
	l->again_ns = 0;
	l->walking = true;
	l->walk_again = false;
	l->walk_retry_ns = 0;
	w->base.run = walk_run;
	w->base.done = walk_done;
	walk_spawn(s, l->k, w);
}

/* Send what the walks queued, while the connection has room. Thread: loop. */
static void link_flush(struct link *l)
{
	struct net_sessions *s = l->k->s;
	struct outmsg *om;

	while (conn_live(l->k) && net_conn_queued(l->k->c) <= NET_PEER_OUT_HIGH) {
		pthread_mutex_lock(&s->lock);
		om = l->outq_head;
		if (om) {
			l->outq_head = om->next;
			if (!l->outq_head)
				l->outq_tail = NULL;
			l->outq_n--;
			pthread_cond_broadcast(&s->cond);
		}
		pthread_mutex_unlock(&s->lock);
		if (!om)
			break;
		conn_send_raw(l->k, l->f, om->buf, om->len);
		free(om->buf);
		free(om);
	}
}

static void send_backlog(struct net_sessions *s, size_t f, size_t peer)
{
	Dfsrwire__Backlog b = DFSRWIRE__BACKLOG__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
	struct pstat *ps = pstat_of(s, f, peer);
	struct sconn *k;

	for (k = s->conns; k; k = k->next)
		if (k->peer == peer && conn_live(k))
			break;
	if (!k || !up_allowed(&k->links[f]))
		return;
	pthread_mutex_lock(&s->lock);
	b.count = ps->backlog_out;
	pthread_mutex_unlock(&s->lock);
	if (ps->backlog_sent_valid && ps->backlog_sent == b.count)
		return;
	b.folder = folder_bin(s, f);
	m.m_case = DFSRWIRE__MSG__M_BACKLOG;
	m.backlog = &b;
	if (conn_send(k, f, &m) == 0) {
		ps->backlog_sent_valid = true;
		ps->backlog_sent = b.count;
	}
}

/* ---- downstream: receiving updates ------------------------------------------------------ */

/* Untrusted Update into @u (initialised here). */
static int update_decode(const Dfsrwire__Update *p, struct replica_update *u)
{
	int rc;

	replica_update_init(u);
	if (!p || p->n_xattrs > REPLICA_XATTR_MAX || p->link_target.len > REPLICA_LINK_MAX)
		return -EBADMSG;
	rc = record_decode(&u->rec, p->record.data, p->record.len);
	if (rc < 0)
		return rc;
	rc = -ENOMEM;
	if (p->n_xattrs) {
		u->xattrs = calloc(p->n_xattrs, sizeof(*u->xattrs));
		if (!u->xattrs)
			goto out_release;
	}
	for (size_t i = 0; i < p->n_xattrs; i++) {
		const Dfsrwire__Xattr *x = p->xattrs[i];
		struct replica_xattr *ux = &u->xattrs[i];

		rc = -EBADMSG;
		if (!x || x->name.len == 0 || x->name.len > 255 ||
		    memchr(x->name.data, 0, x->name.len) || x->value.len > REPLICA_XATTR_BYTES)
			goto out_release;
		rc = -ENOMEM;
		ux->name = calloc(1, x->name.len + 1);
		ux->value = memdup0(x->value.data, x->value.len);
		u->nxattrs++;
		if (!ux->name || !ux->value)
			goto out_release;
		memcpy(ux->name, x->name.data, x->name.len);
		ux->len = x->value.len;
	}
	if (p->link_target.len) {
		rc = -EBADMSG;
		if (memchr(p->link_target.data, 0, p->link_target.len))
			goto out_release;
		rc = -ENOMEM;
		u->link_target = calloc(1, p->link_target.len + 1);
		if (!u->link_target)
			goto out_release;
		memcpy(u->link_target, p->link_target.data, p->link_target.len);
	}
	rc = replica_update_check(u);
	if (rc == 0)
		return 0;
out_release:
	replica_update_release(u);
	return rc;
}

static bool folder_syncing(const struct net_sessions *s, size_t f)
{
	return atomic_load(&s->folders[f].state) == JOURNAL_STATE_INITIAL_SYNC;
}

/* @it is decided (done or refused): count it and free it. Thread: loop. */
static void item_decided(struct link *l, struct item *it)
{
	struct net_sessions *s = l->k->s;

	if (it->in_window) {
		it->in_window = false;
		l->taken++;
	}
	if (it->counted) {
		struct pstat *ps = pstat_of(s, l->f, l->k->peer);

		pthread_mutex_lock(&s->lock);
		ps->files_done++;
		ps->bytes_done += it->u.rec.type == RECORD_FILE ? it->u.rec.size : 0;
		pthread_mutex_unlock(&s->lock);
	}
	item_free(it);
	rx_count(l, -1, 0);
}

static void offer_start(struct link *l);
static void offer_start_opt(struct link *l, bool waits);
static void dones_check(struct link *l);

static void on_updates(struct sconn *k, const Dfsrwire__Updates *m, size_t len)
{
	struct net_sessions *s = k->s;
	struct link *l = link_by_name(k, m->folder);
	struct pstat *ps;
	bool sync;

	if (!l || m->n_updates == 0 || m->n_updates > NET_SESSION_BATCH_MAX ||
	    l->held.n > HELD_MAX * s->window + NET_SESSION_BATCH_MAX) {
		proto_error(k, "bad Updates");
		return;
	}
	add_bytes(s, l->f, k->peer, len, false);
	/* The upstream keeps to the window; more than two windows queued is a peer that does
	 * not, and would grow this queue without bound. */
	if (l->inq.n + m->n_updates > 2u * s->window + NET_SESSION_BATCH_MAX) {
		proto_error(k, "Updates beyond the window");
		return;
	}
	sync = folder_syncing(s, l->f);
	ps = pstat_of(s, l->f, k->peer);
	for (size_t i = 0; i < m->n_updates; i++) {
		struct item *it = calloc(1, sizeof(*it));

		int rc = it ? update_decode(m->updates[i], &it->u) : -ENOMEM;

		if (rc < 0) {
			free(it);
			if (rc == -ENOMEM)
				local_error(k, "receive", rc);
			else
				proto_error(k, "bad update");
			return;
		}
		it->epoch = l->rx_epoch;
		it->st = IT_NEW;
		it->in_window = true;
		if (sync && !it->u.rec.tombstone) {
			it->counted = true;
			pthread_mutex_lock(&s->lock);
			ps->files_total++;
			ps->bytes_total += it->u.rec.type == RECORD_FILE ? it->u.rec.size : 0;
			pthread_mutex_unlock(&s->lock);
		}
		list_push(&l->inq, it);
		rx_count(l, 1, 0);
	}
	offer_start(l);
}

/* ---- downstream: offering ------------------------------------------------------------------ */

struct offer_job {
	struct job base;
	struct link *l;
	struct item **v;
	size_t n;    /* items in v */
	size_t nnew; /* the first nnew came from inq */
	int64_t now;
};

static void offer_one(struct offer_job *o, struct item *it)
{
	struct replica *r = o->base.s->folders[o->l->f].r;
	enum replica_verdict v = REPLICA_BUSY;
	int rc = replica_offer(r, &it->u, &v);

	if (rc < 0)
		v = REPLICA_BUSY; /* -ENOSPC, -EIO, -ENOMEM: again later */
	switch (v) {
	case REPLICA_DONE:
		it->st = IT_DECIDED;
		break;
	case REPLICA_REFUSED:
		it->st = IT_DECIDED;
		it->refused = true;
		break;
	case REPLICA_FETCH:
		it->st = IT_FETCH;
		break;
	case REPLICA_WAIT:
		it->st = IT_WAIT;
		it->retry_ns = o->now + o->base.s->retry_ns;
		break;
	case REPLICA_BUSY:
	default:
		it->st = IT_BUSY;
		it->retry_ns = o->now + o->base.s->retry_ns;
		break;
	}
}

static void offer_run(struct job *jb)
{
	struct offer_job *o = dfsr_container_of(jb, struct offer_job, base);
	bool progress = false;

	/* New updates in arrival order, then the held ones (busy ones due, waiting ones). */
	for (size_t i = 0; i < o->n; i++) {
		offer_one(o, o->v[i]);
		progress |= o->v[i]->st == IT_DECIDED;
	}
	/* A decided update may have been the parent a waiting one needs: offer the waiting
	 * ones again while that keeps deciding something (docs/conflicts.md §13). */
	for (unsigned pass = 0; progress && pass < WAIT_PASSES; pass++) {
		progress = false;
		for (size_t i = 0; i < o->n; i++) {
			if (o->v[i]->st != IT_WAIT)
				continue;
			offer_one(o, o->v[i]);
			progress |= o->v[i]->st != IT_WAIT;
		}
	}
}

static void fetch_start(struct sconn *k);

/* Busy updates held on @l (a local file open for writing, a local error), counting up to
 * @max. Thread: loop. */
static size_t held_busy(const struct link *l, size_t max)
{
	size_t n = 0;

	for (const struct item *it = l->held.head; it && n < max; it = it->next)
		n += it->st == IT_BUSY;
	return n;
}

static void send_progress(struct link *l)
{
	Dfsrwire__Progress p = DFSRWIRE__PROGRESS__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
	size_t pause = HELD_PAUSE * l->k->s->window;

	if (l->taken == l->progress_sent)
		return;
	/* A busy update leaves the window (it may stay busy for long), so the upstream goes
	 * on sending, and without a pause held updates would grow past what on_updates()
	 * takes from a partner keeping to the window (a full disk, many files open for
	 * writing). No Progress while HELD_PAUSE windows of them are held: the upstream stops
	 * within a window; the Progress goes out once they are decided (offer_done(), on the
	 * retries). Updates waiting for a parent do not pause: the parent may be behind them
	 * in this upstream's stream. */
	if (l->held.n >= pause && held_busy(l, pause) >= pause)
		return;
	p.folder = folder_bin(l->k->s, l->f);
	p.offered = l->taken;
	m.m_case = DFSRWIRE__MSG__M_PROGRESS;
	m.progress = &p;
	if (conn_send(l->k, l->f, &m) == 0)
		l->progress_sent = l->taken;
}

static void progress_maybe(struct link *l)
{
	if (l->inq.n == 0 || l->taken - l->progress_sent >= NET_SESSION_BATCH_MAX)
		send_progress(l);
}

static void offer_done(struct job *jb, bool cancelled)
{
	struct offer_job *o = dfsr_container_of(jb, struct offer_job, base);
	struct link *l = o->l;

	bool decided = false;

	l->offering = false;
	for (size_t i = 0; i < o->n; i++) {
		struct item *it = o->v[i];

		decided |= it->st == IT_DECIDED;
		if (cancelled && it->st == IT_NEW) {
			it->st = IT_BUSY;
			it->retry_ns = dfsr_mono_ns() + l->k->s->retry_ns;
		}
		/* Updates waiting for a transfer stay in the window: the upstream then never
		 * gets more than a window ahead of our downloads. */
		if (it->in_window && it->st != IT_FETCH) {
			it->in_window = false;
			l->taken++;
		}
		if (it->st == IT_DECIDED)
			item_decided(l, it);
		else
			list_push(&l->held, it);
	}
	free(o->v);
	free(o);
	if (!conn_live(l->k))
		return;
	/* What was decided may be the parent an update from another partner waits for. */
	for (struct sconn *k = decided ? l->k->s->conns : NULL; k; k = k->next)
		if (k != l->k && conn_live(k) && k->links[l->f].common)
			offer_start_opt(&k->links[l->f], true);
	progress_maybe(l);
	fetch_start(l->k);
	if (l->inq.n)
		offer_start(l);
	dones_check(l);
}

static bool item_due(const struct item *it, int64_t now, bool waits)
{
	if (it->st == IT_WAIT)
		return waits || it->retry_ns <= now;
	return it->st == IT_BUSY && it->retry_ns <= now;
}

/* Offer queued updates (and held ones due) on the pool, one job per link at a time.
 * @waits: offer the waiting ones too (a Done arrived). Thread: loop. */
static void offer_start_opt(struct link *l, bool waits)
{
	struct net_sessions *s = l->k->s;
	int64_t now = dfsr_mono_ns();
	struct offer_job *o;
	size_t cap = 0, nnew;

	if (l->offering || !conn_live(l->k))
		return;
	nnew = l->inq.n < NET_SESSION_BATCH_MAX ? l->inq.n : NET_SESSION_BATCH_MAX;
	waits |= nnew > 0;
	for (struct item *it = l->held.head; it; it = it->next)
		cap += item_due(it, now, waits);
	if (nnew + cap == 0)
		return;
	o = calloc(1, sizeof(*o));
	if (o)
		o->v = calloc(nnew + cap, sizeof(*o->v));
	if (!o || !o->v) {
		free(o);
		return;
	}
	for (size_t i = 0; i < nnew; i++) {
		struct item *it = l->inq.head;

		list_del(&l->inq, it);
		o->v[o->n++] = it;
	}
	for (struct item *it = l->held.head, *next; it; it = next) {
		next = it->next;
		if (!item_due(it, now, waits))
			continue;
		list_del(&l->held, it);
		o->v[o->n++] = it;
	}
	o->nnew = nnew;
	o->now = now;
	o->l = l;
	l->offering = true;
	o->base.run = offer_run;
	o->base.done = offer_done;
	job_queue(s, l->k, &o->base);
}

static void offer_start(struct link *l)
{
	offer_start_opt(l, false);
}

/* ---- downstream: Done, merge, Ack --------------------------------------------------------- */

struct merge_job {
	struct job base;
	struct link *l;
	struct done_rec *d;
	int old_state, new_state;
	struct version_vector kv; /* ours after the merge */
	bool grew;                /* kv differs from our knowledge before the merge */
	int rc;
};

static void merge_run(struct job *jb)
{
	struct merge_job *mj = dfsr_container_of(jb, struct merge_job, base);
	struct replica *r = jb->s->folders[mj->l->f].r;

	struct sfolder *sf = &jb->s->folders[mj->l->f];
	struct version_vector before;
	int brc;

	version_vector_init(&before);
	brc = replica_knowledge(r, &before);
	mj->old_state = (int)journal_state(sf->j);
	/* §12: only a Done that answers a Hello asking for everything ends a stale sync */
	mj->rc = replica_merge_from(r, &mj->d->kv, mj->d->state == JOURNAL_STATE_NORMAL,
				    mj->l->hello_stale);
	if (mj->rc == 0)
		mj->rc = replica_knowledge(r, &mj->kv);
	mj->grew = mj->rc == 0 &&
		   (brc < 0 || version_vector_compare(&mj->kv, &before) != VERSION_EQUAL);
	version_vector_release(&before);
	mj->new_state = (int)journal_state(sf->j);
	atomic_store(&sf->state, mj->new_state);
}

static size_t link_pending(const struct link *l)
{
	return l->inq.n + l->held.n;
}

static void send_ack(struct link *l, const struct version_vector *kv)
{
	Dfsrwire__Ack a = DFSRWIRE__ACK__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
	struct pb_kv pk;

	if (pb_kv_init(&pk, kv) < 0) {
		local_error(l->k, "send", -ENOMEM);
		return;
	}
	a.folder = folder_bin(l->k->s, l->f);
	a.n_knowledge = pk.n;
	a.knowledge = pk.ptrs;
	a.pending = link_pending(l);
	m.m_case = DFSRWIRE__MSG__M_ACK;
	m.ack = &a;
	conn_send(l->k, l->f, &m);
	pb_kv_release(&pk);
}

static void done_free(struct done_rec *d)
{
	version_vector_release(&d->kv);
	free(d);
}

static void merge_done(struct job *jb, bool cancelled)
{
	struct merge_job *mj = dfsr_container_of(jb, struct merge_job, base);
	struct link *l = mj->l;
	struct net_sessions *s = jb->s;
	bool now_normal = !cancelled && mj->old_state != JOURNAL_STATE_NORMAL &&
			  mj->new_state == JOURNAL_STATE_NORMAL;

	l->merging = false;
	if (cancelled || mj->rc < 0) {
		/* Not merged: keep the Done first in line and try again later. */
		mj->d->next = l->dones_head;
		l->dones_head = mj->d;
		if (!l->dones_tail)
			l->dones_tail = mj->d;
		if (!cancelled && conn_live(l->k))
			sess_event(s, l->f, EV_REPLICATION_RETRY, "peer=%s step=merge error=%s",
				   peer_name(l->k), dfsr_strerror(mj->rc));
		l->merge_retry_ns = dfsr_mono_ns() + s->retry_ns;
	} else {
		l->synced |= mj->d->state == JOURNAL_STATE_NORMAL;
		done_free(mj->d);
		rx_count(l, 0, -1);
		/* Our knowledge grew: every partner of this folder hears it (an Ack needs no
		 * Done), or one whose Done came earlier would count what we now hold from
		 * another member as our backlog until its next round. Nothing but a Ping may
		 * precede our Hello (RM.2): on a connection whose Hello is still being built,
		 * the Ack is owed and follows the Hello (acks_owed()). */
		for (struct sconn *k = s->conns; k; k = k->next) {
			struct link *o = &k->links[l->f];

			if (!conn_live(k) || !k->hello_rcvd || !o->common)
				continue;
			if (k->hello_sent) {
				send_ack(o, &mj->kv);
				continue;
			}
			/* out of memory: an Ack owed before stays owed (knowledge only grows) */
			if (version_vector_copy(&o->ack_kv, &mj->kv) == 0)
				o->ack_owed = true;
		}
		/* And every other partner gets a Done with it (an empty round when nothing is
		 * new): the updates we relayed to it from this partner went with a Done of our
		 * knowledge before this merge, which lacks them, so its Ack would lack them too
		 * and we would count them as its backlog (and `dfsr wait` wait) until our next
		 * change. Only when the merge taught us something, so Dones do not echo. */
		if (mj->grew)
			for (struct sconn *k = s->conns; k; k = k->next)
				if (conn_live(k) && k->hello_rcvd && k->links[l->f].common &&
				    &k->links[l->f] != l)
					walk_start(&k->links[l->f]);
	}
	version_vector_release(&mj->kv);
	free(mj);
	if (now_normal) /* a stale sync is over: these Hellos are of no use any more (§12) */
		for (struct sconn *k = s->conns; k; k = k->next)
			k->links[l->f].hello_stale = false;
	if (now_normal && !s->stopping)
		folder_changed_state(s, l->f); /* initial sync ended: we send too now */
	if (conn_live(l->k))
		dones_check(l);
}

/* Merge the first Done once every update received before it is decided. Thread: loop. */
static void dones_check(struct link *l)
{
	struct done_rec *d = l->dones_head;
	struct merge_job *mj;

	if (!d || l->merging || l->offering || !conn_live(l->k) ||
	    l->merge_retry_ns > dfsr_mono_ns())
		return;
	if (l->inq.head && l->inq.head->epoch <= d->epoch)
		return;
	/* Held updates are not decided: waiting for a parent, busy, or being fetched. Merging
	 * before they are would claim versions we do not hold, which no partner would send
	 * again. */
	for (struct item *it = l->held.head; it; it = it->next)
		if (it->epoch <= d->epoch)
			return;
	mj = calloc(1, sizeof(*mj));
	if (!mj)
		return;
	l->dones_head = d->next;
	if (!l->dones_head)
		l->dones_tail = NULL;
	d->next = NULL;
	mj->l = l;
	mj->d = d;
	version_vector_init(&mj->kv);
	l->merging = true;
	mj->base.run = merge_run;
	mj->base.done = merge_done;
	job_queue(l->k->s, l->k, &mj->base);
}

static void on_done(struct sconn *k, const Dfsrwire__Done *m, size_t len)
{
	struct net_sessions *s = k->s;
	struct link *l = link_by_name(k, m->folder);
	struct done_rec *d;
	int rc;

	if (!l || m->state > JOURNAL_STATE_ERROR) {
		proto_error(k, "bad Done");
		return;
	}
	add_bytes(s, l->f, k->peer, len, false);
	d = calloc(1, sizeof(*d));
	if (!d) {
		local_error(k, "receive", -ENOMEM);
		return;
	}
	version_vector_init(&d->kv);
	rc = kv_decode(m->knowledge, m->n_knowledge, &d->kv);
	if (rc < 0) {
		free(d);
		if (rc == -ENOMEM)
			local_error(k, "receive", rc);
		else
			proto_error(k, "bad Done knowledge");
		return;
	}
	d->epoch = l->rx_epoch++;
	d->state = m->state;
	l->partner_state = m->state;
	if (l->dones_tail)
		l->dones_tail->next = d;
	else
		l->dones_head = d;
	l->dones_tail = d;
	rx_count(l, 0, 1);
	pthread_mutex_lock(&s->lock);
	pstat_of(s, l->f, k->peer)->backlog_in = m->backlog;
	heard_locked(l);
	pthread_mutex_unlock(&s->lock);
	offer_start_opt(l, true); /* the round is complete: try the waiting ones again */
	dones_check(l);
}

/* ---- downstream: transfers ---------------------------------------------------------------- */

static void rx_chunks_free(struct rx_chunk *c)
{
	for (struct rx_chunk *next; c; c = next) {
		next = c->next;
		free(c->data);
		free(c);
	}
}

static void rx_free_all(struct xfer *x)
{
	rx_chunks_free(x->rx_head);
	x->rx_head = x->rx_tail = NULL;
	x->nrx = 0;
}

/* A received chunk, checked as far as it can be without the chunk list (the index is
 * checked against it by whoever writes it). Its data is taken from @m, not copied:
 * protobuf-c allocated it with malloc() (no allocator is passed to unpack, on_msg()), and
 * the emptied field is skipped by free_unpacked. NULL: bad, or out of memory (*@bad says). */
static struct rx_chunk *rx_chunk_new(Dfsrwire__Chunk *m, bool *bad)
{
	struct rx_chunk *c;

	*bad = m->codec > STAGE_CODEC_ZSTD || m->data.len == 0 || m->data.len > STAGE_STORED_MAX;
	if (*bad)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->data = m->data.data;
	c->len = m->data.len;
	m->data.data = NULL;
	m->data.len = 0;
	c->index = m->index;
	c->codec = (uint8_t)m->codec;
	return c;
}

static size_t xfer_slot(struct sconn *k, uint64_t id)
{
	for (size_t i = 0; i < NET_SESSION_FETCH_MAX; i++)
		if (k->fetch[i] && k->fetch[i]->id == id)
			return i;
	return SIZE_MAX;
}

static size_t free_slot(const struct sconn *k)
{
	for (size_t i = 0; i < k->fetch_max; i++)
		if (!k->fetch[i])
			return i;
	return SIZE_MAX;
}

/* Free download @x (no job owns it) and settle its item: @st is IT_DECIDED, IT_BUSY,
 * IT_WAIT or IT_FETCH_RETRY. @cancel: tell the upstream to forget it. Thread: loop. */
static void xfer_end(struct sconn *k, struct xfer *x, enum item_st st, bool cancel)
{
	struct link *l = x->l;
	struct item *it = x->it;
	size_t slot = xfer_slot(k, x->id);

	if (cancel && conn_live(k)) {
		Dfsrwire__Cancel c = DFSRWIRE__CANCEL__INIT;
		Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;

		c.id = x->id;
		m.m_case = DFSRWIRE__MSG__M_CANCEL;
		m.cancel = &c;
		conn_send(k, l->f, &m);
		if (x->phase == XF_RECV && x->outstanding > 0) {
			k->drain[k->drain_next].id = x->id;
			k->drain[k->drain_next].left = x->outstanding;
			k->drain[k->drain_next].f = l->f;
			k->drain_next = (k->drain_next + 1) % NET_SESSION_FETCH_MAX;
		}
	}
	if (slot != SIZE_MAX)
		k->fetch[slot] = NULL;
	add_transfers(k->s, l->f, k->peer, -1);
	stage_asm_free(x->a); /* keeps a partial file in Installing for a resume */
	rx_free_all(x);
	free(x->todo);
	free(x);
	if (st == IT_DECIDED) {
		list_del(&l->held, it);
		item_decided(l, it);
	} else {
		it->st = st;
		it->retry_ns = dfsr_mono_ns() + k->s->retry_ns;
		if (it->in_window && st != IT_FETCH_RETRY) {
			it->in_window = false;
			l->taken++;
		}
	}
	for (struct sconn *o = k->s->conns; o; o = o->next)
		if (o != k && conn_live(o))
			fetch_start(o); /* one may wait for this version (version_fetching) */
	if (conn_live(k)) {
		progress_maybe(l);
		fetch_start(k);
		dones_check(l);
		if (st == IT_BUSY || st == IT_WAIT)
			offer_start(l);
	}
}

/* Verdict of replica_install() to the item's next state. */
static enum item_st install_st(int rc, enum replica_verdict v)
{
	if (rc < 0)
		return IT_BUSY;
	switch (v) {
	case REPLICA_DONE:
	case REPLICA_REFUSED:
		return IT_DECIDED;
	case REPLICA_WAIT:
		return IT_WAIT;
	case REPLICA_FETCH:
		return IT_FETCH_RETRY;
	case REPLICA_BUSY:
	default:
		return IT_BUSY;
	}
}

/* On the pool: every chunk is in: check the whole file, install it. */
static int xfer_install(struct net_sessions *s, struct xfer *x, enum item_st *st)
{
	enum replica_verdict v = REPLICA_BUSY;
	int fd = -1, rc;

	rc = stage_asm_finish(x->a, &fd);
	if (rc == -EBADMSG) {
		/* The list did not match its own digest; the file is gone: start over. */
		*st = IT_FETCH_RETRY;
		return 0;
	}
	if (rc < 0)
		return rc;
	/* the data's digest was checked: when it is the record's, the data is not read again */
	rc = replica_install_digest(s->folders[x->l->f].r, &x->it->u, fd,
				    memcmp(stage_asm_digest(x->a), x->it->u.rec.content, HASH_LEN)
					    ? NULL
					    : x->it->u.rec.content,
				    &v);
	close(fd);
	*st = install_st(rc, v);
	return 0;
}

struct open_job {
	struct job base;
	struct xfer *x;
	uint8_t *list;
	size_t len;
	struct rx_chunk *chunks; /* sent with the FileInfo */
	bool installed;
	enum item_st st;
	int rc;
};

static void seed_local(struct net_sessions *s, struct xfer *x)
{
	struct sfolder *sf = &s->folders[x->l->f];
	struct dfsr_buf path;
	struct stat st;
	size_t found;
	int fd;

	if (stage_asm_missing(x->a) == 0)
		return;
	dfsr_buf_init(&path);
	if (journal_path(sf->j, &x->it->u.rec.uid, &path) == 0) {
		fd = openat(journal_root_fd(sf->j), path.p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			/* copies up to the file's size: the database's reserve first */
			if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
			    space_take(journal_space(sf->j), (uint64_t)st.st_size) == 0)
				(void)stage_asm_seed(x->a, fd, &found);
			close(fd);
		}
	}
	dfsr_buf_release(&path);
}

static void open_run(struct job *jb)
{
	struct open_job *o = dfsr_container_of(jb, struct open_job, base);
	struct net_sessions *s = jb->s;
	struct xfer *x = o->x;
	const struct record *rec = &x->it->u.rec;
	struct stage_key key = { .uid = rec->uid, .gvsn = rec->gvsn };
	struct chunk_list cl;
	size_t n = 0;

	chunk_list_init(&cl);
	o->rc = chunk_list_decode(o->list, o->len, &cl);
	if (o->rc == 0 && (cl.size != rec->size || memcmp(cl.digest, rec->content, HASH_LEN)))
		o->rc = -EBADMSG; /* not the version the record describes */
	if (o->rc == 0)
		o->rc = stage_asm_open(replica_installing_fd(s->folders[x->l->f].r), &key, &cl,
				       &x->a);
	if (o->rc < 0)
		goto out;
	x->nchunks = cl.n;
	for (struct rx_chunk *c = o->chunks; c && o->rc == 0; c = c->next) {
		o->rc = space_take(journal_space(s->folders[x->l->f].j), CHUNK_MAX);
		if (o->rc == 0)
			o->rc = c->index < cl.n ? stage_asm_put_stored(x->a, c->index, c->codec,
								       c->data, c->len)
						: -EBADMSG;
	}
	if (o->rc < 0)
		goto out;
	seed_local(s, x);
	x->todo = calloc(cl.n ? cl.n : 1, sizeof(*x->todo));
	if (!x->todo) {
		o->rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cl.n; i++)
		if (!stage_asm_have(x->a, i))
			x->todo[n++] = (uint32_t)i;
	x->ntodo = n;
	if (n == 0) {
		o->installed = true;
		o->rc = xfer_install(s, x, &o->st);
	}
out:
	chunk_list_release(&cl);
}

static void want_more(struct sconn *k, struct xfer *x);

/*
 * Download @x could not be written here (@rc: a full disk, an I/O error): event 3103, the
 * same error at most once a minute per folder; the upstream is told (Cancel) and the
 * version fetched again later, after a full disk six retry intervals later, since room
 * comes back at an administrator's pace and each try asks for a window of chunks again.
 * Thread: loop.
 */
static void download_failed(struct sconn *k, struct xfer *x, int rc)
{
	struct sfolder *sf = &k->s->folders[x->l->f];
	struct item *it = x->it;
	int64_t now = dfsr_mono_ns();
	char hex[DFSR_UID_HEX_LEN];

	if (rc != -ECANCELED && (rc != sf->dl_err || now - sf->dl_err_ns >= 60000000000LL)) {
		sf->dl_err = rc;
		sf->dl_err_ns = now;
		dfsr_uid_hex(&it->u.rec.uid, hex);
		sess_event(k->s, x->l->f, EV_REPLICATION_RETRY,
			   "peer=%s step=download uid=%s error=\"%s\"", peer_name(k), hex,
			   dfsr_strerror(rc));
	}
	xfer_end(k, x, IT_FETCH_RETRY, true);
	if (rc == -ENOSPC || rc == -EDQUOT)
		it->retry_ns = now + 6 * k->s->retry_ns;
}

static void open_done(struct job *jb, bool cancelled)
{
	struct open_job *o = dfsr_container_of(jb, struct open_job, base);
	struct sconn *k = jb->k;
	struct xfer *x = o->x;
	int rc = cancelled ? -ECANCELED : o->rc;

	free(o->list);
	rx_chunks_free(o->chunks);
	x->writing = false;
	if ((rc == -EBADMSG || rc == -EINVAL) && !o->installed) {
		proto_error(k, "bad chunk list or chunk");
		xfer_end(k, x, IT_FETCH_RETRY, false);
	} else if (rc < 0) {
		download_failed(k, x, rc);
	} else if (o->installed) {
		xfer_end(k, x, o->st, true);
	} else if (x->cancelled || !conn_live(k)) {
		xfer_end(k, x, IT_FETCH_RETRY, false);
	} else {
		x->phase = XF_RECV;
		want_more(k, x);
	}
	free(o);
}

/* Ask for the next chunks, keeping NET_SESSION_CHUNK_WINDOW requested and unwritten. */
static void want_more(struct sconn *k, struct xfer *x)
{
	Dfsrwire__Want w = DFSRWIRE__WANT__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
	size_t room, n;

	if (x->outstanding + x->nrx >= NET_SESSION_CHUNK_WINDOW || x->todo_pos >= x->ntodo)
		return;
	room = NET_SESSION_CHUNK_WINDOW - x->outstanding - x->nrx;
	n = x->ntodo - x->todo_pos < room ? x->ntodo - x->todo_pos : room;
	w.id = x->id;
	w.n_index = n;
	w.index = &x->todo[x->todo_pos];
	m.m_case = DFSRWIRE__MSG__M_WANT;
	m.want = &w;
	if (conn_send(k, x->l->f, &m) == 0) {
		x->todo_pos += n;
		x->outstanding += n;
	}
}

/* True if a download of the version of @rec runs on any connection: two assemblers on
 * one Installing file would race (a version offered by two partners at once). The second
 * waits; when its turn comes the file is seeded whole from the installed one. */
static bool version_fetching(const struct net_sessions *s, const struct record *rec)
{
	for (const struct sconn *k = s->conns; k; k = k->next) {
		for (size_t i = 0; i < NET_SESSION_FETCH_MAX; i++) {
			const struct record *o = k->fetch[i] ? &k->fetch[i]->it->u.rec : NULL;

			if (o && dfsr_uid_equal(&o->uid, &rec->uid) &&
			    version_gvsn_cmp(&o->gvsn, &rec->gvsn) == 0)
				return true;
		}
	}
	return false;
}

/* Downloads of files of at least @size bytes in flight on @k. */
static size_t fetches_from(const struct sconn *k, uint64_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < NET_SESSION_FETCH_MAX; i++)
		n += k->fetch[i] && k->fetch[i]->it->u.rec.size >= size;
	return n;
}

/*
 * Start downloads for held FETCH items while slots are free. Thread: loop.
 * A first pass starts large files (up to FETCH_BIG_MAX at a time) ahead of their turn: the
 * upstream stages a version whole before it sends a chunk, which for a large file takes
 * seconds, better spent while the small files before it are transferred than after. That
 * pass walks every held item: it runs at most every BIG_SCAN_MS. Files larger than
 * NET_SESSION_INLINE_MAX take at most NET_SESSION_FETCH_LARGE slots (each holds a window of
 * chunks in memory); the other slots keep many small files in flight, so that installs
 * that wait on the disk (an fsync each) overlap one another.
 */
static void fetch_start(struct sconn *k)
{
	struct net_sessions *s = k->s;
	int64_t now = dfsr_mono_ns();
	size_t large = fetches_from(k, NET_SESSION_INLINE_MAX + 1);
	size_t big = NET_SESSION_FETCH_MAX;
	int pass = 1;

	if (now - k->big_scan_ns >= MONO_MS(BIG_SCAN_MS) && free_slot(k) != SIZE_MAX) {
		k->big_scan_ns = now;
		big = fetches_from(k, FETCH_BIG);
		pass = big < FETCH_BIG_MAX ? 0 : 1;
	}
	for (; pass < 2; pass++)
		for (size_t f = 0; f < s->nfolders && conn_live(k); f++) {
			struct link *l = &k->links[f];

			for (struct item *it = l->held.head; it; it = it->next) {
				Dfsrwire__Get g = DFSRWIRE__GET__INIT;
				Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
				Dfsr__Gvsn gv = DFSR__GVSN__INIT;
				size_t slot = free_slot(k);
				struct xfer *x;

				if (slot == SIZE_MAX)
					return;
				if (pass == 0 &&
				    (it->u.rec.size < FETCH_BIG || big >= FETCH_BIG_MAX))
					continue;
				if (it->st != IT_FETCH || version_fetching(s, &it->u.rec))
					continue;
				if (it->u.rec.size > NET_SESSION_INLINE_MAX) {
					if (large >= NET_SESSION_FETCH_LARGE)
						continue; /* a small file further on may go */
					large++;
				}
				if (pass == 0)
					big++;
				x = calloc(1, sizeof(*x));
				if (!x)
					return;
				x->id = ++k->next_id;
				x->l = l;
				x->it = it;
				x->phase = XF_GET;
				it->st = IT_FETCHING;
				k->fetch[slot] = x;
				add_transfers(s, f, k->peer, 1);
				g.id = x->id;
				g.folder = folder_bin(s, f);
				g.uid.data = it->u.rec.uid.b;
				g.uid.len = DFSR_UID_LEN;
				gv.db.data = it->u.rec.gvsn.db.b;
				gv.db.len = DFSR_UID_LEN;
				gv.counter = it->u.rec.gvsn.counter;
				g.gvsn = &gv;
				m.m_case = DFSRWIRE__MSG__M_GET;
				m.get = &g;
				conn_send(k, f, &m);
			}
		}
}

static void on_file(struct sconn *k, Dfsrwire__FileInfo *m, size_t len)
{
	size_t slot = xfer_slot(k, m->id);
	struct xfer *x = slot == SIZE_MAX ? NULL : k->fetch[slot];
	struct open_job *o;

	if (!x || x->phase != XF_GET || m->status > FILE_FAILED ||
	    (m->status == 0 && m->chunk_list.len > chunk_list_encoded_len(CHUNK_LIST_MAX))) {
		proto_error(k, "bad FileInfo");
		return;
	}
	add_bytes(k->s, x->l->f, k->peer, len, false);
	if (m->status == FILE_GONE) {
		xfer_end(k, x, IT_DECIDED, false); /* a newer version is on its way */
		return;
	}
	if (m->status == FILE_FAILED) {
		xfer_end(k, x, IT_FETCH_RETRY, false);
		return;
	}
	o = calloc(1, sizeof(*o));
	if (o)
		o->list = memdup0(m->chunk_list.data, m->chunk_list.len);
	for (size_t i = m->n_chunks; o && o->list && i-- > 0;) {
		bool bad;
		struct rx_chunk *c = rx_chunk_new(m->chunks[i], &bad);

		if (!c) {
			rx_chunks_free(o->chunks);
			free(o->list);
			free(o);
			if (bad)
				proto_error(k, "bad FileInfo chunk");
			else
				xfer_end(k, x, IT_FETCH_RETRY, true);
			return;
		}
		c->next = o->chunks;
		o->chunks = c;
	}
	if (!o || !o->list) {
		if (o)
			free(o->list);
		free(o);
		xfer_end(k, x, IT_FETCH_RETRY, true);
		return;
	}
	o->len = m->chunk_list.len;
	o->x = x;
	x->phase = XF_OPEN;
	x->writing = true;
	o->base.run = open_run;
	o->base.done = open_done;
	job_queue(k->s, k, &o->base);
}

struct write_job {
	struct job base;
	struct xfer *x;
	struct rx_chunk *chunks;
	bool installed;
	enum item_st st;
	int rc;
};

static void write_run(struct job *jb)
{
	struct write_job *wj = dfsr_container_of(jb, struct write_job, base);
	struct xfer *x = wj->x;

	wj->rc = 0;
	for (struct rx_chunk *c = wj->chunks; c && wj->rc == 0; c = c->next) {
		/* the database's reserve (core/space.h); a chunk is at most CHUNK_MAX */
		wj->rc = space_take(journal_space(jb->s->folders[x->l->f].j), CHUNK_MAX);
		if (wj->rc == 0)
			wj->rc = stage_asm_put_stored(x->a, c->index, c->codec, c->data, c->len);
	}
	if (wj->rc == 0 && stage_asm_missing(x->a) == 0) {
		wj->installed = true;
		wj->rc = xfer_install(jb->s, x, &wj->st);
	}
}

static void write_start(struct sconn *k, struct xfer *x);

static void write_done(struct job *jb, bool cancelled)
{
	struct write_job *wj = dfsr_container_of(jb, struct write_job, base);
	struct sconn *k = jb->k;
	struct xfer *x = wj->x;
	int rc = cancelled ? -ECANCELED : wj->rc;

	rx_chunks_free(wj->chunks);
	x->writing = false;
	if ((rc == -EBADMSG || rc == -EINVAL) && !wj->installed) {
		proto_error(k, "chunk does not match its list");
		xfer_end(k, x, IT_FETCH_RETRY, false);
	} else if (rc < 0) {
		download_failed(k, x, rc);
	} else if (wj->installed) {
		xfer_end(k, x, wj->st, true);
	} else if (x->cancelled || !conn_live(k)) {
		xfer_end(k, x, IT_FETCH_RETRY, false);
	} else {
		write_start(k, x);
		want_more(k, x);
	}
	free(wj);
}

static void write_start(struct sconn *k, struct xfer *x)
{
	struct write_job *wj;

	if (x->writing || !x->rx_head)
		return;
	wj = calloc(1, sizeof(*wj));
	if (!wj)
		return;
	wj->x = x;
	wj->chunks = x->rx_head;
	x->rx_head = x->rx_tail = NULL;
	x->nrx = 0;
	x->writing = true;
	wj->base.run = write_run;
	wj->base.done = write_done;
	job_queue(k->s, k, &wj->base);
}

/* True if @id is a download we abandoned with chunks still to come: one of them, of
 * @len bytes, is counted off. Ids are not reused on a connection (next_id). */
static bool drain_take(struct sconn *k, uint64_t id, size_t len)
{
	for (size_t i = 0; i < NET_SESSION_FETCH_MAX; i++) {
		if (k->drain[i].left > 0 && k->drain[i].id == id) {
			k->drain[i].left--;
			add_bytes(k->s, k->drain[i].f, k->peer, len, false);
			return true;
		}
	}
	return false;
}

static void on_chunk(struct sconn *k, Dfsrwire__Chunk *m, size_t len)
{
	size_t slot = xfer_slot(k, m->id);
	struct xfer *x = slot == SIZE_MAX ? NULL : k->fetch[slot];
	struct rx_chunk *c = NULL;
	bool bad = true;

	if (!x && drain_take(k, m->id, len))
		return; /* crossed our Cancel */
	if (x && x->phase == XF_RECV && x->outstanding > 0 && m->index < x->nchunks)
		c = rx_chunk_new(m, &bad);
	if (!c) {
		if (bad)
			proto_error(k, "bad Chunk");
		else
			local_error(k, "receive", -ENOMEM);
		return;
	}
	add_bytes(k->s, x->l->f, k->peer, len, false);
	if (x->rx_tail)
		x->rx_tail->next = c;
	else
		x->rx_head = c;
	x->rx_tail = c;
	x->nrx++;
	x->outstanding--;
	write_start(k, x);
}

/* ---- upstream: serving file versions --------------------------------------------------- */

static struct serve *serve_find(struct sconn *k, uint64_t id)
{
	for (struct serve *v = k->serves; v; v = v->next)
		if (v->id == id)
			return v;
	return NULL;
}

/* Unlink and free @v (no job owns it). Thread: loop. */
static void serve_free(struct sconn *k, struct serve *v)
{
	struct serve **pp = &k->serves;

	while (*pp && *pp != v)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = v->next;
		k->nserves--;
	}
	add_transfers(k->s, v->l->f, k->peer, -1);
	stage_version_close(v->v); /* unpins it */
	free(v->want);
	free(v);
}

struct stage_job {
	struct job base;
	struct stage_job *next; /* in the connection's FIFO (stage_start()) */
	struct serve *v;
	uint32_t status;
	bool queued; /* in the pool (counted in k->stages), not in the FIFO */
	bool busy;   /* open for writing (or changed while staging) */
	struct dfsr_buf list;
	struct dfsr_buf path; /* with busy: the file's path, for event 4302 */
};

/*
 * Stage job @sj of connection @k is back: its version was staged or superseded
 * (sj->busy false), or could not be staged because the file is open for writing
 * (sj->busy; sj->path its path, or empty): event 4302 once per version when it stayed so
 * for busy_event_ns, across retries and partners (the downstream asks again every
 * retry_ns), and the busy answer is counted in the partner's busy_serves (after its 4302
 * is logged, when it logs one: a test that sees the count grow past the event knows that
 * a later retry logged nothing). Thread: loop.
 */
static void busy_note(struct sconn *k, const struct stage_job *sj)
{
	struct net_sessions *s = k->s;
	const struct stage_key *key = &sj->v->key;
	size_t f = sj->v->l->f;
	struct sfolder *sf = &s->folders[f];
	struct busy_version *b = NULL, *oldest = &sf->busy[0];
	int64_t now = dfsr_mono_ns();
	char hex[DFSR_UID_HEX_LEN];
	struct event_job *ev = NULL;

	for (size_t i = 0; i < BUSY_VERSIONS && !b; i++) {
		struct busy_version *e = &sf->busy[i];

		if (e->used && dfsr_uid_equal(&e->key.uid, &key->uid) &&
		    version_gvsn_cmp(&e->key.gvsn, &key->gvsn) == 0)
			b = e;
		else if (!e->used || (oldest->used && e->last_ns < oldest->last_ns))
			oldest = e;
	}
	if (!sj->busy) {
		if (b)
			memset(b, 0, sizeof(*b));
		return;
	}
	if (!b) {
		b = oldest;
		memset(b, 0, sizeof(*b));
		b->used = true;
		b->key = *key;
		b->first_ns = now;
	} else if (now - b->last_ns > 3 * s->retry_ns) {
		b->first_ns = now; /* nobody asked for a while: a new wait */
	}
	b->last_ns = now;
	if (!b->logged && now - b->first_ns >= s->busy_event_ns)
		ev = calloc(1, sizeof(*ev));
	if (!ev) { /* nothing to log (or no memory: the next busy answer tries again) */
		busy_serve_count(s, f, k->peer);
		return;
	}
	b->logged = true;
	dfsr_uid_hex(&key->uid, hex);
	snprintf(ev->details, sizeof(ev->details), "uid=%s path=\"%s\" op=stage seconds=%" PRId64,
		 hex, sj->path.len ? sj->path.p : "?", (now - b->first_ns) / 1000000000);
	ev->ev = EV_SHARING_VIOLATION;
	ev->f = f;
	ev->busy_peer = k->peer; /* counted once logged */
	event_submit(s, ev);
}

/* @p with every control character, quote and backslash made '?' (event details). */
static void path_sanitize(struct dfsr_buf *p)
{
	for (size_t i = 0; i < p->len; i++) {
		unsigned char ch = (unsigned char)p->p[i];

		if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\')
			p->p[i] = '?';
	}
}

static void stage_run(struct job *jb)
{
	struct stage_job *sj = dfsr_container_of(jb, struct stage_job, base);
	struct sfolder *sf = &jb->s->folders[sj->v->l->f];
	struct serve *v = sj->v;
	const struct chunk_list *cl;
	int rc;

	rc = outbound_serve(sf->j, sf->stage, &v->key.uid, &v->key.gvsn, NET_SESSION_MEMORY_MAX,
			    &v->v);
	if (rc == -EAGAIN) {
		/* Open for writing: what is on disk is not this version (the digest differs),
		 * and nothing is staged; the downstream asks again later. */
		sj->busy = true;
		if (journal_path(sf->j, &v->key.uid, &sj->path) == 0)
			path_sanitize(&sj->path);
		else
			dfsr_buf_release(&sj->path);
	}
	if (rc < 0) {
		sj->status = rc == -ESTALE ? FILE_GONE : FILE_FAILED;
		return;
	}
	cl = stage_version_list(v->v);
	v->nchunks = cl->n;
	/* A list that does not fit one message (files of tens of GiB) cannot be served. */
	if (chunk_list_encoded_len(cl->n) > NET_CHANNEL_MAX_MSG - 4096 ||
	    chunk_list_encode(cl, &sj->list) < 0)
		sj->status = FILE_FAILED;
}

/* A small version read into memory goes out whole with its FileInfo: the chunks as
 * stored, pointing into @v's memory (valid while @v is, which outlives the send).
 * Return: the Chunk array to free after the send; NULL if nothing is sent inline. */
static Dfsrwire__Chunk *inline_chunks(struct serve *v, Dfsrwire__FileInfo *fi)
{
	size_t n = v->nchunks;
	Dfsrwire__Chunk *c;
	uint32_t len;
	uint8_t codec;

	if (!n || stage_version_list(v->v)->size > NET_SESSION_INLINE_MAX ||
	    !stage_version_stored(v->v, 0, &len, &codec))
		return NULL; /* larger, or a staged file: chunks are sent as they are wanted */
	c = calloc(n, sizeof(*c));
	fi->chunks = calloc(n, sizeof(*fi->chunks));
	if (!c || !fi->chunks) {
		free(c);
		free(fi->chunks);
		fi->chunks = NULL;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		dfsrwire__chunk__init(&c[i]);
		c[i].id = v->id;
		c[i].index = (uint32_t)i;
		c[i].data.data = (uint8_t *)(uintptr_t)stage_version_stored(v->v, i, &len, &codec);
		c[i].data.len = len;
		c[i].codec = codec;
		fi->chunks[i] = &c[i];
	}
	fi->n_chunks = n;
	return c;
}

static void stage_start(struct sconn *k);

static void stage_done(struct job *jb, bool cancelled)
{
	struct stage_job *sj = dfsr_container_of(jb, struct stage_job, base);
	struct sconn *k = jb->k;
	struct serve *v = sj->v;
	Dfsrwire__FileInfo fi = DFSRWIRE__FILE_INFO__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;
	Dfsrwire__Chunk *inl = NULL;

	v->busy = false;
	if (cancelled)
		sj->status = FILE_FAILED;
	else if (sj->busy || sj->status != FILE_FAILED)
		busy_note(k, sj);
	if (!v->cancelled && conn_live(k)) {
		fi.id = v->id;
		fi.status = sj->status;
		if (sj->status == 0) {
			fi.chunk_list.data = (uint8_t *)sj->list.p;
			fi.chunk_list.len = sj->list.len;
			inl = inline_chunks(v, &fi);
		}
		m.m_case = DFSRWIRE__MSG__M_FILE;
		m.file = &fi;
		conn_send(k, v->l->f, &m);
		free(fi.chunks);
		free(inl);
	}
	if (sj->status != 0 || v->cancelled || !conn_live(k))
		serve_free(k, v);
	else
		v->ready = true;
	dfsr_buf_release(&sj->list);
	dfsr_buf_release(&sj->path);
	if (sj->queued) {
		k->stages--;
		stage_start(k); /* the next waiting Get */
	}
	free(sj);
}

/* Queue waiting stage jobs of @k while fewer than STAGES_MAX are in the pool; on a
 * connection that is down, or for a Get cancelled meanwhile, end them (their serves go
 * with them). Thread: loop. */
static void stage_start(struct sconn *k)
{
	while (k->stage_head && (k->stages < STAGES_MAX || !conn_live(k))) {
		struct stage_job *sj = k->stage_head;

		k->stage_head = sj->next;
		if (!k->stage_head)
			k->stage_tail = NULL;
		sj->next = NULL;
		if (!conn_live(k) || sj->v->cancelled) {
			stage_done(&sj->base, true); /* cancelled while it waited: never staged */
			continue;
		}
		k->stages++;
		sj->queued = true;
		job_queue(k->s, k, &sj->base);
	}
}

static void on_get(struct sconn *k, const Dfsrwire__Get *m, size_t len)
{
	struct link *l = link_by_name(k, m->folder);
	struct stage_job *sj;
	struct serve *v;

	if (!l || m->uid.len != DFSR_UID_LEN || serve_find(k, m->id) ||
	    k->nserves >= NET_SESSION_SERVE_MAX) {
		proto_error(k, "bad Get");
		return;
	}
	add_bytes(k->s, l->f, k->peer, len, false);
	v = calloc(1, sizeof(*v));
	sj = calloc(1, sizeof(*sj));
	if (!v || !sj) {
		free(v);
		free(sj);
		local_error(k, "receive", -ENOMEM);
		return;
	}
	memcpy(v->key.uid.b, m->uid.data, DFSR_UID_LEN);
	if (gvsn_decode(m->gvsn, &v->key.gvsn) < 0 || dfsr_uid_is_zero(&v->key.uid)) {
		free(v);
		free(sj);
		proto_error(k, "bad Get version");
		return;
	}
	v->id = m->id;
	v->l = l;
	v->busy = true;
	v->next = k->serves;
	k->serves = v;
	k->nserves++;
	add_transfers(k->s, l->f, k->peer, 1);
	sj->v = v;
	dfsr_buf_init(&sj->list);
	dfsr_buf_init(&sj->path);
	if (!up_allowed(l)) {
		/* We do not send updates for this folder, so we serve no data either. */
		sj->status = FILE_FAILED;
		sj->base.s = k->s;
		sj->base.k = k;
		stage_done(&sj->base, false);
		return;
	}
	sj->base.run = stage_run;
	sj->base.done = stage_done;
	sj->base.s = k->s;
	sj->base.k = k;
	if (k->stage_tail)
		k->stage_tail->next = sj;
	else
		k->stage_head = sj;
	k->stage_tail = sj;
	stage_start(k);
}

static void serve_pump(struct sconn *k);

static void on_want(struct sconn *k, const Dfsrwire__Want *m, size_t len)
{
	struct serve *v = serve_find(k, m->id);
	size_t need;

	for (unsigned i = 0; !v && i < GONE_IDS && i < k->gone_next; i++)
		if (k->gone[i] == m->id)
			return; /* crossed our Cancel */
	if (!v || !v->ready || m->n_index == 0 || m->n_index > NET_SESSION_WANT_MAX ||
	    v->want_n + m->n_index > v->nchunks + NET_SESSION_WANT_MAX) {
		proto_error(k, "bad Want");
		return;
	}
	for (size_t i = 0; i < m->n_index; i++)
		if (m->index[i] >= v->nchunks) {
			proto_error(k, "Want index out of range");
			return;
		}
	add_bytes(k->s, v->l->f, k->peer, len, false);
	need = v->want_n + m->n_index;
	if (need > v->want_cap) {
		uint32_t *nw = calloc(need, sizeof(*nw));

		if (!nw) {
			local_error(k, "receive", -ENOMEM);
			return;
		}
		for (size_t i = 0; i < v->want_n; i++)
			nw[i] = v->want[(v->want_head + i) % v->want_cap];
		free(v->want);
		v->want = nw;
		v->want_cap = need;
		v->want_head = 0;
	}
	for (size_t i = 0; i < m->n_index; i++)
		v->want[(v->want_head + v->want_n++) % v->want_cap] = m->index[i];
	serve_pump(k);
}

struct read_job {
	struct job base;
	struct serve *v;
	size_t n;
	uint32_t index[READ_CHUNKS];
	uint32_t len[READ_CHUNKS];
	uint8_t codec[READ_CHUNKS];
	uint8_t *buf; /* READ_CHUNKS * STAGE_STORED_MAX */
	int rc;
};

static void read_run(struct job *jb)
{
	struct read_job *r = dfsr_container_of(jb, struct read_job, base);

	r->rc = 0;
	for (size_t i = 0; i < r->n && r->rc == 0; i++)
		r->rc = stage_version_read_stored(r->v->v, r->index[i],
						  r->buf + i * STAGE_STORED_MAX, &r->len[i],
						  &r->codec[i]);
}

static void read_done(struct job *jb, bool cancelled)
{
	struct read_job *r = dfsr_container_of(jb, struct read_job, base);
	struct sconn *k = jb->k;
	struct serve *v = r->v;

	v->busy = false;
	k->reads--;
	if (!cancelled && r->rc == 0 && !v->cancelled && conn_live(k)) {
		for (size_t i = 0; i < r->n; i++) {
			Dfsrwire__Chunk c = DFSRWIRE__CHUNK__INIT;
			Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;

			c.id = v->id;
			c.index = r->index[i];
			c.codec = r->codec[i];
			c.data.data = r->buf + i * STAGE_STORED_MAX;
			c.data.len = r->len[i];
			m.m_case = DFSRWIRE__MSG__M_CHUNK;
			m.chunk = &c;
			conn_send(k, v->l->f, &m);
		}
	} else if (!v->cancelled && conn_live(k)) {
		/* Cannot serve it (the staged file is damaged): tell the downstream. */
		Dfsrwire__Cancel c = DFSRWIRE__CANCEL__INIT;
		Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;

		c.id = v->id;
		c.from_upstream = true;
		m.m_case = DFSRWIRE__MSG__M_CANCEL;
		m.cancel = &c;
		conn_send(k, v->l->f, &m);
		v->cancelled = true;
		k->gone[k->gone_next++ % GONE_IDS] = v->id;
	}
	if (v->cancelled)
		serve_free(k, v);
	free(r->buf);
	free(r);
	serve_pump(k);
}

/* Serve wanted chunks round robin across the connection's transfers. Thread: loop. */
static void serve_pump(struct sconn *k)
{
	while (conn_live(k) && k->reads < READS_MAX && net_conn_queued(k->c) <= NET_PEER_OUT_HIGH) {
		struct serve **pp = &k->serves, *v;
		struct read_job *r;

		while (*pp && ((*pp)->busy || !(*pp)->ready || !(*pp)->want_n))
			pp = &(*pp)->next;
		v = *pp;
		if (!v)
			return;
		r = calloc(1, sizeof(*r));
		if (r)
			r->buf = malloc((size_t)READ_CHUNKS * STAGE_STORED_MAX);
		if (!r || !r->buf) {
			free(r);
			return;
		}
		while (r->n < READ_CHUNKS && v->want_n) {
			r->index[r->n++] = v->want[v->want_head];
			v->want_head = (v->want_head + 1) % v->want_cap;
			v->want_n--;
		}
		/* Round robin: the transfer served goes to the end of the list. */
		*pp = v->next;
		v->next = NULL;
		for (pp = &k->serves; *pp; pp = &(*pp)->next)
			;
		*pp = v;
		r->v = v;
		v->busy = true;
		k->reads++;
		r->base.run = read_run;
		r->base.done = read_done;
		job_queue(k->s, k, &r->base);
	}
}

static void on_cancel(struct sconn *k, const Dfsrwire__Cancel *m, size_t len)
{
	struct serve *v = m->from_upstream ? NULL : serve_find(k, m->id);
	size_t slot;

	if (!m->from_upstream) {
		if (!v)
			return; /* crossed with the end of the transfer */
		add_bytes(k->s, v->l->f, k->peer, len, false);
		v->cancelled = true;
		if (!v->busy) {
			serve_free(k, v);
			return;
		}
		/* A Get still waiting for its stage job ends now (nothing is sent for it). */
		for (struct stage_job **pp = &k->stage_head, *prev = NULL; *pp;
		     prev = *pp, pp = &(*pp)->next) {
			struct stage_job *sj = *pp;

			if (sj->v != v)
				continue;
			*pp = sj->next;
			if (k->stage_tail == sj)
				k->stage_tail = prev;
			sj->next = NULL;
			stage_done(&sj->base, true); /* frees v */
			return;
		}
		/* A job in the pool (at most STAGES_MAX + READS_MAX per connection) frees it once
		 * back; it stops counting against NET_SESSION_SERVE_MAX now: the downstream's
		 * slot is free already, and its next Get may follow right behind the Cancel. */
		for (struct serve **pp = &k->serves; *pp; pp = &(*pp)->next)
			if (*pp == v) {
				*pp = v->next;
				k->nserves--;
				break;
			}
		return;
	}
	/* The upstream cannot serve one of our downloads. */
	slot = xfer_slot(k, m->id);
	if (slot == SIZE_MAX)
		return; /* crossed with our own Cancel */
	if (k->fetch[slot]->writing)
		k->fetch[slot]->cancelled = true;
	else
		xfer_end(k, k->fetch[slot], IT_FETCH_RETRY, false);
}

/* ---- messages in ----------------------------------------------------------------------- */

static void on_progress(struct sconn *k, const Dfsrwire__Progress *m, size_t len)
{
	struct net_sessions *s = k->s;
	struct link *l = link_by_name(k, m->folder);
	bool bad;

	if (!l) {
		proto_error(k, "bad Progress");
		return;
	}
	add_bytes(s, l->f, k->peer, len, false);
	pthread_mutex_lock(&s->lock);
	bad = m->offered < l->offered || m->offered > l->pushed;
	if (!bad) {
		l->offered = m->offered;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	if (bad)
		proto_error(k, "Progress out of range");
}

static void on_ack(struct sconn *k, const Dfsrwire__Ack *m, size_t len)
{
	struct net_sessions *s = k->s;
	struct link *l = link_by_name(k, m->folder);
	struct version_vector kv;
	struct pstat *ps;
	int rc;

	if (!l) {
		proto_error(k, "bad Ack");
		return;
	}
	add_bytes(s, l->f, k->peer, len, false);
	version_vector_init(&kv);
	rc = kv_decode(m->knowledge, m->n_knowledge, &kv);
	if (rc < 0) {
		if (rc == -ENOMEM)
			local_error(k, "receive", rc);
		else
			proto_error(k, "bad Ack knowledge");
		return;
	}
	journal_note_contact(s->folders[l->f].j); /* §12: a partner took our changes */
	pthread_mutex_lock(&s->lock);
	ps = pstat_of(s, l->f, k->peer);
	ps->kv_known = version_vector_copy(&ps->kv, &kv) == 0;
	version_vector_release(&l->partner_kv);
	l->partner_kv = kv;
	pthread_mutex_unlock(&s->lock);
	/* The Done this Ack answers carried a count read on the walk thread, possibly older
	 * than our last Backlog: the next count goes out whatever it is. */
	ps->backlog_sent_valid = false;
	recount_start(s, l->f, k->peer);
}

static void on_backlog(struct sconn *k, const Dfsrwire__Backlog *m, size_t len)
{
	struct net_sessions *s = k->s;
	struct link *l = link_by_name(k, m->folder);

	if (!l) {
		proto_error(k, "bad Backlog");
		return;
	}
	add_bytes(s, l->f, k->peer, len, false);
	pthread_mutex_lock(&s->lock);
	pstat_of(s, l->f, k->peer)->backlog_in = m->count;
	heard_locked(l);
	pthread_mutex_unlock(&s->lock);
}

static void on_ping(struct sconn *k, const Dfsrwire__Ping *p)
{
	Dfsrwire__Ping r = DFSRWIRE__PING__INIT;
	Dfsrwire__Msg m = DFSRWIRE__MSG__INIT;

	if (p->reply)
		return;
	r.reply = true;
	r.time_ns = dfsr_now_ns();
	m.m_case = DFSRWIRE__MSG__M_PING;
	m.ping = &r;
	conn_send(k, SIZE_MAX, &m);
}

/* ---- stateless checks (docs/protocol.md §RM.1) ------------------------------------------- */

static int kv_check(Dfsr__Gvsn *const *g, size_t n)
{
	struct version_vector kv;
	int rc;

	version_vector_init(&kv);
	rc = kv_decode(g, n, &kv);
	version_vector_release(&kv);
	return rc;
}

static int hello_check(const Dfsrwire__Hello *h)
{
	if (h->member.len == 0 || h->member.len > CONFIG_NAME_MAX ||
	    h->n_folders > NET_SESSION_FOLDERS_MAX)
		return -EBADMSG;
	for (size_t i = 0; i < h->n_folders; i++) {
		const Dfsrwire__FolderHello *fh = h->folders[i];

		if (!fh || fh->name.len == 0 || fh->name.len > CONFIG_NAME_MAX ||
		    fh->db_id.len != DFSR_UID_LEN || fh->state > JOURNAL_STATE_ERROR ||
		    kv_check(fh->knowledge, fh->n_knowledge) < 0)
			return -EBADMSG;
	}
	return 0;
}

static int updates_check(const Dfsrwire__Updates *u)
{
	if (u->n_updates == 0 || u->n_updates > NET_SESSION_BATCH_MAX)
		return -EBADMSG;
	for (size_t i = 0; i < u->n_updates; i++)
		if (!u->updates[i] || u->updates[i]->n_xattrs > REPLICA_XATTR_MAX ||
		    u->updates[i]->link_target.len > REPLICA_LINK_MAX)
			return -EBADMSG;
	return 0;
}

/* Every check of @m that needs no session state, except the full decode of updates and
 * chunk lists (done where they are used). Return: 0 or -EBADMSG. */
static int msg_check(const Dfsrwire__Msg *m)
{
	struct version_gvsn g;

	switch (m->m_case) {
	case DFSRWIRE__MSG__M_HELLO:
		return hello_check(m->hello);
	case DFSRWIRE__MSG__M_UPDATES:
		return updates_check(m->updates);
	case DFSRWIRE__MSG__M_DONE:
		return m->done->state > JOURNAL_STATE_ERROR
			       ? -EBADMSG
			       : kv_check(m->done->knowledge, m->done->n_knowledge);
	case DFSRWIRE__MSG__M_ACK:
		return kv_check(m->ack->knowledge, m->ack->n_knowledge);
	case DFSRWIRE__MSG__M_GET:
		return m->get->uid.len != DFSR_UID_LEN || gvsn_decode(m->get->gvsn, &g) < 0
			       ? -EBADMSG
			       : 0;
	case DFSRWIRE__MSG__M_FILE:
		return m->file->status > FILE_FAILED ||
				       (m->file->status == 0 &&
					m->file->chunk_list.len >
						chunk_list_encoded_len(CHUNK_LIST_MAX)) ||
				       (m->file->status != 0 && m->file->n_chunks) ||
				       m->file->n_chunks > NET_SESSION_WANT_MAX
			       ? -EBADMSG
			       : 0;
	case DFSRWIRE__MSG__M_WANT:
		return m->want->n_index == 0 || m->want->n_index > NET_SESSION_WANT_MAX ? -EBADMSG
											: 0;
	case DFSRWIRE__MSG__M_CHUNK:
		return m->chunk->codec > STAGE_CODEC_ZSTD || m->chunk->data.len == 0 ||
				       m->chunk->data.len > STAGE_STORED_MAX
			       ? -EBADMSG
			       : 0;
	case DFSRWIRE__MSG__M_CANCEL:
	case DFSRWIRE__MSG__M_PING:
	case DFSRWIRE__MSG__M_PROGRESS:
	case DFSRWIRE__MSG__M_BACKLOG:
		return 0;
	default:
		return -EBADMSG;
	}
}

int net_session_check_msg(const uint8_t *buf, size_t len)
{
	Dfsrwire__Msg *m = dfsrwire__msg__unpack(NULL, len, buf);
	int rc;

	if (!m)
		return -EBADMSG;
	rc = msg_check(m);
	if (rc == 0 && m->m_case == DFSRWIRE__MSG__M_HELLO && m->hello->proto != NET_SESSION_PROTO)
		rc = -EPROTONOSUPPORT;
	for (size_t i = 0;
	     rc == 0 && m->m_case == DFSRWIRE__MSG__M_UPDATES && i < m->updates->n_updates; i++) {
		struct replica_update u;

		rc = update_decode(m->updates->updates[i], &u);
		if (rc == 0)
			replica_update_release(&u);
	}
	if (rc == 0 && m->m_case == DFSRWIRE__MSG__M_FILE && m->file->status == 0) {
		struct chunk_list cl;

		chunk_list_init(&cl);
		rc = chunk_list_decode(m->file->chunk_list.data, m->file->chunk_list.len, &cl);
		chunk_list_release(&cl);
	}
	dfsrwire__msg__free_unpacked(m, NULL);
	return rc == -ENOMEM ? -ENOMEM : (rc < 0 && rc != -EPROTONOSUPPORT ? -EBADMSG : rc);
}

static void dispatch(struct sconn *k, const Dfsrwire__Msg *m, size_t len)
{
	if (m->m_case == DFSRWIRE__MSG__M_HELLO) {
		on_hello(k, m->hello); /* the version first (5002), then hello_check() */
		return;
	}
	if (msg_check(m) < 0) {
		proto_error(k, "malformed message");
		return;
	}
	if (m->m_case == DFSRWIRE__MSG__M_PING) {
		on_ping(k, m->ping);
		return;
	}
	if (!k->hello_rcvd) {
		char what[48];

		snprintf(what, sizeof(what), "message before Hello (type %d)", (int)m->m_case);
		proto_error(k, what);
		return;
	}
	switch (m->m_case) {
	case DFSRWIRE__MSG__M_UPDATES:
		on_updates(k, m->updates, len);
		return;
	case DFSRWIRE__MSG__M_DONE:
		on_done(k, m->done, len);
		return;
	case DFSRWIRE__MSG__M_ACK:
		on_ack(k, m->ack, len);
		return;
	case DFSRWIRE__MSG__M_GET:
		on_get(k, m->get, len);
		return;
	case DFSRWIRE__MSG__M_FILE:
		on_file(k, m->file, len);
		return;
	case DFSRWIRE__MSG__M_WANT:
		on_want(k, m->want, len);
		return;
	case DFSRWIRE__MSG__M_CHUNK:
		on_chunk(k, m->chunk, len);
		return;
	case DFSRWIRE__MSG__M_CANCEL:
		on_cancel(k, m->cancel, len);
		return;
	case DFSRWIRE__MSG__M_PROGRESS:
		on_progress(k, m->progress, len);
		return;
	case DFSRWIRE__MSG__M_BACKLOG:
		on_backlog(k, m->backlog, len);
		return;
	default:
		proto_error(k, "unknown message");
		return;
	}
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_maybe_start(struct sconn *k)
{
	if (!k->hello_sent || !k->hello_rcvd)
		return;
	for (size_t f = 0; f < k->s->nfolders; f++)
		if (k->links[f].common)
			walk_start(&k->links[f]);
}

/* §12: the folder is stale (it turned so while connected: the hourly check). Its partners
 * must send everything again, which only a Hello asks: every connection that shares the
 * folder and began before starts over. Thread: loop. */
static void folder_stale(struct net_sessions *s, size_t f)
{
	for (struct sconn *k = s->conns; k; k = k->next) {
		/* a Hello not sent yet reads the folder stale when it is built, or is sent
		 * before this and caught on the next pass */
		if (!conn_live(k) || !k->hello_sent || !k->links[f].common ||
		    k->links[f].hello_stale)
			continue;
		k->closing = true;
		net_conn_close(k->c, 0); /* the dialer connects again; 4012 said why */
	}
}

/* Every folder state change that enables sending (initial sync ended). Thread: loop. */
static void folder_changed_state(struct net_sessions *s, size_t f)
{
	for (struct sconn *k = s->conns; k; k = k->next)
		if (conn_live(k) && k->links[f].common)
			walk_start(&k->links[f]);
	for (size_t p = 0; p < s->cfg->npeers; p++)
		recount_start(s, f, p);
}

static void link_release(struct link *l)
{
	struct outmsg *om, *next;

	for (struct item *it = l->inq.head, *n; it; it = n) {
		n = it->next;
		item_free(it);
	}
	for (struct item *it = l->held.head, *n; it; it = n) {
		n = it->next;
		item_free(it);
	}
	for (struct done_rec *d = l->dones_head, *n; d; d = n) {
		n = d->next;
		done_free(d);
	}
	for (om = l->outq_head; om; om = next) {
		next = om->next;
		free(om->buf);
		free(om);
	}
	version_vector_release(&l->partner_kv);
	version_vector_release(&l->ack_kv);
	free(l->again);
	rx_count(l, -(int64_t)l->rx_items, -(int64_t)l->rx_dones);
}

static void conn_maybe_free(struct sconn *k)
{
	struct net_sessions *s = k->s;

	if (k->c || k->refs)
		return;
	for (size_t f = 0; f < s->nfolders; f++)
		link_release(&k->links[f]);
	if (k->prev)
		k->prev->next = k->next;
	else
		s->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	free(k->links);
	free(k);
}

static void on_up(void *arg, struct net_conn *c, size_t peer)
{
	struct net_sessions *s = arg;
	struct sconn *k = calloc(1, sizeof(*k));
	struct hello_job *h;

	if (k)
		k->links = calloc(s->nfolders ? s->nfolders : 1, sizeof(*k->links));
	if (!k || !k->links || s->stopping) {
		if (k)
			free(k->links);
		free(k);
		net_conn_close(c, s->stopping ? -ESHUTDOWN : -ENOMEM);
		return;
	}
	k->s = s;
	k->c = c;
	k->peer = peer;
	for (size_t f = 0; f < s->nfolders; f++) {
		k->links[f].k = k;
		k->links[f].f = f;
		version_vector_init(&k->links[f].partner_kv);
		version_vector_init(&k->links[f].ack_kv);
	}
	k->next = s->conns;
	if (s->conns)
		s->conns->prev = k;
	s->conns = k;
	net_conn_set_data(c, k);
	pthread_mutex_lock(&s->lock);
	for (size_t f = 0; f < s->nfolders; f++) {
		pstat_of(s, f, peer)->connected = true;
		pstat_of(s, f, peer)->backlog_sent_valid = false;
		pstat_of(s, f, peer)->unheard++;
		k->links[f].unheard = true;
	}
	pthread_mutex_unlock(&s->lock);
	h = calloc(1, sizeof(*h));
	if (!h) {
		local_error(k, "hello", -ENOMEM);
		return;
	}
	h->base.run = hello_run;
	h->base.done = hello_done;
	job_queue(s, k, &h->base);
}

static void on_msg(void *arg, struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct sconn *k = net_conn_data(c);
	Dfsrwire__Msg *m;

	(void)arg;
	if (!k || k->closing || k->s->stopping)
		return;
	m = dfsrwire__msg__unpack(NULL, len, buf);
	if (!m) {
		proto_error(k, "undecodable message");
		return;
	}
	dispatch(k, m, len);
	dfsrwire__msg__free_unpacked(m, NULL);
}

static void on_writable(void *arg, struct net_conn *c)
{
	struct sconn *k = net_conn_data(c);

	(void)arg;
	if (!k)
		return;
	for (size_t f = 0; f < k->s->nfolders; f++)
		link_flush(&k->links[f]);
	serve_pump(k);
}

static void on_down(void *arg, struct net_conn *c, int err)
{
	struct net_sessions *s = arg;
	struct sconn *k = net_conn_data(c);
	bool other = false;

	(void)err;
	if (!k)
		return;
	net_conn_set_data(c, NULL);
	k->c = NULL;
	for (struct sconn *o = s->conns; o; o = o->next)
		other |= o != k && o->c && o->peer == k->peer;
	pthread_mutex_lock(&s->lock);
	for (size_t f = 0; f < s->nfolders; f++) {
		k->links[f].cancel = true;
		heard_locked(&k->links[f]);
		if (!other)
			pstat_of(s, f, k->peer)->connected = false;
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	/* Downloads and served versions no job owns end now; the others when their job is
	 * back (their done() sees the connection gone). Partial files stay in Installing. */
	for (size_t i = 0; i < NET_SESSION_FETCH_MAX; i++) {
		struct xfer *x = k->fetch[i];

		if (x && !x->writing)
			xfer_end(k, x, IT_FETCH_RETRY, false);
	}
	for (struct serve *v = k->serves, *next; v; v = next) {
		next = v->next;
		if (v->busy)
			v->cancelled = true;
		else
			serve_free(k, v);
	}
	stage_start(k); /* Gets still waiting for a stage job end here */
	conn_maybe_free(k);
	sessions_maybe_finish(s);
}

static void on_peer_event(void *arg, enum dfsr_event ev, const char *details)
{
	sess_event(arg, SIZE_MAX, ev, "%s", details);
}

static void on_peers_stopped(void *arg)
{
	struct net_sessions *s = arg;

	s->peers = NULL;
	sessions_maybe_finish(s);
}

/* ---- the loop side: kick, tick, start, stop ------------------------------------------------- */

static void on_kick(uv_async_t *h)
{
	struct net_sessions *s = dfsr_container_of(h, struct net_sessions, kick);

	walks_reap(s);
	if (s->stopping)
		return;
	for (size_t f = 0; f < s->nfolders; f++) {
		if (!atomic_exchange(&s->folders[f].wake, false))
			continue;
		for (struct sconn *k = s->conns; k; k = k->next)
			if (conn_live(k) && k->links[f].common)
				walk_start(&k->links[f]);
		for (size_t p = 0; p < s->cfg->npeers; p++)
			recount_start(s, f, p);
	}
	for (struct sconn *k = s->conns; k; k = k->next)
		for (size_t f = 0; f < s->nfolders; f++)
			link_flush(&k->links[f]);
}

struct state_job {
	struct job base;
	size_t f;
	int old_state;
	bool stale; /* §12: the folder is in a stale initial sync */
	uint64_t next_seq;
};

static void state_run(struct job *jb)
{
	struct state_job *sj = dfsr_container_of(jb, struct state_job, base);
	struct sfolder *sf = &jb->s->folders[sj->f];
	int64_t now = dfsr_mono_ns(), due = atomic_load(&sf->care_ns);
	struct journal_status js;

	/* claimed with a CAS: state jobs of one folder may overlap if this one is slow */
	if (sf->tombstone_days && now >= due &&
	    atomic_compare_exchange_strong(&sf->care_ns, &due, now + MONO_MS(TOMBSTONE_CARE_MS)))
		(void)journal_tombstone_care(sf->j, sf->tombstone_days); /* logs what it does */
	sj->stale = journal_stale(sf->j, NULL);
	sj->old_state = atomic_exchange(&sf->state, (int)journal_state(sf->j));
	journal_get_status(sf->j, &js);
	sj->next_seq = js.next_seq;
}

static void state_done(struct job *jb, bool cancelled)
{
	struct state_job *sj = dfsr_container_of(jb, struct state_job, base);
	struct net_sessions *s = jb->s;
	size_t f = sj->f;
	bool now_normal = !cancelled && sj->old_state != JOURNAL_STATE_NORMAL &&
			  atomic_load(&s->folders[f].state) == JOURNAL_STATE_NORMAL;
	uint64_t next_seq = sj->next_seq;
	bool stale = sj->stale;

	free(sj);
	if (cancelled || s->stopping)
		return;
	if (stale)
		folder_stale(s, f);
	if (now_normal) {
		folder_changed_state(s, f);
		return;
	}
	/* A journal entry no recount covers (one that failed, or an append without a wake)
	 * would keep the partners unsettled: count again. */
	for (size_t p = 0; p < s->cfg->npeers; p++) {
		struct pstat *ps = pstat_of(s, f, p);
		bool behind;

		pthread_mutex_lock(&s->lock);
		behind = ps->counted_seq < next_seq;
		pthread_mutex_unlock(&s->lock);
		if (behind && !ps->recounting)
			recount_start(s, f, p);
	}
}

/* Read the folders' states again (a scan or a reset may change them without a journal
 * wake). Thread: loop. */
static void states_refresh(struct net_sessions *s)
{
	for (size_t f = 0; f < s->nfolders; f++) {
		struct state_job *sj = calloc(1, sizeof(*sj));

		if (!sj)
			return;
		sj->f = f;
		sj->base.run = state_run;
		sj->base.done = state_done;
		job_queue(s, NULL, &sj->base);
	}
}

/* §12: a folder connected to a normal partner it has synced with on that connection is in
 * contact with the group (a quiet group exchanges no Done or Ack, and would otherwise turn
 * stale, every member at once). A read-only partner never sends a Done (it sends nothing):
 * a connection to one that is normal counts once both Hellos are through, as its Acks do,
 * or a hub whose partners are all read-only would turn stale in a quiet month and, with no
 * partner to end its stale sync, stop replicating. Thread: loop. */
static bool link_in_contact(const struct link *l)
{
	return l->common && (l->synced || (l->partner_ro && l->k->hello_rcvd &&
					   l->partner_state == JOURNAL_STATE_NORMAL));
}

static void contact_note(struct net_sessions *s)
{
	for (size_t f = 0; f < s->nfolders; f++)
		for (struct sconn *k = s->conns; k; k = k->next)
			if (conn_live(k) && k->links && link_in_contact(&k->links[f])) {
				journal_note_contact(s->folders[f].j);
				break;
			}
}

static void on_tick(uv_timer_t *t)
{
	struct net_sessions *s = dfsr_container_of(t, struct net_sessions, tick);
	int64_t now = dfsr_mono_ns();

	if (now >= s->state_ns && !s->stopping) {
		s->state_ns = now + s->state_every_ns;
		contact_note(s);
		states_refresh(s);
	}
	for (struct sconn *k = s->conns; k; k = k->next) {
		if (!conn_live(k))
			continue;
		for (size_t f = 0; f < s->nfolders; f++) {
			struct link *l = &k->links[f];
			bool due = false;

			for (struct item *it = l->held.head; it; it = it->next) {
				if (it->st == IT_FETCH_RETRY && it->retry_ns <= now)
					it->st = IT_FETCH;
				due |= (it->st == IT_BUSY || it->st == IT_WAIT) &&
				       it->retry_ns <= now;
			}
			if (due)
				offer_start(l);
			if (l->walk_retry_ns && l->walk_retry_ns <= now) {
				l->walk_retry_ns = 0;
				walk_start(l);
			}
			if (l->nagain && l->again_ns <= now)
				walk_start(l);
			if (l->merge_retry_ns && l->merge_retry_ns <= now)
				l->merge_retry_ns = 0;
			dones_check(l);
		}
		fetch_start(k);
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct net_sessions *s = h->data;

	if (--s->handles_open == 0) {
		pthread_mutex_lock(&s->lock);
		s->finished = true;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
}

/* Once stopping, with the peers gone, no connection and no job left: close the handles;
 * the last close callback lets net_sessions_stop() return. Thread: loop. */
static void sessions_maybe_finish(struct net_sessions *s)
{
	if (!s->stopping || s->peers || s->conns || s->pool_busy || s->handles_closing)
		return;
	s->handles_closing = true;
	uv_close((uv_handle_t *)&s->kick, on_handle_closed);
	uv_close((uv_handle_t *)&s->tick, on_handle_closed);
	uv_close((uv_handle_t *)&s->recount_timer, on_handle_closed);
}

struct start_ctx {
	struct net_sessions *s;
	int rc;
	bool handles; /* the handles were opened: wait for their close */
};

static void start_on_loop(struct net_loop *loop, void *arg)
{
	struct start_ctx *c = arg;
	struct net_sessions *s = c->s;
	struct net_peers_opts po = {
		.loop = loop,
		.cfg = s->cfg,
		.secret_key = s->key,
		.cb = { .up = on_up,
			.msg = on_msg,
			.writable = on_writable,
			.down = on_down,
			.event = on_peer_event,
			.stopped = on_peers_stopped,
			.arg = s },
	};

	c->rc = uv_async_init(net_loop_uv(loop), &s->kick, on_kick);
	if (c->rc < 0)
		return;
	s->kick.data = s;
	uv_timer_init(net_loop_uv(loop), &s->tick);
	s->tick.data = s;
	uv_timer_init(net_loop_uv(loop), &s->recount_timer);
	s->recount_timer.data = s;
	s->handles_open = 3;
	c->handles = true;
	s->state_ns = dfsr_mono_ns() + s->state_every_ns;
	uv_timer_start(&s->tick, on_tick, s->tick_ms, s->tick_ms);
	c->rc = net_peers_start(&po, &s->peers);
	if (c->rc < 0) {
		s->peers = NULL;
		s->stopping = true;
		sessions_maybe_finish(s);
		return;
	}
	for (size_t f = 0; f < s->nfolders; f++)
		for (size_t p = 0; p < s->cfg->npeers; p++)
			recount_start(s, f, p);
}

static void stop_on_loop(struct net_loop *loop, void *arg)
{
	struct net_sessions *s = arg;

	(void)loop;
	s->stopping = true;
	pthread_mutex_lock(&s->lock);
	for (struct sconn *k = s->conns; k; k = k->next)
		for (size_t f = 0; f < s->nfolders; f++)
			k->links[f].cancel = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->peers)
		net_peers_stop(s->peers); /* on_peers_stopped() clears s->peers */
	sessions_maybe_finish(s);
}

static void sessions_free(struct net_sessions *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->stats && i < s->nfolders * s->cfg->npeers; i++)
		version_vector_release(&s->stats[i].kv);
	for (size_t f = 0; s->folders && f < s->nfolders; f++)
		free(s->folders[f].name);
	free(s->folders);
	free(s->stats);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	sodium_memzero(s->key, sizeof(s->key));
	free(s);
}

static void wait_finished(struct net_sessions *s)
{
	pthread_mutex_lock(&s->lock);
	while (!s->finished)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

int net_sessions_start(const struct net_sessions_opts *o, struct net_sessions **out)
{
	struct net_sessions *s = calloc(1, sizeof(*s));
	struct start_ctx c = { .s = s, .rc = 0 };
	size_t nstats;
	int rc;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->loop = o->loop;
	s->cfg = o->cfg;
	memcpy(s->key, o->secret_key, sizeof(s->key));
	s->nfolders = o->nfolders;
	s->window = o->window ? o->window : NET_SESSION_WINDOW;
	s->busy_event_ns = MONO_MS(o->busy_event_ms ? o->busy_event_ms : NET_SESSION_BUSY_LOG_MS);
	s->retry_ns = MONO_MS(o->retry_ms ? o->retry_ms : NET_SESSION_RETRY_MS);
	s->state_every_ns = MONO_MS(o->state_ms ? o->state_ms : STATE_MS);
	s->tick_ms = o->retry_ms && o->retry_ms < TICK_MS ? o->retry_ms : TICK_MS;
	if (o->state_ms && o->state_ms < s->tick_ms)
		s->tick_ms = o->state_ms;
	s->hello_hook = o->hello_hook;
	s->hello_hook_arg = o->hello_hook_arg;
	s->folders = calloc(o->nfolders ? o->nfolders : 1, sizeof(*s->folders));
	if (__builtin_mul_overflow(o->nfolders, o->cfg->npeers, &nstats) || !s->folders)
		goto out_nomem;
	s->stats = calloc(nstats ? nstats : 1, sizeof(*s->stats));
	if (!s->stats)
		goto out_nomem;
	for (size_t i = 0; i < nstats; i++)
		version_vector_init(&s->stats[i].kv);
	for (size_t f = 0; f < o->nfolders; f++) {
		struct sfolder *sf = &s->folders[f];

		sf->name = strdup(o->folders[f].name);
		if (!sf->name)
			goto out_nomem;
		sf->name_len = strlen(sf->name);
		sf->j = o->folders[f].j;
		sf->r = o->folders[f].r;
		sf->stage = o->folders[f].stage;
		sf->read_only = o->folders[f].read_only;
		sf->tombstone_days = o->folders[f].tombstone_days;
		sf->care_ns = dfsr_mono_ns() + MONO_MS(TOMBSTONE_CARE_MS);
		atomic_init(&sf->wake, false);
		atomic_init(&sf->state, (int)journal_state(sf->j)); /* not the loop thread */
	}
	rc = net_loop_call(s->loop, start_on_loop, &c);
	if (rc < 0) {
		sessions_free(s);
		return rc;
	}
	if (c.rc < 0) {
		if (c.handles)
			wait_finished(s);
		sessions_free(s);
		return c.rc;
	}
	*out = s;
	return 0;
out_nomem:
	sessions_free(s);
	return -ENOMEM;
}

void net_sessions_stop(struct net_sessions *s)
{
	if (!s)
		return;
	if (net_loop_call(s->loop, stop_on_loop, s) == 0)
		wait_finished(s);
	sessions_free(s);
}

void net_sessions_wake(struct net_sessions *s, size_t folder)
{
	if (!s || folder >= s->nfolders)
		return;
	if (!atomic_exchange(&s->folders[folder].wake, true))
		uv_async_send(&s->kick);
}

void net_sessions_status(struct net_sessions *s, size_t folder, struct net_session_peer_status *out)
{
	struct journal_status js;
	bool sync;

	if (!s || folder >= s->nfolders)
		return;
	sync = folder_syncing(s, folder);
	/* Before the figures: an entry journaled after this read is not promised. */
	journal_get_status(s->folders[folder].j, &js);
	pthread_mutex_lock(&s->lock);
	for (size_t p = 0; p < s->cfg->npeers; p++) {
		const struct pstat *ps = pstat_of(s, folder, p);

		out[p] = (struct net_session_peer_status){
			.connected = ps->connected,
			.backlog_out = ps->backlog_out,
			.backlog_in = ps->backlog_in > ps->rx_undecided ? ps->backlog_in
									: ps->rx_undecided,
			.bytes_sent = ps->bytes_sent,
			.bytes_received = ps->bytes_received,
			.transfers = ps->transfers,
			.busy_serves = ps->busy_serves,
			.unsettled = ps->counted_seq < js.next_seq || ps->rx_dones > 0 ||
				     ps->unheard > 0,
		};
		if (sync) {
			out[p].files_done = ps->files_done;
			out[p].files_total = ps->files_total;
			out[p].bytes_done = ps->bytes_done;
			out[p].bytes_total = ps->bytes_total;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

int net_sessions_partner_knowledge(struct net_sessions *s, size_t folder, size_t peer,
				   struct version_vector *out)
{
	int rc = 0;

	if (!s || folder >= s->nfolders || peer >= s->cfg->npeers)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (pstat_of(s, folder, peer)->kv_known)
		rc = version_vector_copy(out, &pstat_of(s, folder, peer)->kv);
	else
		version_vector_release(out);
	pthread_mutex_unlock(&s->lock);
	return rc;
}
