/*
 * problem.c — every answer's final form: JSON serialization of responses, RFC 9457
 * problem+json errors, the errno → HTTP status mapping and response cleanup.
 *
 * Problems use "type": "about:blank", so (RFC 9457 §4.2.1) the title is the
 * status's reason phrase and the detail carries what went wrong and how to fix it.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int api__status_from_errno(int err)
{
    switch (err) {
    case 0:
        return 200;
    case -EINVAL:
        return 400;
    case -ENOENT:
        return 404;
    case -EMSGSIZE:
        return 413;
    case -ESHUTDOWN:
    case -ENOMEM:
    case -EAGAIN:
        return 503;
    default:
        return 500;
    }
}

const char *api__reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/* Last resort when even building the error fails. */
static void respond_oom(struct api_response *resp)
{
    static const char body[] = "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
                               "\"status\":500,\"detail\":\"out of memory\"}\n";
    resp->status = 500;
    resp->content_type = "application/problem+json";
    resp->body = strdup(body);
    resp->body_len = resp->body ? sizeof(body) - 1 : 0;
}

void api__respond_json(struct api_response *resp, int status, json_t *obj, const char *content_type)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    size_t len = text ? strlen(text) : 0;
    char *body = text ? realloc(text, len + 2) : NULL;
    if (!body) {
        free(text);
        free(resp->body);
        resp->body = NULL;
        respond_oom(resp);
        return;
    }
    body[len] = '\n';
    body[len + 1] = '\0';
    free(resp->body);
    resp->status = status;
    resp->content_type = content_type;
    resp->body = body;
    resp->body_len = len + 1;
}

/* Details may quote client input; make sure they are valid UTF-8 for jansson. */
static json_t *string_lossy(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", s);
    for (unsigned char *p = (unsigned char *)buf; *p; p++)
        if (*p >= 0x80)
            *p = '?';
    return json_string(buf);
}

void api_problem(struct api_response *resp, int status, const char *title, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);

    free(resp->location);
    resp->location = NULL;
    json_t *obj = json_pack("{s:s, s:o?, s:i, s:o?}", "type", "about:blank", "title",
                            string_lossy(title ? title : api__reason_phrase(status)), "status",
                            status, "detail", string_lossy(detail));
    api__respond_json(resp, status, obj, "application/problem+json");
}

void api_response_release(struct api_response *resp)
{
    free(resp->body);
    free(resp->location);
    free(resp->wait);
    memset(resp, 0, sizeof(*resp));
}
