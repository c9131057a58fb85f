/*
 * filter.h - file and subfolder filters: comma-separated wildcard patterns matched against
 * one name component (not a path), case-insensitively as DFSR does ("~*, *.bak, *.tmp").
 *
 * A file whose name matches the file filter is not replicated; a directory whose name
 * matches the subfolder filter is not replicated, nor is anything below it.
 *
 * Thread: a built filter is immutable; filter_match() is safe from any thread.
 */
#ifndef DFSR_CORE_FILTER_H
#define DFSR_CORE_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#define FILTER_MAX_PATTERNS 256
#define FILTER_MAX_PATTERN  255

struct filter {
	char **pat; /* lower-cased fnmatch(3) patterns */
	size_t n;
};

/**
 * filter_build() - Parse "a, b, c" (spaces around commas ignored; empty list allowed).
 * @f:    storage; released with filter_release()
 * @text: the list
 *
 * Return: 0, -EINVAL for an empty pattern or one with '/' or over FILTER_MAX_PATTERN,
 *         -E2BIG past FILTER_MAX_PATTERNS, -ENOMEM. On failure @f is empty.
 */
int filter_build(struct filter *f, const char *text);
void filter_release(struct filter *f);

/* True if @name (one component) matches any pattern. */
bool filter_match(const struct filter *f, const char *name);

#endif
