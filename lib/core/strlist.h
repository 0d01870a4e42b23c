/* strlist.h - membership of a string in a fixed, NULL-terminated list.
 * Parsers of documents with a closed set of field names (credentials files,
 * policies) use it to reject unknown fields. */
#ifndef KMSD_CORE_STRLIST_H
#define KMSD_CORE_STRLIST_H

/* Nonzero when `s` equals one of the strings of `list` (NULL-terminated). */
int strlist_contains(const char *const *list, const char *s);

#endif
