/* xksp_server.h - the XKS front end: one HTTPS listener, many key stores.
 *
 * A request goes through the same steps in the same order every time, and
 * the first that fails answers it (docs/xks-proxy.md, "Request path"):
 *   1. framing refused by the HTTP layer         -> its 400/414
 *   2. the load-balancer probe (GET/HEAD ping_path) -> 200
 *   3. routing among the key stores' prefixes    -> 404 InvalidUriPathException, 405
 *   4. body larger than XKS_BODY_MAX             -> 501 UnsupportedOperationException
 *   5. SigV4 (service kms-xks-proxy, the store's credentials and region,
 *      5 minutes of skew)                        -> 401 AuthenticationFailedException
 *   6. the store's quota                         -> 429 ThrottlingException
 *   7. the body (xks_request_parse)              -> 400 / 501
 *   8. authorization rules (not for health)      -> 403 AccessDeniedException
 *   9. the backend (keys, crypto, health)        -> 200, or the backend's error
 * and ends with one log line: kmsRequestId, store, operation, key, outcome,
 * status, latency.
 *
 * Routing comes before authentication on purpose: a request for an unknown
 * prefix has no credentials to check, and KMS must see
 * InvalidUriPathException (a configuration problem), not a 401. */
#ifndef KMSD_XKSPROXY_XKSP_SERVER_H
#define KMSD_XKSPROXY_XKSP_SERVER_H

#include <stdint.h>

#include "core/kerr.h"
#include "http/http_server.h"
#include "xksproxy/xksp_backend.h"
#include "xksproxy/xksp_config.h"

#define XKSP_PROXY_VENDOR "kmsd"
#define XKSP_FLEET_SIZE 1

typedef struct xksp_proxy xksp_proxy;

/* Build a proxy for `cfg` (which must outlive it) whose key stores use
 * `backend`: each store's credentials, quota and an opened backend handle.
 * Nothing listens yet.  On failure (a backend that cannot open, bad
 * credentials) *out is NULL and err says which store and why. */
kerr_code xksp_proxy_new(const xksp_config *cfg, const xksp_backend *backend, xksp_proxy **out,
                         kerr *err);

/* Answer one request (the http_handler_fn of the server; tests and the fuzz
 * target call it directly).  `proxy` is an xksp_proxy. */
void xksp_proxy_handle(void *proxy, const http_request *req, http_response *resp);

/* Start the backends' background work and the HTTP(S) listener on
 * cfg->listen (TLS files read now; mTLS and the priority string applied).
 * KERR_VALIDATION naming the file or address on failure. */
kerr_code xksp_proxy_serve(xksp_proxy *p, kerr *err);

/* Rotate credentials without a restart or a dropped connection: each key
 * store of the proxy that `fresh` also has (same uri_prefix) takes fresh's
 * credentials, atomically, for the next request; requests already being
 * verified finish with the old ones.  Nothing else of `fresh` is applied
 * (stores added or removed, tokens, rules and quotas need a restart).  On
 * failure nothing changed.  *updated counts the stores that took new
 * credentials.  `fresh` may be freed afterwards. */
kerr_code xksp_proxy_update_credentials(xksp_proxy *p, const xksp_config *fresh, size_t *updated,
                                        kerr *err);

/* The port listened on (after xksp_proxy_serve), e.g. when cfg asked for 0. */
uint16_t xksp_proxy_port(const xksp_proxy *p);

/* Stop listening, let requests in flight finish (up to grace_ms), close the
 * backends and free everything.  NULL allowed. */
void xksp_proxy_free(xksp_proxy *p, unsigned grace_ms);

#endif
