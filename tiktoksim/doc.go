// Package tiktoksim is a local TikTok Business API simulator: the consent
// pages, the OAuth token endpoints of both credential kinds, a handful of
// API endpoints, and knobs to break any of them. Every test of the proxy
// runs against it, and `tiktok-auth-proxy simulate --listen ADDR` serves it
// for users' own offline tests.
//
// Like TikTok, it answers errors with HTTP 200 and a non-zero envelope
// code, every API path ends in "/", every envelope carries a request_id and
// every response an X-Tt-Logid header. A 4xx status means a wrong path or
// method.
//
// # Apps
//
// With no Options.Apps, any app_id is accepted with any non-empty secret
// and is granted DefaultAdvertisers, so a demo works with zero setup. With
// Apps, an unknown app_id gets 40113 and a wrong secret 40101.
//
// # TikTok endpoints
//
//	GET  /portal/auth?app_id&state&redirect_uri                   advertiser consent page
//	GET  /v2/auth/authorize/?client_key&scope&response_type=code&redirect_uri&state
//	                                                             tiktok_account consent page
//	     The page's form (button ids "authorize" and "cancel") posts back to
//	     the same path; Authorize redirects (302) to
//	     redirect_uri?auth_code=CODE&code=CODE&state=STATE, Cancel to
//	     redirect_uri?error=access_denied&error_description=...&state=STATE.
//	     Codes are single-use and live one hour.
//	POST /open_api/v1.3/oauth2/access_token/          {"app_id","secret","auth_code"}
//	POST /open_api/v1.3/oauth2/refresh_token/         {"app_id","secret","refresh_token","grant_type"}
//	POST /open_api/v1.3/tt_user/oauth2/token/         {"client_id","client_secret","grant_type","auth_code","redirect_uri"}
//	POST /open_api/v1.3/tt_user/oauth2/refresh_token/ {"client_id","client_secret","grant_type","refresh_token"}
//	POST /open_api/v1.3/oauth2/revoke_token/          {"app_id","secret","access_token"}
//
// An exchange or refresh returns a new access token, and, unless the access
// TTL is "no expiry", expires_in, a new refresh_token and
// refresh_token_expires_in. Refresh tokens rotate: the old one then gets
// 40107, as does any refresh of a grant without refresh token. An expired
// refresh token gets 40103, an unknown or used auth code 40110. A refresh
// leaves earlier access tokens of the grant valid until they expire.
//
// API endpoints, all checking the Access-Token header (missing 40104,
// unknown or revoked 40105, expired 40102, not granted the advertiser
// named in the request 40106) and echoing what they received:
//
//	GET  /open_api/v1.3/oauth2/advertiser/get/?app_id&secret    data.list[] of {advertiser_id, advertiser_name}
//	GET  /open_api/v1.3/advertiser/info/?advertiser_ids=["id"]  data.list[] of advertisers
//	GET  /open_api/v1.3/campaign/get/?advertiser_id             data.list[] of campaigns
//	POST /open_api/v1.3/campaign/create/  JSON {"advertiser_id",...}   data {campaign_id, advertiser_id, received}
//	GET  /open_api/v1.3/report/integrated/get/?advertiser_id | advertiser_ids=["id",...]
//	POST /open_api/v1.3/file/image/ad/upload/  multipart, field advertiser_id, file part image_file
//	                                           data {image_id, advertiser_id, file_name, size, sha256}
//	GET  /open_api/v1.3/sim/report/download/?advertiser_id&size=BYTES
//	     text/csv, streamed in flushed chunks without Content-Length; the
//	     bytes are those of NewReportReader(size).
//
// Any other path under /open_api/v1.3/ ending in "/" is a generic endpoint:
// it checks the token against advertiser_id / advertiser_ids found in the
// query or a JSON body and echoes them. A path without the trailing "/" is
// HTTP 404.
//
// # Control API (stable: e2e tests drive it from other processes)
//
// Control answers are plain JSON (not envelopes); a bad request is HTTP 400
// with {"error": "..."}. Durations are Go duration strings ("90s", "24h").
//
//	POST   /sim/code?app_id=X[&advertiser_ids=a,b][&kind=tiktok_account][&redirect_uri=U][&scope=S]
//	       → {"code": "..."}: an auth code without the consent page.
//	GET    /sim/requests → {"requests": [Request...]}, oldest first, last 1000
//	       requests to /open_api/.
//	DELETE /sim/requests → clears them.
//	GET    /sim/stats → {"apps": {"APP_ID": {"exchange_calls", "refresh_calls",
//	       "refresh_failures", "api_calls"}}}
//	POST   /sim/fault  Fault as JSON → {"faults": [...]}; GET lists; DELETE clears all.
//	POST   /sim/quota  Quota as JSON {"scope": "app"|"endpoint"|"advertiser",
//	       "app_id", "path", "limit": N, "window": "second"|"minute"|"day"}
//	       → {"quotas": [...]}: beyond limit calls in one calendar window of
//	       the simulator's clock, calls get 40100 (app), 40016 (endpoint)
//	       or 40133 (advertiser, as named in the query), with a message
//	       naming the window. GET lists; DELETE clears quotas and counts.
//	GET    /sim/persecond?app_id=X → {"app_id", "seconds": [{"unix", "calls"}]}:
//	       the app's API calls in each second (last hour), refused ones
//	       included: what TikTok's per-second quota sees. DELETE clears it.
//	POST   /sim/revoke?app_id=X | ?access_token=T → {"revoked": N}: the grants'
//	       access tokens then get 40105 and their refresh tokens 40107.
//	GET    /sim/config, POST /sim/config {"access_ttl": "1h", "refresh_ttl": "720h"}
//	       → the current TTLs; "0s" access TTL means no expiry (long-lived
//	       tokens without refresh token). Applies to grants issued afterwards.
//	POST   /sim/clock {"advance": "25h"} → {"now": RFC 3339}: moves the
//	       simulator's clock forward, to expire tokens without waiting.
//	GET    /sim/grants → {"grants": [Grant...]} with current tokens.
//	GET    /sim/issued → {"access_tokens": [...], "refresh_tokens": [...],
//	       "auth_codes": [...]}: every one ever issued, rotated or spent ones
//	       included, oldest first.
//	GET    /sim/inflight → {"requests": [Request...]}: requests to /open_api/
//	       being served now (recorded in /sim/requests once answered), e.g.
//	       one waiting on a latency fault.
//
// A recorded Request carries response_bytes (body bytes written) and
// client_gone: the peer hung up before a stream or an injected latency
// ended, so a test can tell that a proxy cancelled its upstream call.
//
// Each control has a Go method on *Server for in-process tests.
package tiktoksim
