/*
 * filter.c - DFSR's file and subfolder filters.
 *
 * A filter is a comma-separated list of wildcard patterns ("~*, *.bak, *.tmp") matched
 * against a single name component, case-insensitively, as Windows DFSR does. Patterns are
 * stored lower-cased (ASCII only: the locale never changes what a filter means) and matched
 * with fnmatch(3) and FNM_CASEFOLD. FNM_NOESCAPE keeps '\' an ordinary character, as it is in
 * a DFSR filter; '/' can never occur in a component and so is refused in a pattern.
 *
 * Matching is O(patterns) per name; filters are short (a handful of patterns) and the
 * bound FILTER_MAX_PATTERNS keeps a hostile config from making every lookup slow.
 */
#include "core/filter.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Copies the pattern [s, s+len) lower-cased into f->pat[f->n]. */
static int add_pattern(struct filter *f, const char *s, size_t len)
{
	char *p;

	if (len == 0 || len > FILTER_MAX_PATTERN || memchr(s, '/', len) || memchr(s, '\0', len))
		return -EINVAL;
	if (f->n == FILTER_MAX_PATTERNS)
		return -E2BIG;
	p = malloc(len + 1);
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		p[i] = ascii_lower(s[i]);
	p[len] = '\0';
	f->pat[f->n++] = p;
	return 0;
}

static bool all_space(const char *s)
{
	for (; *s; s++)
		if (!is_space(*s))
			return false;
	return true;
}

int filter_build(struct filter *f, const char *text)
{
	const char *s = text;
	int rc = 0;

	f->pat = NULL;
	f->n = 0;
	if (!text || all_space(text))
		return 0;
	f->pat = calloc(FILTER_MAX_PATTERNS, sizeof(*f->pat));
	if (!f->pat)
		return -ENOMEM;
	for (;;) {
		const char *end = strchr(s, ',');
		const char *b = s, *e = end ? end : s + strlen(s);

		while (b < e && is_space(*b))
			b++;
		while (e > b && is_space(e[-1]))
			e--;
		rc = add_pattern(f, b, (size_t)(e - b));
		if (rc < 0 || !end)
			break;
		s = end + 1;
	}
	if (rc < 0)
		filter_release(f);
	return rc;
}

void filter_release(struct filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++)
		free(f->pat[i]);
	free(f->pat);
	f->pat = NULL;
	f->n = 0;
}

bool filter_match(const struct filter *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (fnmatch(f->pat[i], name, FNM_CASEFOLD | FNM_NOESCAPE) == 0)
			return true;
	return false;
}
