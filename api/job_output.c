/*
 * job_output.c — GET /v1/jobs/{id}/output: what the job wrote to stdout and stderr
 * (including C extensions and subprocesses writing to fds 1 and 2), the tail of at
 * most --max-output-bytes per stream. Bytes that are not UTF-8 become U+FFFD so
 * the answer is always valid JSON.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/pool.h"
#include "pyjobd/utf8.h"

/* A JSON string of the bytes, invalid UTF-8 replaced. New reference or NULL. */
static json_t *text(const struct blob *b)
{
    const unsigned char *s = blob_data(b);
    size_t n = blob_len(b);
    char *out = malloc(n * 3 + 1); /* each bad byte becomes 3 bytes of U+FFFD */
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(s + i, n - i);
        if (len) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    json_t *str = json_stringn_nocheck(out, o);
    free(out);
    return str;
}

void api__get_output(struct api *api, const char *id, struct api_response *resp)
{
    if (api__reject_bad_path_id(resp, id))
        return;
    struct job_output o;
    int rc = pool_job_output(api->pool, id, &o);
    if (rc < 0) {
        api__job_lookup_problem(api, resp, id, rc);
        return;
    }
    json_t *obj = json_pack("{s:o?, s:o?, s:I, s:I}", "stdout", text(o.out), "stderr", text(o.err),
                            "stdout_dropped_bytes", (json_int_t)o.out_dropped,
                            "stderr_dropped_bytes", (json_int_t)o.err_dropped);
    job_output_release(&o);
    api__respond_json(resp, 200, obj, "application/json");
}
