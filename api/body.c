/*
 * body.c — a response's body and what it owns: bodies in parts, built (body.h) and
 * read (api_response_length, api_response_read), and api_response_release.
 */
#include "body.h"
#include "internal.h"
#include "job_json.h"
#include "json_check.h"
#include "pyjobd/base64.h"
#include "pyjobd/blob.h"

#include <stdlib.h>
#include <string.h>

static struct api_body_part *new_part(struct api__body *b)
{
    if (b->failed)
        return NULL;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        struct api_body_part *p = realloc(b->parts, cap * sizeof(*p));
        if (!p) {
            b->failed = 1;
            return NULL;
        }
        b->parts = p;
        b->cap = cap;
    }
    struct api_body_part *p = &b->parts[b->n++];
    memset(p, 0, sizeof(*p));
    return p;
}

void api__body_text(struct api__body *b, const char *text, size_t len)
{
    if (b->failed || !len)
        return;
    struct api_body_part *last = b->n ? &b->parts[b->n - 1] : NULL;
    if (last && last->kind == API_PART_TEXT) { /* one text part between blobs */
        char *t = realloc(last->text, last->len + len);
        if (!t) {
            b->failed = 1;
            return;
        }
        memcpy(t + last->len, text, len);
        last->text = t;
        last->len += len;
        return;
    }
    char *t = malloc(len);
    struct api_body_part *p = t ? new_part(b) : NULL;
    if (!p) {
        free(t);
        b->failed = 1;
        return;
    }
    memcpy(t, text, len);
    p->kind = API_PART_TEXT;
    p->text = t;
    p->len = len;
}

void api__body_blob(struct api__body *b, struct blob *blob, enum api_part_kind kind)
{
    if (!blob_len(blob))
        return;
    struct api_body_part *p = new_part(b);
    if (!p)
        return;
    p->kind = kind;
    p->blob = blob_ref(blob);
}

void api__body_job(struct api__body *b, const struct job_view *v, int with_result)
{
    json_t *head, *tail;
    char *text = NULL, *rest = NULL;
    if (api__job_json_halves(v, &head, &tail) == 0) {
        text = json_dumps(head, JSON_COMPACT);
        rest = json_dumps(tail, JSON_COMPACT);
        json_decref(head);
        json_decref(tail);
    }
    size_t len = text ? strlen(text) : 0, rlen = rest ? strlen(rest) : 0;
    if (len < 2 || text[len - 1] != '}' || rlen < 2 || rest[0] != '{') {
        free(text);
        free(rest);
        b->failed = 1;
        return;
    }
    api__body_text(b, text, len - 1); /* the object, still open */
    free(text);
    if (with_result && v->status == JOB_SUCCEEDED && v->result) {
        api__body_str(b, ",\"result\":\"");
        api__body_blob(b, v->result, API_PART_BASE64);
        api__body_str(b, "\"");
    }
    if (with_result && v->status == JOB_SUCCEEDED && v->result_json) {
        api__body_str(b, ",\"result_json\":");
        /* A worker's bytes: spliced in only when they are one JSON value. */
        if (api__json_check((const char *)blob_data(v->result_json), blob_len(v->result_json)))
            api__body_blob(b, v->result_json, API_PART_RAW);
        else
            api__body_str(b, "null");
    }
    if (rlen > 2) { /* the keys after the result, and the object's end */
        api__body_str(b, ",");
        api__body_text(b, rest + 1, rlen - 1);
    } else {
        api__body_str(b, "}");
    }
    free(rest);
}

void api__parts_free(struct api_body_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(parts[i].text);
        blob_unref(parts[i].blob);
    }
    free(parts);
}

void api_response_release(struct api_response *resp)
{
    free(resp->body);
    free(resp->location);
    api__wait_free(resp->wait);
    api__parts_free(resp->parts, resp->nparts);
    memset(resp, 0, sizeof(*resp));
}

void api__body_release(struct api__body *b)
{
    api__parts_free(b->parts, b->n);
    memset(b, 0, sizeof(*b));
}

void api__body_finish(struct api__body *b, struct api_response *resp, int status,
                      const char *content_type)
{
    if (b->failed) {
        api__body_release(b);
        api_problem(resp, 503, NULL, "out of memory; retry later");
        return;
    }
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    api__parts_free(resp->parts, resp->nparts);
    resp->status = status;
    resp->content_type = content_type;
    resp->parts = b->parts;
    resp->nparts = b->n;
    memset(b, 0, sizeof(*b));
}

/* --- reading ------------------------------------------------------------------------ */

static unsigned long long part_len(const struct api_body_part *p)
{
    if (p->kind == API_PART_TEXT)
        return p->len;
    size_t n = blob_len(p->blob);
    return p->kind == API_PART_RAW ? n : base64_encoded_len(n);
}

unsigned long long api_response_length(const struct api_response *resp)
{
    if (!resp->parts)
        return resp->body_len;
    unsigned long long n = 0;
    for (size_t i = 0; i < resp->nparts; i++)
        n += part_len(&resp->parts[i]);
    return n;
}

/* Bytes [off, off + max) of the base64 of data[0..n), into buf: how many. */
static size_t read_base64(const uint8_t *data, size_t n, unsigned long long off, char *buf,
                          size_t max)
{
    size_t done = 0;
    char quad[5];
    while (done < max) {
        unsigned long long group = off / 4;
        size_t in = (size_t)group * 3;
        if (in >= n)
            break;
        unsigned skip = (unsigned)(off % 4);
        if (!skip && max - done >= 4) {
            /* Whole groups straight into buf: as many as fit, from this one on. */
            size_t groups = (max - done) / 4, left = (n - in + 2) / 3;
            if (groups > left)
                groups = left;
            size_t bytes = groups * 3 < n - in ? groups * 3 : n - in;
            char *tmp = buf + done;
            /* base64_encode writes a NUL after the groups: encode all but the last
             * group in place, the last through quad. */
            if (groups > 1) {
                size_t head = (groups - 1) * 3;
                base64_encode(data + in, head, tmp);
                tmp += (groups - 1) * 4;
                in += head;
                bytes -= head;
            }
            base64_encode(data + in, bytes, quad);
            memcpy(tmp, quad, 4);
            done += groups * 4;
            off += groups * 4;
            continue;
        }
        size_t bytes = n - in < 3 ? n - in : 3;
        base64_encode(data + in, bytes, quad);
        size_t take = 4 - skip < max - done ? 4 - skip : max - done;
        memcpy(buf + done, quad + skip, take);
        done += take;
        off += take;
    }
    return done;
}

size_t api_response_read(const struct api_response *resp, struct api_body_cursor *c,
                         unsigned long long pos, char *buf, size_t max)
{
    if (!resp->parts) {
        if (pos >= resp->body_len)
            return 0;
        size_t n = resp->body_len - (size_t)pos < max ? resp->body_len - (size_t)pos : max;
        memcpy(buf, resp->body + pos, n);
        return n;
    }
    if (pos < c->start) /* backwards: start over */
        c->part = 0, c->start = 0;
    size_t done = 0;
    while (done < max && c->part < resp->nparts) {
        const struct api_body_part *p = &resp->parts[c->part];
        unsigned long long len = part_len(p);
        if (pos >= c->start + len) {
            c->start += len;
            c->part++;
            continue;
        }
        unsigned long long off = pos - c->start;
        size_t want = max - done, n;
        if (p->kind == API_PART_BASE64) {
            n = read_base64(blob_data(p->blob), blob_len(p->blob), off, buf + done, want);
        } else {
            const char *src = p->kind == API_PART_TEXT ? p->text : (const char *)blob_data(p->blob);
            n = len - off < want ? (size_t)(len - off) : want;
            memcpy(buf + done, src + off, n);
        }
        done += n;
        pos += n;
    }
    return done;
}
