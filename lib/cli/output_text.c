/* output_text.c - `--output text`: the reply as tab-separated lines, as the
 * AWS CLI prints them, so that `cut -f` and `read` scripts keep working.
 *
 * TO BE WRITTEN: kerr_code cli_out_render_text(const json_t *doc, cli_out_buf *b)
 * (declared in output_internal.h). */
#include "cli/output_internal.h"
