/*
 * loop.h - the member's one libuv loop thread.
 *
 * Every libuv handle of the member (the control socket now; listener, dialers and peer
 * sessions later) belongs to one loop that runs on one thread. Other threads never touch a
 * handle: they hand the loop a function to run through net_loop_post(), which appends to a
 * mutex-protected inbox and wakes the loop with uv_async_send() (DESIGN.md, "Threads").
 *
 * Life cycle: net_loop_new() (init) -> net_loop_start() (spawns the thread) -> posts ->
 * net_loop_stop() (closes every handle still open with uv_walk, runs the loop dry, joins
 * the thread, and requires uv_loop_close() == 0) -> net_loop_free().
 * Modules that own handles close them before net_loop_stop() (their close callbacks free
 * their owners); the uv_walk in net_loop_stop() is a safety net.
 *
 * Thread: as stated per function.
 */
#ifndef DFSR_NET_LOOP_H
#define DFSR_NET_LOOP_H

#include <stdbool.h>

struct net_loop;
struct uv_loop_s;

/* A function run on the loop thread. */
typedef void (*net_loop_fn)(struct net_loop *l, void *arg);

/* libuv's thread pool size unless UV_THREADPOOL_SIZE says otherwise (net_loop_new()) */
#define NET_LOOP_POOL_THREADS "8"

/**
 * net_loop_new() - Create the loop and its inbox (no thread yet).
 * @out: receives the loop
 *
 * Sets UV_THREADPOOL_SIZE to NET_LOOP_POOL_THREADS if it is not set (the pool is made at
 * its first use), so call it before anything queues work on the pool.
 * Thread: init.
 * Return: 0, -ENOMEM, or an -errno from libuv.
 */
int net_loop_new(struct net_loop **out);

/**
 * net_loop_start() - Start the loop thread.
 * Thread: init.
 * Return: 0, -EAGAIN/-ENOMEM from pthread_create, -EALREADY if started.
 */
int net_loop_start(struct net_loop *l);

/**
 * net_loop_post() - Run @fn(@l, @arg) on the loop thread, soon, in posting order.
 * @fn:  function
 * @arg: its argument; the caller keeps ownership and must keep it alive until @fn ran
 *
 * Thread: any (also the loop thread itself).
 * Return: 0, -ENOMEM, -ESHUTDOWN once net_loop_stop() began (then @fn never runs).
 */
int net_loop_post(struct net_loop *l, net_loop_fn fn, void *arg);

/**
 * net_loop_call() - As net_loop_post(), and wait until @fn has returned.
 * Thread: any but the loop thread (it would wait for itself).
 * Return: as net_loop_post().
 */
int net_loop_call(struct net_loop *l, net_loop_fn fn, void *arg);

/* The libuv loop, for code running on the loop thread. Thread: loop. */
struct uv_loop_s *net_loop_uv(struct net_loop *l);

/* True on the loop thread. Thread: any. */
bool net_loop_is_current(const struct net_loop *l);

/**
 * net_loop_stop() - Close every handle, let pending requests (thread-pool work included)
 * finish, and join the thread. Posts after this fail with -ESHUTDOWN. Idempotent.
 * Thread: init (not the loop thread).
 */
void net_loop_stop(struct net_loop *l);

/* Stop if running, close the libuv loop, free. NULL-safe. Thread: init. */
void net_loop_free(struct net_loop *l);

/**
 * net_loop_shutdown() - The process is done with libuv: join libuv's thread pool
 * (uv_library_shutdown()). Its threads then end as threads do, so what they kept per
 * thread (the staging's zstd contexts, libxml2's and RocksDB's thread state) is freed by
 * their destructors before exit, instead of being left to exit() with the threads parked
 * (LeakSanitizer, which must stop every thread to scan it, reported those now and then
 * on a loaded machine). Call once, after every loop is freed; no libuv call may follow.
 * Thread: init.
 */
void net_loop_shutdown(void);

#endif
