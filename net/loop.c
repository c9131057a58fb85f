/*
 * loop.c - the member's libuv loop thread and its inbox.
 *
 * libuv handles are not thread-safe, so the member keeps all of them on one loop that runs
 * on one thread, and every other thread talks to it by posting a function: the inbox is a
 * FIFO list under a mutex, and uv_async_send() wakes the loop, whose async callback drains
 * the whole list (uv_async_send coalesces wake-ups, so one callback may find many items).
 *
 * Stopping is itself a posted item: it marks the inbox closed (later posts fail with
 * -ESHUTDOWN, so nothing is ever lost silently), closes every handle still open with
 * uv_walk (the async handle included), and returns to uv_run, which then ends once the last
 * close callback and the last thread-pool request have run. The thread is joined and
 * uv_loop_close() must succeed: a leak of a handle would show up there.
 */
#include "net/loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include <uv.h>

#include "core/util.h"

_Static_assert(UV_ENOENT == -ENOENT, "libuv must use negated errno on Linux");

struct loop_item {
	net_loop_fn fn;
	void *arg;
	struct loop_item *next;
};

struct net_loop {
	uv_loop_t uv;
	uv_async_t wake;
	pthread_t thread;
	bool started;
	bool joined;
	pthread_mutex_t lock; /* protects head, tail, closed */
	struct loop_item *head;
	struct loop_item *tail;
	bool closed; /* no more posts accepted */
};

static struct loop_item *take_all(struct net_loop *l)
{
	struct loop_item *it;

	pthread_mutex_lock(&l->lock);
	it = l->head;
	l->head = NULL;
	l->tail = NULL;
	pthread_mutex_unlock(&l->lock);
	return it;
}

static void on_wake(uv_async_t *h)
{
	struct net_loop *l = dfsr_container_of(h, struct net_loop, wake);
	struct loop_item *it = take_all(l);

	while (it) {
		struct loop_item *next = it->next;

		it->fn(l, it->arg);
		free(it);
		it = next;
	}
}

int net_loop_new(struct net_loop **out)
{
	struct net_loop *l = calloc(1, sizeof(*l));
	int rc;

	if (!l)
		return -ENOMEM;
	/* libuv's thread pool (the sessions' disk jobs) is made at its first use, with
	 * UV_THREADPOOL_SIZE threads, 4 by default. Those jobs mostly wait for the disk (an
	 * fsync per installed file), not for a CPU: more threads keep more installs going. */
	setenv("UV_THREADPOOL_SIZE", NET_LOOP_POOL_THREADS, 0);
	rc = uv_loop_init(&l->uv);
	if (rc < 0)
		goto out_free;
	rc = uv_async_init(&l->uv, &l->wake, on_wake);
	if (rc < 0)
		goto out_close_loop;
	pthread_mutex_init(&l->lock, NULL);
	*out = l;
	return 0;
out_close_loop:
	uv_loop_close(&l->uv);
out_free:
	free(l);
	return rc;
}

static void *loop_main(void *arg)
{
	struct net_loop *l = arg;

	uv_run(&l->uv, UV_RUN_DEFAULT);
	return NULL;
}

int net_loop_start(struct net_loop *l)
{
	sigset_t all, old;
	int rc;

	if (l->started)
		return -EALREADY;
	/* The loop thread takes no signals: main() sigwait()s for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&l->thread, NULL, loop_main, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		l->started = true;
	return rc;
}

int net_loop_post(struct net_loop *l, net_loop_fn fn, void *arg)
{
	struct loop_item *it = calloc(1, sizeof(*it));

	if (!it)
		return -ENOMEM;
	it->fn = fn;
	it->arg = arg;
	pthread_mutex_lock(&l->lock);
	if (l->closed) {
		pthread_mutex_unlock(&l->lock);
		free(it);
		return -ESHUTDOWN;
	}
	if (l->tail)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
	/* Under the lock, so that the stop item cannot close the handle in between. */
	uv_async_send(&l->wake);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

struct loop_call {
	net_loop_fn fn;
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void run_call(struct net_loop *l, void *arg)
{
	struct loop_call *c = arg;

	c->fn(l, c->arg);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int net_loop_call(struct net_loop *l, net_loop_fn fn, void *arg)
{
	struct loop_call c = { .fn = fn, .arg = arg };
	int rc;

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	rc = net_loop_post(l, run_call, &c);
	if (rc == 0) {
		pthread_mutex_lock(&c.lock);
		while (!c.done)
			pthread_cond_wait(&c.cond, &c.lock);
		pthread_mutex_unlock(&c.lock);
	}
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
	return rc;
}

struct uv_loop_s *net_loop_uv(struct net_loop *l)
{
	return &l->uv;
}

bool net_loop_is_current(const struct net_loop *l)
{
	return l->started && pthread_equal(pthread_self(), l->thread);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* The stop item: everything still open is closed; uv_run then ends by itself. */
static void stop_now(struct net_loop *l)
{
	struct loop_item *it;

	pthread_mutex_lock(&l->lock);
	l->closed = true;
	it = l->head;
	l->head = NULL;
	l->tail = NULL;
	pthread_mutex_unlock(&l->lock);
	/* Items posted before the stop still run: their posters rely on them. */
	while (it) {
		struct loop_item *next = it->next;

		it->fn(l, it->arg);
		free(it);
		it = next;
	}
	uv_walk(&l->uv, close_walk, NULL);
}

static void stop_item(struct net_loop *l, void *arg)
{
	(void)arg;
	stop_now(l);
}

void net_loop_stop(struct net_loop *l)
{
	if (l->joined)
		return;
	if (!l->started) {
		/* Never ran: close and drain on this thread. */
		on_wake(&l->wake);
		stop_now(l);
		uv_run(&l->uv, UV_RUN_DEFAULT);
		l->joined = true;
		return;
	}
	if (net_loop_post(l, stop_item, NULL) < 0)
		return;
	pthread_join(l->thread, NULL);
	l->joined = true;
}

void net_loop_shutdown(void)
{
	uv_library_shutdown();
}

void net_loop_free(struct net_loop *l)
{
	int rc;

	if (!l)
		return;
	net_loop_stop(l);
	rc = uv_loop_close(&l->uv);
	/* A handle left open is a bug in its owner: fail loudly in debug builds. */
	if (rc != 0)
		abort();
	pthread_mutex_destroy(&l->lock);
	free(l);
}
