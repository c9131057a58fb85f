/*
 * event.c - stable event ids and the system log.
 *
 * core/events.def is an X-macro table; this file turns it into a sorted-by-id lookup table
 * and writes each event as one syslog line, "<id> <folder>: <fixed text> <details>", at the
 * table's level. journald keeps these as the member's system log; the folder event log that
 * `dfsr events` shows is stored by the journal, which calls event_emit() after storing.
 *
 * The only file-scope state is the log sink (STYLE rule 9): the syslog identity and whether
 * a copy goes to stderr, both set once by event_init() before any thread starts. syslog(3)
 * is thread-safe; the stderr copy is written with a single write(2) per line so lines from
 * different threads do not interleave.
 */
#include "core/event.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct event_def {
	int id;
	const char *name;
	int level;
	const char *text;
};

static const struct event_def event_table[] = {
#define DFSR_EVENT(id, name, level, text) { id, #name, level, text },
#include "core/events.def"
#undef DFSR_EVENT
};

/* The log sink: written once in event_init() before threads start, read-only afterwards. */
static char event_ident[32] = "dfsr";
static bool event_foreground;

void event_init(const char *ident, bool foreground)
{
	snprintf(event_ident, sizeof(event_ident), "%s", ident ? ident : "dfsr");
	event_foreground = foreground;
	openlog(event_ident, LOG_PID, LOG_DAEMON);
}

/* Linear: the table has a few dozen rows and events are not a hot path. */
static const struct event_def *event_find(int id)
{
	for (size_t i = 0; i < DFSR_ARRAY_SIZE(event_table); i++)
		if (event_table[i].id == id)
			return &event_table[i];
	return NULL;
}

const char *event_text(int id)
{
	const struct event_def *d = event_find(id);

	return d ? d->text : NULL;
}

const char *event_name(int id)
{
	const struct event_def *d = event_find(id);

	return d ? d->name : NULL;
}

int event_level(int id)
{
	const struct event_def *d = event_find(id);

	return d ? d->level : -1;
}

void event_vformat(char *buf, size_t len, enum dfsr_event ev, const char *fmt, va_list ap)
{
	const char *text = event_text((int)ev);
	char raw[EVENT_MSG_MAX];
	int n;

	if (!len)
		return;
	n = snprintf(buf, len, "%s", text ? text : "event");
	if (n < 0) {
		buf[0] = '\0';
		return;
	}
	if (!fmt || !*fmt || (size_t)n + 1 >= len)
		return;
	buf[n] = ' ';
	/* the details hold names: one line whatever they contain (dfsr_text_line()) */
	if (vsnprintf(raw, sizeof(raw), fmt, ap) <= 0)
		buf[n] = '\0'; /* no details after all: no trailing space */
	else
		dfsr_text_line(raw, buf + n + 1, len - (size_t)n - 1);
}

void event_emit(enum dfsr_event ev, const char *folder, const char *msg)
{
	int level = event_level((int)ev);
	char line[EVENT_MSG_MAX + 128];
	int n;

	if (level < 0)
		level = LOG_NOTICE;
	if (!folder || !*folder)
		folder = "-";
	syslog(level, "%d %s: %s", (int)ev, folder, msg);
	if (!event_foreground)
		return;
	n = snprintf(line, sizeof(line), "%s: %d %s: %s\n", event_ident, (int)ev, folder, msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	(void)dfsr_write_all(STDERR_FILENO, line, (size_t)n);
}

void event_log(enum dfsr_event ev, const char *fmt, ...)
{
	char msg[EVENT_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	event_vformat(msg, sizeof(msg), ev, fmt, ap);
	va_end(ap);
	event_emit(ev, NULL, msg);
}
