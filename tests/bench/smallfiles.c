/*
 * smallfiles.c - small-file metadata workload, for tests/bench/fs-overhead.
 *
 * Usage: smallfiles DIR NFILES SIZE [NDIRS] [MODE]
 *   MODE "all" (default): three timed phases over NFILES files of SIZE bytes spread over
 *        NDIRS subdirectories (default 20) of DIR:
 *          create  open(O_CREAT|O_EXCL) + write + close of every file
 *          stat    stat(2) of every file
 *          unlink  unlink(2) of every file (then the subdirectories are removed, untimed)
 *        and prints "create=S stat=S unlink=S files=N" (seconds).
 *   MODE "create": only the create phase, files kept (to generate a tree for the initial
 *        build measurement); prints "create=S files=N".
 *   MODE "stat", "unlink": only that phase, over the files a "create" run left (so that each
 *        phase can be measured on its own, e.g. under perf stat); print "stat=S files=N" or
 *        "unlink=S files=N"; "unlink" also removes the subdirectories.
 *
 * The directories are made before the clock starts: the phases measure per-file cost.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
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

static void path_of(char *buf, size_t len, const char *dir, unsigned long i, unsigned long ndirs)
{
	snprintf(buf, len, "%s/d%03lu/f%07lu", dir, i % ndirs, i);
}

static int die(const char *what, const char *path)
{
	fprintf(stderr, "smallfiles: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	unsigned long nfiles, size, ndirs = 20;
	const char *dir, *mode = "all";
	char path[4096];
	double t0, tc, ts, tu;
	char *data;

	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: smallfiles DIR NFILES SIZE [NDIRS] [all|create]\n");
		return 2;
	}
	dir = argv[1];
	nfiles = strtoul(argv[2], NULL, 10);
	size = strtoul(argv[3], NULL, 10);
	if (argc >= 5)
		ndirs = strtoul(argv[4], NULL, 10);
	if (argc == 6)
		mode = argv[5];
	if (!nfiles || !ndirs || size > (16ul << 20) ||
	    (strcmp(mode, "all") != 0 && strcmp(mode, "create") != 0 && strcmp(mode, "stat") != 0 &&
	     strcmp(mode, "unlink") != 0)) {
		fprintf(stderr, "smallfiles: bad arguments\n");
		return 2;
	}
	data = malloc(size ? size : 1);
	if (!data)
		return 1;
	for (unsigned long i = 0; i < size; i++)
		data[i] = (char)('a' + i % 26);
	for (unsigned long d = 0; d < ndirs; d++) {
		snprintf(path, sizeof(path), "%s/d%03lu", dir, d);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return die("mkdir", path);
	}

	tc = ts = 0;
	if (strcmp(mode, "stat") == 0 || strcmp(mode, "unlink") == 0)
		goto phase_stat;
	t0 = now_s();
	for (unsigned long i = 0; i < nfiles; i++) {
		int fd;

		path_of(path, sizeof(path), dir, i, ndirs);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			return die("create", path);
		if (size && write(fd, data, size) != (ssize_t)size)
			return die("write", path);
		if (close(fd) < 0)
			return die("close", path);
	}
	tc = now_s() - t0;
	if (strcmp(mode, "create") == 0) {
		printf("create=%.3f files=%lu\n", tc, nfiles);
		free(data);
		return 0;
	}

phase_stat:
	if (strcmp(mode, "unlink") == 0)
		goto phase_unlink;
	t0 = now_s();
	for (unsigned long i = 0; i < nfiles; i++) {
		struct stat st;

		path_of(path, sizeof(path), dir, i, ndirs);
		if (stat(path, &st) < 0)
			return die("stat", path);
		if ((unsigned long)st.st_size != size) {
			fprintf(stderr, "smallfiles: %s: size %jd, expected %lu\n", path,
				(intmax_t)st.st_size, size);
			return 1;
		}
	}
	ts = now_s() - t0;
	if (strcmp(mode, "stat") == 0) {
		printf("stat=%.3f files=%lu\n", ts, nfiles);
		free(data);
		return 0;
	}

phase_unlink:
	t0 = now_s();
	for (unsigned long i = 0; i < nfiles; i++) {
		path_of(path, sizeof(path), dir, i, ndirs);
		if (unlink(path) < 0)
			return die("unlink", path);
	}
	tu = now_s() - t0;
	for (unsigned long d = 0; d < ndirs; d++) {
		snprintf(path, sizeof(path), "%s/d%03lu", dir, d);
		if (rmdir(path) < 0)
			return die("rmdir", path);
	}
	if (strcmp(mode, "unlink") == 0)
		printf("unlink=%.3f files=%lu\n", tu, nfiles);
	else
		printf("create=%.3f stat=%.3f unlink=%.3f files=%lu\n", tc, ts, tu, nfiles);
	free(data);
	return 0;
}
