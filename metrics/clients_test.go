package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClientBoundReadOnEveryScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := &fakeBound{held: 3, limit: 704}
	RegisterClientBound(reg, b)
	names := []string{"tiktok_auth_proxy_client_connections", "tiktok_auth_proxy_client_connections_limit",
		"tiktok_auth_proxy_client_accepts_waited_total"}
	want := func(held, limit, waited string) {
		t.Helper()
		exp := `# HELP tiktok_auth_proxy_client_accepts_waited_total Times a listener found the bound full (its connections, and the slot each other listener's idle accept holds) and stopped accepting until a client connection closed; clients that connect meanwhile wait in the kernel's accept queue (client_accept_queue).
# TYPE tiktok_auth_proxy_client_accepts_waited_total counter
tiktok_auth_proxy_client_accepts_waited_total ` + waited + `
# HELP tiktok_auth_proxy_client_connections Client connections the proxy and forward-proxy listeners hold now, idle keep-alive ones included.
# TYPE tiktok_auth_proxy_client_connections gauge
tiktok_auth_proxy_client_connections ` + held + `
# HELP tiktok_auth_proxy_client_connections_limit Most client connections the proxy and forward-proxy listeners hold at once, together (from the file-descriptor and container memory limits).
# TYPE tiktok_auth_proxy_client_connections_limit gauge
tiktok_auth_proxy_client_connections_limit ` + limit + `
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), names...); err != nil {
			t.Fatal(err)
		}
	}
	want("3", "704", "0")
	b.held, b.waited = 704, 12
	want("704", "704", "12")
}

// client_accept_queue is read on every scrape, and absent when the bound
// cannot read the queues (a gauge of 0 would say nobody waits).
func TestClientAcceptQueue(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := &fakeBound{limit: 704, queued: 0}
	RegisterClientBound(reg, b)
	const name = "tiktok_auth_proxy_client_accept_queue"
	want := func(value string) {
		t.Helper()
		exp := ""
		if value != "" {
			exp = `# HELP tiktok_auth_proxy_client_accept_queue Clients connected and waiting in the proxy and forward-proxy listeners' accept queues (the kernel's) for the proxy to accept them: above 0 while client_connections is at client_connections_limit, the bound holds them back. Absent where it cannot be read (not Linux).
# TYPE tiktok_auth_proxy_client_accept_queue gauge
tiktok_auth_proxy_client_accept_queue ` + value + `
`
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), name); err != nil {
			t.Fatal(err)
		}
	}
	want("0")
	b.queued = 37
	want("37")
	b.queued = -1 // cannot be read
	want("")
}
