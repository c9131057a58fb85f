/*
 * event.h - event ids and the system log.
 *
 * Every line dfsr logs carries a stable id from core/events.def. This module formats the
 * line and sends it to syslog (journald on a systemd machine) as
 * "dfsr[PID]: <id> <folder>: <fixed text> <details>", and to stderr when the member runs in
 * the foreground. Persisting an event in a folder's event log (what `dfsr events` shows) is
 * the journal's job: journal_event() stores it and then calls event_emit().
 *
 * Thread: event_init() once in main before any thread starts; everything else any.
 */
#ifndef DFSR_CORE_EVENT_H
#define DFSR_CORE_EVENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#include "core/util.h"

enum dfsr_event {
#define DFSR_EVENT(id, name, level, text) EV_##name = id,
#include "core/events.def"
#undef DFSR_EVENT
};

#define EVENT_MSG_MAX 1024

/**
 * event_init() - Open the system log.
 * @ident:      syslog identity ("dfsr")
 * @foreground: also write each line to stderr
 *
 * Thread: init (the log sink is the one piece of file-scope state STYLE rule 9 allows).
 */
void event_init(const char *ident, bool foreground);

/* The table's fixed text, name ("CONFLICT_RESOLVED") and syslog level; NULL/-1 if unknown. */
const char *event_text(int id);
const char *event_name(int id);
int event_level(int id);

/**
 * event_format() - "<fixed text>[ <details>]" into @buf (truncated safely).
 * @buf: output
 * @len: size of @buf
 * @ev:  event
 * @fmt: printf format of the key=value details, or NULL
 */
void event_vformat(char *buf, size_t len, enum dfsr_event ev, const char *fmt, va_list ap)
	DFSR_PRINTF(4, 0);

/**
 * event_emit() - Send one formatted event line to syslog (and stderr in the foreground).
 * @ev:     event
 * @folder: folder name, or NULL for member-wide events ("-" is written)
 * @msg:    text from event_vformat()
 *
 * Thread: any.
 */
void event_emit(enum dfsr_event ev, const char *folder, const char *msg);

/* event_vformat() + event_emit() for events that belong to no folder's log. */
void event_log(enum dfsr_event ev, const char *fmt, ...) DFSR_PRINTF(2, 3);

#endif
