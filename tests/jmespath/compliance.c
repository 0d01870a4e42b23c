/* compliance.c - runs the public JMESPath compliance suite against
 * lib/cli/jmespath.h.
 *
 * The suite (the JSON files of jmespath.test) is third-party text, so it is
 * not kept in this repository: the directory holding its files is the one
 * argument.  Each file is an array of groups
 * {given, cases: [{expression, result | error | bench}]}; a case passes when
 * the expression yields `result` (numbers compared by value, objects without
 * regard to key order) or fails with the named kind of `error`.  Benchmark
 * cases only have to compile and run without crashing.
 *
 * Prints one line per failing case and a summary "N cases, M failed"; exits
 * 0 only when at least one case ran and none failed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/jmespath.h"

/* Equality of an expected and an actual value as the suite means it. */
static int same(const json_t *a, const json_t *b) {
  if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
  if (json_typeof(a) != json_typeof(b)) return 0;
  switch (json_typeof(a)) {
    case JSON_STRING:
      return json_string_length(a) == json_string_length(b) &&
             memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY:
      if (json_array_size(a) != json_array_size(b)) return 0;
      for (size_t i = 0; i < json_array_size(a); i++)
        if (!same(json_array_get(a, i), json_array_get(b, i))) return 0;
      return 1;
    case JSON_OBJECT:
      if (json_object_size(a) != json_object_size(b)) return 0;
      for (void *it = json_object_iter((json_t *)a); it; it = json_object_iter_next((json_t *)a, it)) {
        const json_t *other = json_object_getn(b, json_object_iter_key(it), json_object_iter_key_len(it));
        if (!other || !same(json_object_iter_value(it), other)) return 0;
      }
      return 1;
    default: return 1;
  }
}

static void report(const char *file, size_t group, size_t index, const char *expr, const char *what,
                   const json_t *shown) {
  char *text = shown ? json_dumps(shown, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  printf("FAIL %s group %zu case %zu: %s: %s%s%s\n", file, group, index, expr, what, text ? " " : "",
         text ? text : "");
  free(text);
}

/* Run one case; returns 1 when it passed. */
static int run_case(const char *file, size_t group, size_t index, json_t *given, json_t *c) {
  const char *expr = json_string_value(json_object_get(c, "expression"));
  json_t *want = json_object_get(c, "result"), *got = NULL;
  const char *want_error = json_string_value(json_object_get(c, "error"));
  int bench = json_object_get(c, "bench") != NULL, passed = 0;
  jmes_expr *e = NULL;
  jmes_error err;
  char what[1200];
  if (!expr) {
    report(file, group, index, "?", "case without an expression", NULL);
    return 0;
  }
  if (jmes_compile(expr, &e, &err) == KERR_OK) jmes_search(e, given, &got, &err);
  jmes_free(e);
  if (bench) {
    passed = 1;
  } else if (want_error) {
    passed = !got && strcmp(jmes_error_kind_name(err.kind), want_error) == 0;
    if (!passed && got) {
      snprintf(what, sizeof what, "expected error %s, got", want_error);
      report(file, group, index, expr, what, got);
    } else if (!passed) {
      snprintf(what, sizeof what, "expected error %s, got %s (%s)", want_error,
               jmes_error_kind_name(err.kind), err.status.msg);
      report(file, group, index, expr, what, NULL);
    }
  } else if (!got) {
    snprintf(what, sizeof what, "error %s (%s), expected", jmes_error_kind_name(err.kind), err.status.msg);
    report(file, group, index, expr, what, want ? want : json_null());
  } else {
    passed = same(want ? want : json_null(), got);
    if (!passed) {
      char *text = json_dumps(want ? want : json_null(), JSON_ENCODE_ANY | JSON_COMPACT);
      snprintf(what, sizeof what, "expected %s, got", text ? text : "?");
      free(text);
      report(file, group, index, expr, what, got);
    }
  }
  json_decref(got);
  return passed;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
  DIR *dir;
  struct dirent *ent;
  char **names = NULL;
  size_t n_names = 0, cases = 0, failed = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR (a directory of compliance suite *.json files)\n", argv[0]);
    return 2;
  }
  dir = opendir(argv[1]);
  if (!dir) {
    perror(argv[1]);
    return 2;
  }
  while ((ent = readdir(dir)) != NULL) {
    size_t len = strlen(ent->d_name);
    char **grown;
    if (len < 6 || strcmp(ent->d_name + len - 5, ".json") != 0) continue;
    grown = realloc(names, (n_names + 1) * sizeof *names);
    if (!grown || !(grown[n_names] = strdup(ent->d_name))) {
      fprintf(stderr, "out of memory\n");
      return 2;
    }
    names = grown;
    n_names++;
  }
  closedir(dir);
  if (n_names > 1) qsort(names, n_names, sizeof *names, by_name);
  for (size_t f = 0; f < n_names; f++) {
    char path[4096];
    json_error_t jerr;
    json_t *doc;
    snprintf(path, sizeof path, "%s/%s", argv[1], names[f]);
    doc = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!json_is_array(doc)) {
      printf("FAIL %s: not a suite file (%s)\n", names[f], doc ? "not an array" : jerr.text);
      failed++;
      cases++;
    }
    for (size_t g = 0; json_is_array(doc) && g < json_array_size(doc); g++) {
      json_t *group = json_array_get(doc, g), *list = json_object_get(group, "cases");
      json_t *given = json_object_get(group, "given");
      for (size_t i = 0; i < json_array_size(list); i++) {
        cases++;
        if (!run_case(names[f], g, i, given ? given : json_null(), json_array_get(list, i))) failed++;
      }
    }
    json_decref(doc);
    free(names[f]);
  }
  free(names);
  printf("%zu cases, %zu failed\n", cases, failed);
  return cases > 0 && failed == 0 ? 0 : 1;
}
