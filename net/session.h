/*
 * session.h - replication sessions: for every connected partner and every folder both
 * hold, the protocol of docs/protocol.md, "Replication messages" (net/wire.proto) over
 * the connections of net/peer.h.
 *
 * Per connection: both sides send Hello (protocol version, member name, per folder its
 * database id, state and knowledge vector). Then, per common folder and per direction:
 *   - upstream (skipped while our folder is initial-sync or read-only): send every update
 *     the partner's knowledge lacks (outbound_missing()), then Done with our knowledge at
 *     that snapshot; afterwards follow the outbound journal (outbound_changes()) whenever
 *     it grows, each round ending with Done. Updates go in bounded batches (Updates
 *     messages of at most 256 updates / 1 MiB), and production pauses while the connection's
 *     queue is above NET_PEER_OUT_HIGH or NET_SESSION_WINDOW updates are beyond the
 *     partner's Progress (flow control; an update waiting for its download stays in the
 *     window).
 *   - downstream: offer each update (replica_offer()) in arrival order, holding WAIT ones
 *     until their parent arrives; fetch REPLICA_FETCH ones with Get / FileInfo / Want /
 *     Chunk into a stage_asm in the Installing directory (resuming chunks already there,
 *     seeding from the local file of the same UID), then replica_install(). At most
 *     NET_SESSION_FETCH_MAX transfers are in flight per connection (no more than the
 *     partner's Hello.serve_max), and the upstream serves their chunks round robin, so one
 *     large file does not stall small ones. When every update received
 *     before a Done is decided, replica_merge() and send Ack (knowledge and pending count).
 * All blocking work (staging, reading and writing chunks, offers, installs, merges, backlog
 * counts) runs on the libuv thread pool; the walks that produce Updates run on a thread of
 * their own each (they wait on the partner's flow control for as long as it takes, which
 * must not hold a pool thread). The loop thread only moves messages.
 *
 * Thread: as stated per function.
 */
#ifndef DFSR_NET_SESSION_H
#define DFSR_NET_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/journal.h"
#include "core/replica.h"
#include "core/stage.h"
#include "net/loop.h"

#define NET_SESSION_PROTO 1 /* replication protocol version (Hello.proto) */

/* Limits of the protocol (docs/protocol.md, "Replication messages"). */
#define NET_SESSION_BATCH_MAX    256        /* updates in one Updates message */
#define NET_SESSION_BATCH_BYTES  (1u << 20) /* updates in one message: at most this size */
#define NET_SESSION_WINDOW       4096       /* updates sent beyond the partner's Progress */
#define NET_SESSION_FOLDERS_MAX  1024       /* folders in one Hello */
#define NET_SESSION_FETCH_MAX    64         /* our downloads in flight per connection */
#define NET_SESSION_FETCH_LARGE  16         /* of which of files over NET_SESSION_INLINE_MAX */
#define NET_SESSION_SERVE_MAX    64         /* transfers a partner may have open with us */
#define NET_SESSION_SERVE_OLD    16         /* a partner's limit when its Hello has none */
#define NET_SESSION_WANT_MAX     4096       /* chunk indexes in one Want */
#define NET_SESSION_CHUNK_WINDOW 32         /* chunks requested and not yet written, per download */
/* Files of at most NET_SESSION_MEMORY_MAX are read into memory to be served, not staged
 * (at most NET_SESSION_SERVE_MAX of them, 16 MiB, per connection); files of at most
 * NET_SESSION_INLINE_MAX go whole with their FileInfo (like DFSR's RDC minimum size:
 * below it deltas never pay). */
#define NET_SESSION_MEMORY_MAX   (256u << 10)
#define NET_SESSION_INLINE_MAX   (64u << 10)
#define NET_SESSION_RETRY_MS     5000  /* busy updates, failed transfers: try again after */
#define NET_SESSION_BUSY_LOG_MS  60000 /* a version open for writing so long: event 4302 */

/*
 * Event 4302 (EV_SHARING_VIOLATION, "file still open for writing") has two sources, one
 * per member involved, and each situation is logged by one of them only:
 *   - here, on the upstream (details op=stage): a partner asked for a version of ours
 *     (Get) whose file is open for writing here, so it cannot be staged; the partner
 *     retries every NET_SESSION_RETRY_MS; logged once per version once it stayed so for
 *     NET_SESSION_BUSY_LOG_MS, whatever the retries and partners (the Gets so answered
 *     are counted in busy_serves). The downstream logs nothing for it: it only sees
 *     FileInfo status 2.
 *   - in core/replica.c, on the downstream (op=install): an update from a partner would
 *     replace a local file open for writing here (docs/conflicts.md §8); it waits, and
 *     the replica logs it at the first wait, then at most once a minute per object. The
 *     upstream serves that version normally and logs nothing.
 * Both are needed: they name different members' writers (the administrator acts on the
 * member whose log shows it). The same file open on one member can show both, for two
 * different versions: its own (a partner cannot get it) and a partner's (it cannot be
 * installed here).
 */

struct net_sessions;

struct net_session_folder {
	const char *name;    /* the folder's name (as in the config) */
	struct journal *j;   /* borrowed */
	struct replica *r;   /* borrowed */
	struct stage *stage; /* borrowed */
	bool read_only;
	uint32_t tombstone_days; /* journal_tombstone_care() every hour (0: never) */
};

struct net_sessions_opts {
	struct net_loop *loop;
	const struct config *cfg;                 /* borrowed; outlives the sessions */
	const uint8_t *secret_key;                /* 32 bytes, copied */
	const struct net_session_folder *folders; /* copied */
	size_t nfolders;
	unsigned window;        /* tests: the flow-control window; 0 = NET_SESSION_WINDOW */
	unsigned busy_event_ms; /* tests: 0 = NET_SESSION_BUSY_LOG_MS */
	/* tests: 0 = NET_SESSION_RETRY_MS; the retries are checked on a tick of once a second,
	 * or every retry_ms when that is shorter */
	unsigned retry_ms;
	/* tests: 0 = every 5 s, how often folder states are read again (a folder turned
	 * normal or stale) and the contact of a connected quiet partner is noted (§12); the
	 * tick runs at least that often */
	unsigned state_ms;
	/* tests: called on the pool before each Hello is built, with the partner's index in
	 * cfg->peers; it may block (a Hello that is late, while other connections go on) */
	void (*hello_hook)(void *arg, size_t peer);
	void *hello_hook_arg;
};

/**
 * net_sessions_start() - Start listening and dialling (net/peer.h) and serve sessions.
 * Thread: any but the loop thread (runs the start on the loop and waits).
 * Return: 0, -EADDRINUSE, -ENOMEM, or another -errno of the listener.
 */
int net_sessions_start(const struct net_sessions_opts *o, struct net_sessions **out);

/**
 * net_sessions_stop() - Close every connection, let thread-pool work in flight finish
 * (partial downloads stay in Installing for a resume), and free. NULL-safe.
 * The caller turns the wake hooks off first (journal_set_changed(j, NULL, NULL)): no
 * net_sessions_wake() may run during or after the stop.
 * Thread: any but the loop thread; before net_loop_stop().
 */
void net_sessions_stop(struct net_sessions *s);

/**
 * net_sessions_wake() - The outbound journal of folder @folder grew: sessions send the new
 * updates. Cheap and coalesced (many calls, one round).
 * Thread: any (the replica's changed callback).
 */
void net_sessions_wake(struct net_sessions *s, size_t folder);

struct net_session_peer_status {
	bool connected;
	uint64_t backlog_out;    /* updates we hold that the partner has not decided yet */
	uint64_t backlog_in;     /* updates the partner holds that we have not decided yet */
	uint64_t bytes_sent;     /* this folder's messages to the partner, since start */
	uint64_t bytes_received; /* this folder's messages from the partner, since start */
	uint64_t transfers;      /* file transfers in flight, both directions */
	/* the partner's Gets of this folder answered "failed" because the file is open for
	 * writing here (the partner retries; event 4302 above), since start. Counted once
	 * the answer is decided, with its 4302 (if that answer logged one) in the event log. */
	uint64_t busy_serves;
	/* initial sync of our folder from this partner (zero when not syncing) */
	uint64_t files_done, files_total, bytes_done, bytes_total;
	/* Not settled yet, whatever the figures say: a local change that backlog_out does not
	 * count yet (its recount is due, queued or running), a Done from the partner not
	 * merged and acknowledged yet, or a connection (re)established and the partner's first
	 * Done or Backlog of it not received yet (backlog_in is the last connection's figure
	 * until then; excepted once the partner's Hello says it sends neither: the folder is
	 * not common, or is read-only or not normal on the partner). `dfsr wait` waits while
	 * it is set. */
	bool unsettled;
};

/**
 * net_sessions_status() - Partner figures of folder @folder.
 * @out: one entry per configured peer (cfg->npeers), in config order
 *
 * backlog_out is recounted on the pool after every change or Ack (coalesced) and exact
 * once quiet; for a partner never connected it counts every record (its knowledge is
 * unknown). While a change journaled since the last recount is not counted yet,
 * unsettled is set. backlog_in is the partner's last count (Done, Backlog), but never
 * less than the updates received from it on this connection and not decided yet (held:
 * busy, waiting for a parent, being fetched); until the first Done or Backlog of a new
 * connection, unsettled is set. So for a connected partner, zero backlogs,
 * no transfer and unsettled clear mean: the partner acknowledged every change journaled
 * here before the call, and everything received from it is decided and merged (a change
 * the partner has not sent yet cannot be known here).
 * Thread: any but the loop (takes a short lock, reads the journal's counters).
 */
void net_sessions_status(struct net_sessions *s, size_t folder,
			 struct net_session_peer_status *out);

/**
 * net_sessions_partner_knowledge() - The knowledge vector partner @peer last acknowledged
 * for folder @folder (empty if never), for `dfsr backlog --list`.
 * Thread: any.
 * Return: 0, -ENOMEM.
 */
int net_sessions_partner_knowledge(struct net_sessions *s, size_t folder, size_t peer,
				   struct version_vector *out);

/**
 * net_session_check_msg() - Decode one message as a receiver does and run every check
 * that needs no session state (docs/protocol.md §RM.1: lengths, counts, knowledge
 * vectors, records and chunk lists); for tests and the fuzzer (tests/fuzz/fuzz_wire.c).
 * Thread: any.
 * Return: 0, -EBADMSG, -EPROTONOSUPPORT (a Hello of another version), -ENOMEM.
 */
int net_session_check_msg(const uint8_t *buf, size_t len);

#endif
