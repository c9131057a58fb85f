/*
 * control.h - the command-line control socket of a running member.
 *
 * A unix stream socket at cfg->control_path (mode 0600 in a directory made on demand, so
 * only root talks to the member). The protocol is one exchange per connection: the client
 * writes one request line (at most NET_CONTROL_REQ_MAX bytes, ending in "\n"), the server
 * writes one reply and closes. A reply is "ok\n" followed by the payload, or
 * "error <one line>\n". What a request means is the member's business (fs/dfsr.c): this
 * module only carries lines.
 *
 * The handler runs on the libuv thread pool (uv_queue_work), never on the loop thread, so
 * it may touch disk and the database. Several may run at once.
 *
 * Thread: net_control_start() and net_control_stop() init (the loop thread running);
 * net_control_request() any thread of any process.
 */
#ifndef DFSR_NET_CONTROL_H
#define DFSR_NET_CONTROL_H

#include "core/util.h"
#include "net/loop.h"

#define NET_CONTROL_REQ_MAX   4096
#define NET_CONTROL_REPLY_MAX (64u << 20) /* a client refuses longer replies */

struct net_control;

/**
 * net_control_fn - Answer one request.
 * @arg:     net_control_opts.arg
 * @request: the request line, without its "\n"
 * @reply:   the full reply to send ("ok\n..." or "error ...\n"), empty on entry
 *
 * Thread: the libuv thread pool.
 * Return: 0; a positive value to have net_control_opts.after() called with it once the
 *         reply was sent (e.g. "stop" replies first, then stops the member); a negative
 *         errno makes the reply "error <strerror>\n" instead of @reply.
 */
typedef int (*net_control_fn)(void *arg, const char *request, struct dfsr_buf *reply);
/* Called on the loop thread after the reply of a request whose handler returned @what > 0. */
typedef void (*net_control_after_fn)(void *arg, int what);

struct net_control_opts {
	const char *path; /* socket path; its directory is made (0755) if missing */
	net_control_fn handle;
	net_control_after_fn after; /* may be NULL */
	void *arg; /* for both; must outlive net_control_stop() + net_loop_stop() */
};

/**
 * net_control_start() - Bind and listen on @o->path on the loop thread.
 * @loop: a started loop
 * @out:  receives the server
 *
 * A socket file left by a member that died is replaced: the caller first checked that no
 * member answers there (net_control_request()).
 * Thread: init.
 * Return: 0, -ENAMETOOLONG (over sun_path), -EACCES, -EADDRINUSE, -ENOMEM, or an -errno of
 *         mkdir/bind/listen.
 */
int net_control_start(struct net_loop *loop, const struct net_control_opts *o,
		      struct net_control **out);

/**
 * net_control_stop() - Stop accepting, close every connection, remove the socket file.
 * Requests whose handler is running still finish (their replies are dropped); the server
 * is freed on the loop thread once the last of them returned, at the latest in
 * net_loop_stop(). @c must not be used afterwards. NULL-safe.
 * Thread: init.
 */
void net_control_stop(struct net_control *c);

/**
 * net_control_request() - Blocking client: send @request, read the reply.
 * @path:       socket path
 * @request:    one line, without "\n"
 * @timeout_ms: for connect + reply together
 * @reply:      receives the payload after "ok\n", or, on DFSR error replies, the error
 *              text (without "error " and "\n")
 *
 * Return: 0 for an "ok" reply; -EREMOTEIO for an "error" reply (text in @reply);
 *         DFSR_ENOTRUNNING if nothing listens at @path (no socket file, or connection
 *         refused); -ETIMEDOUT if something listens but does not accept or answer within
 *         @timeout_ms (a hung or stopped member: never blocks longer, also with its listen
 *         backlog full); -EBADMSG for a reply that is neither; -ENAMETOOLONG; -ENOMEM;
 *         -EFBIG past NET_CONTROL_REPLY_MAX; another -errno of socket calls (-EACCES...).
 */
int net_control_request(const char *path, const char *request, int timeout_ms,
			struct dfsr_buf *reply);

#endif
