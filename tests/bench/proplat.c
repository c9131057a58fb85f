/*
 * proplat.c - propagation latency between two dfsr mounts, for tests/bench/initial-sync.
 *
 * Usage: proplat SRC_DIR DST_MOUNT_DIR DST_LOCAL_DIR NFILES SIZE [GAP_MS] [TIMEOUT_S]
 *
 * For each of NFILES files, one after the other: create SRC_DIR/pNNNNN, write SIZE bytes,
 * close it; the clock starts when close(2) returns. Then poll, every 0.2 ms, stat(2) of
 * the same name in DST_LOCAL_DIR (the partner's local path: where replication installs
 * it) and in DST_MOUNT_DIR (the partner's mount: what its users see), until each shows a
 * regular file of SIZE bytes. The two times are the "installed" and the "visible"
 * latencies. GAP_MS (default 10) of idle time separates two files, so that each one is
 * measured on its own and not as part of a burst; TIMEOUT_S (default 30) bounds the wait
 * for one file (then the program fails).
 *
 * Prints one line per percentile set, in milliseconds:
 *   installed n=N min=.. p50=.. p90=.. p99=.. max=.. mean=..
 *   visible   n=N min=.. p50=.. p90=.. p99=.. max=.. mean=..
 * and, with PROPLAT_RAW set to a file name, every (installed, visible) pair to that file.
 * Percentiles are nearest-rank: p99 of 200 samples is the 198th smallest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int has_file(const char *path, off_t size)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == size;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double rank(const double *sorted, unsigned long n, double p)
{
	unsigned long k = (unsigned long)ceil(p * (double)n);

	if (k < 1)
		k = 1;
	return sorted[k - 1];
}

static void report(const char *what, double *v, unsigned long n)
{
	double sum = 0;

	qsort(v, n, sizeof(*v), cmp_double);
	for (unsigned long i = 0; i < n; i++)
		sum += v[i];
	printf("%s n=%lu min=%.2f p50=%.2f p90=%.2f p99=%.2f max=%.2f mean=%.2f\n", what, n,
	       v[0] * 1e3, rank(v, n, 0.50) * 1e3, rank(v, n, 0.90) * 1e3, rank(v, n, 0.99) * 1e3,
	       v[n - 1] * 1e3, sum / (double)n * 1e3);
}

int main(int argc, char **argv)
{
	const char *src, *dmnt, *dloc, *raw = getenv("PROPLAT_RAW");
	unsigned long n, size, gap_ms = 10, timeout_s = 30;
	double *inst, *vis;
	char *data;
	FILE *rf = NULL;
	int rc = 1;

	if (argc < 6 || argc > 8) {
		fprintf(stderr,
			"usage: proplat SRC DST_MOUNT DST_LOCAL NFILES SIZE [GAP_MS] [TIMEOUT_S]\n");
		return 2;
	}
	src = argv[1];
	dmnt = argv[2];
	dloc = argv[3];
	n = strtoul(argv[4], NULL, 10);
	size = strtoul(argv[5], NULL, 10);
	if (argc >= 7)
		gap_ms = strtoul(argv[6], NULL, 10);
	if (argc >= 8)
		timeout_s = strtoul(argv[7], NULL, 10);
	if (!n || n > 1000000 || size > (64ul << 20) || !timeout_s) {
		fprintf(stderr, "proplat: bad arguments\n");
		return 2;
	}
	inst = calloc(n, sizeof(*inst));
	vis = calloc(n, sizeof(*vis));
	data = malloc(size ? size : 1);
	if (!inst || !vis || !data)
		goto out_free;
	for (unsigned long i = 0; i < size; i++)
		data[i] = (char)('a' + (i * 7 + 3) % 26);
	if (raw && !(rf = fopen(raw, "w"))) {
		fprintf(stderr, "proplat: %s: %s\n", raw, strerror(errno));
		goto out_free;
	}

	for (unsigned long i = 0; i < n; i++) {
		char sp[4096], mp[4096], lp[4096];
		double t0, t_inst = -1, t_vis = -1;
		int fd;

		snprintf(sp, sizeof(sp), "%s/p%05lu", src, i);
		snprintf(mp, sizeof(mp), "%s/p%05lu", dmnt, i);
		snprintf(lp, sizeof(lp), "%s/p%05lu", dloc, i);
		/* distinct content per file: the first bytes carry the index */
		snprintf(data, size < 16 ? size : 16, "%015lu", i);
		fd = open(sp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0) {
			fprintf(stderr, "proplat: create %s: %s\n", sp, strerror(errno));
			goto out_close;
		}
		if (size && write(fd, data, size) != (ssize_t)size) {
			fprintf(stderr, "proplat: write %s: %s\n", sp, strerror(errno));
			close(fd);
			goto out_close;
		}
		if (close(fd) < 0) {
			fprintf(stderr, "proplat: close %s: %s\n", sp, strerror(errno));
			goto out_close;
		}
		t0 = now_s();
		while (t_inst < 0 || t_vis < 0) {
			double t;

			if (t_inst < 0 && has_file(lp, (off_t)size))
				t_inst = now_s() - t0;
			if (t_vis < 0 && has_file(mp, (off_t)size))
				t_vis = now_s() - t0;
			t = now_s() - t0;
			if (t > (double)timeout_s) {
				fprintf(stderr, "proplat: %s not %s after %lu s\n", mp,
					t_inst < 0 ? "installed" : "visible in the mount",
					timeout_s);
				goto out_close;
			}
			if (t_inst < 0 || t_vis < 0)
				pause_us(200);
		}
		inst[i] = t_inst;
		vis[i] = t_vis;
		if (rf)
			fprintf(rf, "%lu %.3f %.3f\n", i, t_inst * 1e3, t_vis * 1e3);
		if (gap_ms)
			pause_us((long)gap_ms * 1000);
	}
	report("installed", inst, n);
	report("visible", vis, n);
	rc = 0;
out_close:
	if (rf)
		fclose(rf);
out_free:
	free(data);
	free(vis);
	free(inst);
	return rc;
}
