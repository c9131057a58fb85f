/*
 * control.c - the control socket: one request line in, one reply out, then close.
 *
 * The server lives on the loop thread (net/loop.c). A connection reads until the first
 * "\n" (a request longer than NET_CONTROL_REQ_MAX is answered with an error), stops
 * reading, and hands the line to the member's handler on the libuv thread pool, because
 * answering usually touches the database or walks DfsrPrivate. The reply is written from
 * the loop thread and the connection closes once it is flushed.
 *
 * Life of a connection: it is freed when both its pipe is closed and its work request (if
 * any) has come back, whichever is last, so stopping the server while a handler runs is
 * safe: the pipe closes at once, the reply is dropped when the work returns. The server
 * itself is freed when it is stopping, its listening pipe is closed and no connection is
 * left. All of that happens on the loop thread; net_control_stop() only posts.
 *
 * The client side is a plain blocking function (poll with a deadline) for the commands,
 * which have no loop of their own.
 */
#include "net/control.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

struct ctl_conn;

struct net_control {
	struct net_loop *loop;
	uv_pipe_t server;
	net_control_fn handle;
	net_control_after_fn after;
	void *arg;
	char *path; /* the socket file, removed by net_control_stop() */
	bool stopping;
	bool server_closed;
	struct ctl_conn *conns; /* open or finishing connections; loop thread only */
};

struct ctl_conn {
	struct net_control *c;
	struct ctl_conn *prev, *next;
	uv_pipe_t pipe;
	uv_work_t work;
	uv_write_t wr;
	bool pipe_closed;
	bool work_busy;
	bool too_long; /* reading on to the end of an overlong request, discarding it */
	size_t discarded;
	int rc; /* the handler's return */
	size_t len;
	char req[NET_CONTROL_REQ_MAX + 1];
	struct dfsr_buf reply;
};

static void control_maybe_free(struct net_control *c)
{
	if (c->stopping && c->server_closed && !c->conns) {
		free(c->path);
		free(c);
	}
}

static void conn_maybe_free(struct ctl_conn *k)
{
	struct net_control *c = k->c;

	if (!k->pipe_closed || k->work_busy)
		return;
	if (k->prev)
		k->prev->next = k->next;
	else
		c->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	dfsr_buf_release(&k->reply);
	free(k);
	control_maybe_free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct ctl_conn *k = dfsr_container_of(h, struct ctl_conn, pipe);
	struct net_control *c = k->c;

	k->pipe_closed = true;
	if (k->rc > 0 && c->after && !k->work_busy)
		c->after(c->arg, k->rc);
	conn_maybe_free(k);
}

static void conn_close(struct ctl_conn *k)
{
	if (!uv_is_closing((uv_handle_t *)&k->pipe))
		uv_close((uv_handle_t *)&k->pipe, on_conn_closed);
}

static void on_written(uv_write_t *wr, int status)
{
	struct ctl_conn *k = dfsr_container_of(wr, struct ctl_conn, wr);

	(void)status; /* nothing to do on failure either: the client went away */
	conn_close(k);
}

static void conn_send(struct ctl_conn *k)
{
	uv_buf_t b = uv_buf_init(k->reply.p, (unsigned)k->reply.len);

	if (k->reply.len > UINT32_MAX ||
	    uv_write(&k->wr, (uv_stream_t *)&k->pipe, &b, 1, on_written) < 0)
		conn_close(k);
}

static void set_error_reply(struct ctl_conn *k, const char *text)
{
	k->reply.len = 0;
	if (k->reply.p)
		k->reply.p[0] = '\0';
	if (dfsr_buf_addf(&k->reply, "error %s\n", text) < 0)
		k->reply.len = 0;
}

static void work_run(uv_work_t *w)
{
	struct ctl_conn *k = dfsr_container_of(w, struct ctl_conn, work);
	struct net_control *c = k->c;

	k->rc = c->handle(c->arg, k->req, &k->reply);
	if (k->rc < 0)
		set_error_reply(k, dfsr_strerror(k->rc));
}

static void work_done(uv_work_t *w, int status)
{
	struct ctl_conn *k = dfsr_container_of(w, struct ctl_conn, work);

	k->work_busy = false;
	if (status < 0)
		k->rc = 0; /* UV_ECANCELED: the handler never ran */
	if (uv_is_closing((uv_handle_t *)&k->pipe)) {
		if (k->pipe_closed && k->rc > 0 && k->c->after)
			k->c->after(k->c->arg, k->rc);
		conn_maybe_free(k);
		return;
	}
	if (status < 0 || k->reply.len == 0) {
		conn_close(k);
		return;
	}
	conn_send(k);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_conn *k = dfsr_container_of(h, struct ctl_conn, pipe);

	(void)suggested;
	if (k->too_long)
		k->len = 0;
	*buf = uv_buf_init(k->req + k->len, (unsigned)(NET_CONTROL_REQ_MAX - k->len));
}

static void conn_dispatch(struct ctl_conn *k)
{
	uv_loop_t *uv = net_loop_uv(k->c->loop);

	uv_read_stop((uv_stream_t *)&k->pipe);
	k->work_busy = true;
	if (uv_queue_work(uv, &k->work, work_run, work_done) < 0) {
		k->work_busy = false;
		set_error_reply(k, "cannot queue the request");
		conn_send(k);
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_conn *k = dfsr_container_of(s, struct ctl_conn, pipe);
	char *nl;

	(void)buf;
	if (nread < 0) {
		conn_close(k); /* EOF before a whole line, or an error */
		return;
	}
	k->len += (size_t)nread;
	k->req[k->len] = '\0';
	nl = memchr(k->req, '\n', k->len);
	if (k->too_long) {
		k->discarded += (size_t)nread;
		/* Read to the end of the line before answering: closing with unread input
		 * would reset the connection and lose the reply. Bounded, for bad clients. */
		if (nl || k->discarded > 16 * NET_CONTROL_REQ_MAX) {
			uv_read_stop(s);
			set_error_reply(k, "request too long");
			conn_send(k);
		}
	} else if (nl) {
		*nl = '\0';
		conn_dispatch(k);
	} else if (k->len >= NET_CONTROL_REQ_MAX) {
		k->too_long = true;
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct net_control *c = dfsr_container_of(server, struct net_control, server);
	struct ctl_conn *k;

	if (status < 0 || c->stopping)
		return;
	k = calloc(1, sizeof(*k));
	if (!k)
		return;
	k->c = c;
	dfsr_buf_init(&k->reply);
	uv_pipe_init(net_loop_uv(c->loop), &k->pipe, 0);
	k->next = c->conns;
	if (c->conns)
		c->conns->prev = k;
	c->conns = k;
	if (uv_accept(server, (uv_stream_t *)&k->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&k->pipe, on_alloc, on_read) < 0)
		conn_close(k);
}

static void on_server_closed(uv_handle_t *h)
{
	struct net_control *c = dfsr_container_of(h, struct net_control, server);

	c->server_closed = true;
	control_maybe_free(c);
}

struct start_args {
	struct net_control *c;
	const char *path;
	int rc;
};

static int bind_listen(struct net_control *c, const char *path)
{
	struct stat st;
	int rc;

	/* A socket left by a dead member: the caller checked that nobody answers there. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	rc = uv_pipe_bind(&c->server, path);
	if (rc < 0)
		return rc;
	/* Before listen(), so that nobody can connect while the mode is still loose. */
	if (chmod(path, 0600) < 0) {
		rc = -errno;
		unlink(path);
		return rc;
	}
	rc = uv_listen((uv_stream_t *)&c->server, 16, on_connection);
	if (rc < 0)
		unlink(path);
	return rc;
}

static void start_on_loop(struct net_loop *l, void *arg)
{
	struct start_args *a = arg;
	struct net_control *c = a->c;

	a->rc = uv_pipe_init(net_loop_uv(l), &c->server, 0);
	if (a->rc < 0) {
		free(c->path);
		free(c);
		return;
	}
	a->rc = bind_listen(c, a->path);
	if (a->rc < 0) {
		c->stopping = true;
		uv_close((uv_handle_t *)&c->server, on_server_closed);
	}
}

static int mkdir_parents(const char *path)
{
	char *dir = strdup(path);
	char *p;
	int rc = 0;

	if (!dir)
		return -ENOMEM;
	p = strrchr(dir, '/');
	if (p && p != dir) {
		*p = '\0';
		for (p = dir + 1; *p; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			if (mkdir(dir, 0755) < 0 && errno != EEXIST)
				rc = -errno;
			*p = '/';
		}
		if (rc == 0 && mkdir(dir, 0755) < 0 && errno != EEXIST)
			rc = -errno;
	}
	free(dir);
	return rc;
}

int net_control_start(struct net_loop *loop, const struct net_control_opts *o,
		      struct net_control **out)
{
	struct sockaddr_un sun;
	struct start_args a = { .path = o->path };
	int rc;

	if (strlen(o->path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	rc = mkdir_parents(o->path);
	if (rc < 0)
		return rc;
	a.c = calloc(1, sizeof(*a.c));
	if (!a.c)
		return -ENOMEM;
	a.c->loop = loop;
	a.c->handle = o->handle;
	a.c->after = o->after;
	a.c->arg = o->arg;
	a.c->path = strdup(o->path);
	if (!a.c->path) {
		free(a.c);
		return -ENOMEM;
	}
	rc = net_loop_call(loop, start_on_loop, &a);
	if (rc < 0) {
		free(a.c->path);
		free(a.c);
		return rc;
	}
	if (a.rc < 0)
		return a.rc; /* a.c is freed on the loop thread */
	*out = a.c;
	return 0;
}

static void stop_on_loop(struct net_loop *l, void *arg)
{
	struct net_control *c = arg;
	struct ctl_conn *k, *next;

	(void)l;
	c->stopping = true;
	for (k = c->conns; k; k = next) {
		next = k->next; /* conn_close never frees synchronously */
		conn_close(k);
	}
	uv_close((uv_handle_t *)&c->server, on_server_closed);
}

void net_control_stop(struct net_control *c)
{
	char *path;

	if (!c)
		return;
	/* c may be freed on the loop thread as soon as stop_on_loop ran. */
	path = strdup(c->path);
	if (net_loop_call(c->loop, stop_on_loop, c) == 0 && path)
		unlink(path);
	free(path);
}

/* ---- client ---------------------------------------------------------------------------- */

/*
 * Connect without blocking: a member that stopped answering (hung, or stopped with SIGSTOP)
 * leaves its listen backlog full after 16 clients, and a blocking connect() would then wait
 * for ever, whatever the caller's timeout. A unix socket answers EAGAIN instead: try again
 * every few milliseconds until the deadline.
 */
static int client_connect(const char *path, int64_t deadline_ns, int *out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, rc;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		rc = -errno;
		if ((rc == -EAGAIN || rc == -EINTR) && dfsr_mono_ns() < deadline_ns) {
			poll(NULL, 0, 5); /* the backlog is full: the member is not accepting */
			continue;
		}
		close(fd);
		if (rc == -ENOENT || rc == -ECONNREFUSED || rc == -ENOTDIR)
			return DFSR_ENOTRUNNING;
		return rc == -EAGAIN ? -ETIMEDOUT : rc;
	}
	*out = fd;
	return 0;
}

static int wait_fd(int fd, short events, int64_t deadline_ns)
{
	struct pollfd p = { .fd = fd, .events = events };
	int64_t left = deadline_ns - dfsr_mono_ns();
	int n;

	if (left <= 0)
		return -ETIMEDOUT;
	n = poll(&p, 1, (int)(left / 1000000 + 1));
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

static int client_send(int fd, const char *request, int64_t deadline_ns)
{
	struct dfsr_buf line;
	size_t off = 0;
	int rc;

	dfsr_buf_init(&line);
	rc = dfsr_buf_addf(&line, "%s\n", request);
	while (rc == 0 && off < line.len) {
		ssize_t n = send(fd, line.p + off, line.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n >= 0)
			off += (size_t)n;
		else if (errno == EAGAIN || errno == EINTR)
			rc = wait_fd(fd, POLLOUT, deadline_ns);
		else
			rc = -errno;
	}
	dfsr_buf_release(&line);
	return rc;
}

static int client_recv(int fd, struct dfsr_buf *in, int64_t deadline_ns)
{
	char chunk[8192];

	for (;;) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
		int rc;

		if (n == 0)
			return 0;
		if (n > 0) {
			if (in->len + (size_t)n > NET_CONTROL_REPLY_MAX)
				return -EFBIG;
			rc = dfsr_buf_add(in, chunk, (size_t)n);
		} else if (errno == EAGAIN || errno == EINTR) {
			rc = wait_fd(fd, POLLIN, deadline_ns);
		} else {
			rc = -errno;
		}
		if (rc < 0)
			return rc;
	}
}

static int parse_reply(const struct dfsr_buf *in, struct dfsr_buf *reply)
{
	const char *nl;

	if (in->len >= 3 && memcmp(in->p, "ok\n", 3) == 0)
		return dfsr_buf_add(reply, in->p + 3, in->len - 3);
	if (in->len >= 6 && memcmp(in->p, "error ", 6) == 0) {
		nl = memchr(in->p, '\n', in->len);
		if (!nl)
			nl = in->p + in->len;
		int rc = dfsr_buf_add(reply, in->p + 6, (size_t)(nl - in->p - 6));

		return rc < 0 ? rc : -EREMOTEIO;
	}
	return -EBADMSG;
}

int net_control_request(const char *path, const char *request, int timeout_ms,
			struct dfsr_buf *reply)
{
	int64_t deadline = dfsr_mono_ns() + (int64_t)timeout_ms * 1000000;
	struct dfsr_buf in;
	int fd = -1, rc;

	rc = client_connect(path, deadline, &fd);
	if (rc < 0)
		return rc;
	dfsr_buf_init(&in);
	rc = client_send(fd, request, deadline);
	if (rc == 0)
		rc = client_recv(fd, &in, deadline);
	if (rc == 0)
		rc = parse_reply(&in, reply);
	dfsr_buf_release(&in);
	close(fd);
	return rc;
}
