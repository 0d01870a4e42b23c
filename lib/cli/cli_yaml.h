/* cli_yaml.h - YAML text to a JSON value, for `kms --cli-input-yaml` and
 * for reading back the `--generate-cli-skeleton yaml-input` skeleton.
 *
 * Parsing is libyaml's; typing the plain scalars is done here, with the
 * YAML 1.1 rules of the safe loader the AWS CLI's tooling uses (PyYAML's
 * SafeLoader): `yes`/`no`/`on`/`off`/`true`/`false` in their three
 * spellings are booleans; `~`, `null` and an empty value are null; integers
 * may be decimal, `0x` hex, `0b` binary, `0`-led octal, with `_`
 * separators and `:` sexagesimal parts; a float needs a dot (`1e3` is a
 * string, `1.0e+3` a float); timestamps stay as their text (every consumer
 * here takes ISO 8601 text).  Quoted scalars are strings.  Tags `!!str`,
 * `!!int`, `!!float`, `!!bool`, `!!null`, `!!timestamp` and `!!binary`
 * (kept as its base64 text, whitespace removed) are honoured; other tags are
 * refused.  Mapping keys must be scalars and become their text; a repeated
 * key keeps its last value.
 *
 * The text is outside data, so it is bounded: CLI_YAML_MAX_INPUT bytes,
 * CLI_YAML_MAX_DEPTH nested collections, CLI_YAML_MAX_NODES nodes, and
 * aliases are refused outright (no billion laughs), as is more than one
 * document.  NaN and infinities are refused (JSON has no such numbers), as
 * are integers outside 64 bits. */
#ifndef KMSD_CLI_CLI_YAML_H
#define KMSD_CLI_CLI_YAML_H

#include <stddef.h>

#include <jansson.h>

#include "core/kerr.h"

#define CLI_YAML_MAX_INPUT (4u * 1024u * 1024u)
#define CLI_YAML_MAX_DEPTH 64u
#define CLI_YAML_MAX_NODES 200000u

/* Load `len` bytes of YAML `text` (need not be NUL-terminated).  On success
 * *out is a new reference the caller owns (json_decref): the document's
 * value, JSON null for an empty document.  On failure *out is NULL and `err`
 * holds KERR_VALIDATION with a message naming the line and column (or
 * KERR_INTERNAL when memory ran out). */
kerr_code cli_yaml_load(const char *text, size_t len, json_t **out, kerr *err);

#endif
