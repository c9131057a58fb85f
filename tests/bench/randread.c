/*
 * randread.c - random 4 KiB reads over one file, for tests/bench/fs-overhead.
 *
 * Usage: randread FILE COUNT [BLOCK]
 *
 * Reads COUNT blocks of BLOCK bytes (default 4096) at block-aligned offsets chosen by a
 * fixed-seed xorshift generator, so the mount and the native run read the same offsets in
 * the same order. pread(2) keeps the file offset out of it. Prints one line:
 *     reads=N bytes=B seconds=S mbps=X iops=Y
 * A C helper rather than python so that the interpreter's per-call overhead does not hide
 * the filesystem's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t next_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	uint64_t seed = 0x9E3779B97F4A7C15ULL, nblocks, count, block = 4096, total = 0;
	struct stat st;
	char *buf;
	double t0, t;
	int fd;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: randread FILE COUNT [BLOCK]\n");
		return 2;
	}
	count = strtoull(argv[2], NULL, 10);
	if (argc == 4)
		block = strtoull(argv[3], NULL, 10);
	if (!count || !block || block > (64u << 20)) {
		fprintf(stderr, "randread: bad COUNT or BLOCK\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "randread: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	nblocks = (uint64_t)st.st_size / block;
	if (!nblocks) {
		fprintf(stderr, "randread: %s: smaller than one block\n", argv[1]);
		return 1;
	}
	buf = aligned_alloc(4096, (block + 4095) / 4096 * 4096);
	if (!buf) {
		fprintf(stderr, "randread: out of memory\n");
		return 1;
	}
	t0 = now_s();
	for (uint64_t i = 0; i < count; i++) {
		off_t off = (off_t)((next_rand(&seed) % nblocks) * block);
		ssize_t n = pread(fd, buf, block, off);

		if (n < 0) {
			fprintf(stderr, "randread: pread: %s\n", strerror(errno));
			return 1;
		}
		if ((uint64_t)n != block) {
			fprintf(stderr, "randread: short read at %jd\n", (intmax_t)off);
			return 1;
		}
		total += (uint64_t)n;
	}
	t = now_s() - t0;
	printf("reads=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f mbps=%.1f iops=%.0f\n", count,
	       total, t, (double)total / 1e6 / t, (double)count / t);
	free(buf);
	close(fd);
	return 0;
}
