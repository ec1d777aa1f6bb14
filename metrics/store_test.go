package metrics_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
)

func TestStoreUpAsksOnEveryScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	var up atomic.Bool
	up.Store(true)
	metrics.RegisterStoreUp(reg, up.Load)
	want := func(v string) {
		t.Helper()
		exp := "# HELP tiktok_auth_proxy_store_up 1 when the token store (file directory or Redis) answers, else 0.\n" +
			"# TYPE tiktok_auth_proxy_store_up gauge\ntiktok_auth_proxy_store_up " + v + "\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "tiktok_auth_proxy_store_up"); err != nil {
			t.Fatal(err)
		}
	}
	want("1")
	up.Store(false)
	want("0")
	up.Store(true)
	want("1")
}
