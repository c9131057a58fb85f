/*
 * fuzz_wire.c - libFuzzer harness for the replication messages (net/wire.proto) as a
 * receiver checks them before use (net_session_check_msg(): protobuf framing, then ids,
 * counts, knowledge vectors, records, xattrs, link targets and chunk lists). Any bytes must
 * be refused with -EBADMSG / -EPROTONOSUPPORT or pass, without a crash, a leak or undefined
 * behaviour.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "net/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int rc = net_session_check_msg(data, size);

	if (rc != 0 && rc != -EBADMSG && rc != -EPROTONOSUPPORT && rc != -ENOMEM)
		abort();
	return 0;
}
