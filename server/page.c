/* The chat page at GET /: server/page.html, compiled into the binary (the
 * Makefile writes it as the array below). It calls /v1/chat/completions
 * from the browser, so it needs nothing else from the server. */
#include <string.h>

#include "server.h"

extern const unsigned char g4_page_html[];
extern const unsigned long g4_page_html_len;

static int page(srv *S, http_req *r) {
    return reply_text(r, 200, "text/html; charset=utf-8", (const char *)g4_page_html, g4_page_html_len);
}

const route PAGE_ROUTES[] = {
    { "GET", "/", page },
    { "GET", "/index.html", page },
    { NULL, NULL, NULL },
};
