/*
 * test_control.c - the loop thread and the control socket, over a real unix socket in a
 * temporary directory: round trip, error replies, the after-reply hook, a stale socket
 * file, an overlong request, stopping while a handler runs, and a clean loop shutdown
 * (net_loop_free() aborts if a handle was left open; ASan reports any leak).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "core/util.h"
#include "net/control.h"
#include "net/loop.h"

struct fixture {
	char dir[64];
	char path[128];
	struct net_loop *loop;
	struct net_control *ctl;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool in_handler;
	bool release;
	int after_calls;
	int after_what;
};

static int handle(void *arg, const char *req, struct dfsr_buf *reply)
{
	struct fixture *f = arg;

	if (strcmp(req, "fail") == 0)
		return -ENOSPC;
	if (strcmp(req, "stop") == 0) {
		dfsr_buf_addf(reply, "ok\nstopping\n");
		return 7;
	}
	if (strcmp(req, "block") == 0) {
		pthread_mutex_lock(&f->lock);
		f->in_handler = true;
		pthread_cond_broadcast(&f->cond);
		while (!f->release)
			pthread_cond_wait(&f->cond, &f->lock);
		pthread_mutex_unlock(&f->lock);
	}
	return dfsr_buf_addf(reply, "ok\ngot:%s\n", req);
}

static void after(void *arg, int what)
{
	struct fixture *f = arg;

	pthread_mutex_lock(&f->lock);
	f->after_calls++;
	f->after_what = what;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/dfsr-ctl-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/run/sub/m.sock", f->dir);
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	assert_int_equal(net_loop_new(&f->loop), 0);
	assert_int_equal(net_loop_start(f->loop), 0);
	*state = f;
	return 0;
}

static int start_server(struct fixture *f)
{
	struct net_control_opts o = { .path = f->path, .handle = handle, .after = after, .arg = f };

	return net_control_start(f->loop, &o, &f->ctl);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	net_control_stop(f->ctl);
	net_loop_free(f->loop);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

static void round_trip(void **state)
{
	struct fixture *f = *state;
	struct dfsr_buf r;
	struct stat st;

	assert_int_equal(start_server(f), 0);
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	for (int i = 0; i < 3; i++) {
		dfsr_buf_init(&r);
		assert_int_equal(net_control_request(f->path, "status json", 5000, &r), 0);
		assert_string_equal(r.p, "got:status json\n");
		dfsr_buf_release(&r);
	}
}

static void error_reply(void **state)
{
	struct fixture *f = *state;
	struct dfsr_buf r;

	assert_int_equal(start_server(f), 0);
	dfsr_buf_init(&r);
	assert_int_equal(net_control_request(f->path, "fail", 5000, &r), -EREMOTEIO);
	assert_string_equal(r.p, dfsr_strerror(-ENOSPC));
	dfsr_buf_release(&r);
}

static void after_hook_runs_once_after_reply(void **state)
{
	struct fixture *f = *state;
	struct dfsr_buf r;
	int64_t deadline = dfsr_mono_ns() + 5000000000LL;

	assert_int_equal(start_server(f), 0);
	dfsr_buf_init(&r);
	assert_int_equal(net_control_request(f->path, "stop", 5000, &r), 0);
	assert_string_equal(r.p, "stopping\n");
	dfsr_buf_release(&r);
	pthread_mutex_lock(&f->lock);
	while (f->after_calls == 0 && dfsr_mono_ns() < deadline) {
		pthread_mutex_unlock(&f->lock);
		usleep(1000);
		pthread_mutex_lock(&f->lock);
	}
	assert_int_equal(f->after_calls, 1);
	assert_int_equal(f->after_what, 7);
	pthread_mutex_unlock(&f->lock);
}

static void not_running_and_stale_socket(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct dfsr_buf r;
	int fd;

	dfsr_buf_init(&r);
	assert_int_equal(net_control_request(f->path, "ping", 1000, &r), DFSR_ENOTRUNNING);
	/* A socket file nobody listens on, as a killed member leaves it. */
	assert_int_equal(start_server(f), 0);
	net_control_stop(f->ctl);
	f->ctl = NULL;
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	strcpy(sun.sun_path, f->path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	assert_int_equal(net_control_request(f->path, "ping", 1000, &r), DFSR_ENOTRUNNING);
	assert_int_equal(start_server(f), 0);
	assert_int_equal(net_control_request(f->path, "ping", 5000, &r), 0);
	assert_string_equal(r.p, "got:ping\n");
	dfsr_buf_release(&r);
}

static void overlong_request_is_refused(void **state)
{
	struct fixture *f = *state;
	char *big = malloc(NET_CONTROL_REQ_MAX + 100);
	struct dfsr_buf r;

	assert_non_null(big);
	memset(big, 'x', NET_CONTROL_REQ_MAX + 99);
	big[NET_CONTROL_REQ_MAX + 99] = '\0';
	assert_int_equal(start_server(f), 0);
	dfsr_buf_init(&r);
	assert_int_equal(net_control_request(f->path, big, 5000, &r), -EREMOTEIO);
	assert_string_equal(r.p, "request too long");
	dfsr_buf_release(&r);
	free(big);
}

static void *blocked_client(void *arg)
{
	struct fixture *f = arg;
	struct dfsr_buf r;
	intptr_t rc;

	dfsr_buf_init(&r);
	rc = net_control_request(f->path, "block", 10000, &r);
	dfsr_buf_release(&r);
	return (void *)rc;
}

static void stop_while_handler_runs(void **state)
{
	struct fixture *f = *state;
	pthread_t t;
	void *res;
	struct stat st;

	assert_int_equal(start_server(f), 0);
	assert_int_equal(pthread_create(&t, NULL, blocked_client, f), 0);
	pthread_mutex_lock(&f->lock);
	while (!f->in_handler)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
	net_control_stop(f->ctl);
	f->ctl = NULL;
	assert_int_equal(stat(f->path, &st), -1); /* the socket file is gone */
	/* The client sees the connection close without a reply. */
	assert_non_null(pthread_join(t, &res) == 0 ? &res : NULL);
	assert_int_equal((intptr_t)res, -EBADMSG);
	pthread_mutex_lock(&f->lock);
	f->release = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	/* teardown's net_loop_free() waits for the handler and frees the connection. */
}

struct order {
	int seen[200];
	int n;
	bool on_loop;
};

static struct order *order_of(void *arg, int *i)
{
	*i = (int)(((intptr_t)arg) & 0xff);
	return (struct order *)(void *)(((intptr_t)arg) & ~(intptr_t)0xff);
}

static void note(struct net_loop *l, void *arg)
{
	int i;
	struct order *o = order_of(arg, &i);

	o->on_loop = net_loop_is_current(l);
	o->seen[o->n++] = i;
}

static void loop_posts_run_in_order(void **state)
{
	struct fixture *f = *state;
	struct order *o = aligned_alloc(256, 256 * ((sizeof(*o) + 255) / 256));

	assert_non_null(o);
	memset(o, 0, sizeof(*o));
	for (int i = 0; i < 100; i++)
		assert_int_equal(net_loop_post(f->loop, note, (void *)((intptr_t)o | i)), 0);
	assert_int_equal(net_loop_call(f->loop, note, (void *)((intptr_t)o | 100)), 0);
	assert_int_equal(o->n, 101);
	for (int i = 0; i <= 100; i++)
		assert_int_equal(o->seen[i], i);
	assert_true(o->on_loop);
	assert_false(net_loop_is_current(f->loop));
	net_loop_stop(f->loop);
	assert_int_equal(net_loop_post(f->loop, note, o), -ESHUTDOWN);
	free(o);
}

static void bad_paths_fail_cleanly(void **state)
{
	struct fixture *f = *state;
	char file[160];
	FILE *fp;

	memset(f->path, 'a', sizeof(f->path) - 1);
	f->path[0] = '/';
	f->path[sizeof(f->path) - 1] = '\0';
	assert_int_equal(start_server(f), -ENAMETOOLONG);
	/* A regular file where the socket's directory should be. */
	snprintf(file, sizeof(file), "%s/plain", f->dir);
	fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	snprintf(f->path, sizeof(f->path), "%s/plain/m.sock", f->dir);
	assert_int_equal(start_server(f), -ENOTDIR);
	assert_null(f->ctl);
}

static void loop_never_started_stops(void **state)
{
	struct net_loop *l;

	(void)state;
	assert_int_equal(net_loop_new(&l), 0);
	net_loop_stop(l);
	net_loop_stop(l);
	assert_int_equal(net_loop_post(l, NULL, NULL), -ESHUTDOWN);
	net_loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(error_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(after_hook_runs_once_after_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(not_running_and_stale_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(overlong_request_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(stop_while_handler_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(loop_posts_run_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_paths_fail_cleanly, setup, teardown),
		cmocka_unit_test(loop_never_started_stops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
