/*
 * chancost.c - the secure channel's CPU time per GiB, in-process: two net_channels
 * (net/channel.c) established in memory, 1 GiB of messages of one size sealed on one and
 * received by the other the way net/peer.c reads a socket (docs/performance.md, "What
 * limits the initial sync", 2026-12-07 late evening).
 *
 * Usage: chancost [MSG_BYTES]     (default 65576: a 64 KiB chunk and its Chunk header)
 *   Seals the messages 16 at a time, takes the output as one write would, and delivers it
 *   in pieces as reads would: into a 64 KiB read buffer, or, when a frame body at least
 *   16 KiB long is in progress, straight into the channel's buffer
 *   (net_channel_rx_space()); each piece is first copied with memcpy(), standing for the
 *   kernel's copy of a read. Every message is popped and freed. Prints the thread CPU time
 *   (clock_gettime(CLOCK_THREAD_CPUTIME_ID)) of sealing and of receiving.
 *
 * Built by hand against a build directory's libraries (not part of the build or of ctest),
 * e.g. for a Release build in build-release:
 *   cc -O2 -I. -o chancost tests/bench/chancost.c build-release/libdfsr_net.a \
 *      build-release/libdfsr_core.a build-release/libdfsr_proto.a \
 *      -lsodium -lcrypto -lprotobuf-c -lrocksdb -lzstd -luv -linih -lxml2 -lpthread
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "net/channel.h"

#define TOTAL     (1u << 30)
#define RBUF      (64u << 10) /* net/peer.c RBUF_LEN */
#define DIRECT    (16u << 10) /* net/peer.c RBUF_DIRECT_MIN */
#define PER_WRITE 16u

static double cpu_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static bool allow_all(void *arg, const uint8_t key[NET_CHANNEL_KEY_LEN])
{
	(void)arg;
	(void)key;
	return true;
}

static void deliver(struct net_channel *from, struct net_channel *to)
{
	size_t n;
	uint8_t *p = net_channel_out_detach(from, &n);

	if (p && net_channel_feed(to, p, n) != 0)
		abort();
	free(p);
}

/* Receive @n bytes of @w on @ch as net/peer.c would read them; pop and free everything. */
static void receive(struct net_channel *ch, const uint8_t *w, size_t n, uint8_t *rbuf)
{
	size_t off = 0, room, k, glen;
	uint8_t *space, *got;

	while (off < n) {
		space = net_channel_rx_space(ch, &room);
		if (space && room >= DIRECT) {
			k = n - off < room ? n - off : room;
			memcpy(space, w + off, k);
			if (net_channel_rx_commit(ch, k) != 0)
				abort();
		} else {
			k = n - off < RBUF ? n - off : RBUF;
			memcpy(rbuf, w + off, k);
			if (net_channel_feed(ch, rbuf, k) != 0)
				abort();
		}
		off += k;
		while (net_channel_pop(ch, &got, &glen) == 0)
			free(got);
	}
}

int main(int argc, char **argv)
{
	size_t len = argc > 1 ? strtoul(argv[1], NULL, 10) : 65576, nmsg, n;
	uint8_t sk_i[32], sk_r[32], pk_r[32], *msg, *rbuf, *w;
	struct net_channel *ini = NULL, *resp = NULL;
	double t0, t1, seal = 0, recv = 0;

	if (sodium_init() < 0 || len == 0 || len > NET_CHANNEL_MAX_MSG)
		return 2;
	randombytes_buf(sk_i, sizeof(sk_i));
	randombytes_buf(sk_r, sizeof(sk_r));
	crypto_scalarmult_base(pk_r, sk_r);
	if (net_channel_new(&(struct net_channel_opts){ .role = NET_CHANNEL_INITIATOR,
							.secret_key = sk_i,
							.peer_key = pk_r },
			    &ini) != 0 ||
	    net_channel_new(&(struct net_channel_opts){ .role = NET_CHANNEL_RESPONDER,
							.secret_key = sk_r,
							.allow = allow_all },
			    &resp) != 0)
		return 1;
	deliver(ini, resp);
	deliver(resp, ini);
	deliver(ini, resp);
	msg = malloc(len);
	rbuf = malloc(RBUF);
	if (!msg || !rbuf || net_channel_state(resp) != NET_CHANNEL_ESTABLISHED)
		return 1;
	randombytes_buf(msg, len);
	nmsg = TOTAL / len;
	for (size_t i = 0; i < nmsg; i += PER_WRITE) {
		t0 = cpu_s();
		for (size_t j = i; j < nmsg && j < i + PER_WRITE; j++)
			if (net_channel_seal(ini, msg, len) != 0)
				return 1;
		w = net_channel_out_detach(ini, &n);
		t1 = cpu_s();
		seal += t1 - t0;
		receive(resp, w, n, rbuf);
		free(w);
		recv += cpu_s() - t1;
	}
	printf("messages of %zu bytes (cipher %u): seal %.3f s, receive %.3f s CPU per GiB\n", len,
	       net_channel_cipher(resp), seal * TOTAL / ((double)nmsg * (double)len),
	       recv * TOTAL / ((double)nmsg * (double)len));
	net_channel_free(ini);
	net_channel_free(resp);
	free(msg);
	free(rbuf);
	return 0;
}
