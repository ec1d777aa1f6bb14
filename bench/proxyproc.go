package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/filestore"
)

// credentialName is the credential every load shape uses.
const credentialName = "main"

// proxyProc is a running `tiktok-auth-proxy serve` with its files.
type proxyProc struct {
	*child
	url, adminURL string
}

// proxySetup is what a started proxy varies.
type proxySetup struct {
	// credentials is how many are configured: main and filler ones, each
	// with its own advertiser and a long-lived token in the store.
	credentials int
	// expired seeds main with an expired, refreshable token instead, so
	// the first requests wait for one refresh (the stampede).
	expired bool
	// fdLimit, when not 0, is the proxy's RLIMIT_NOFILE, soft and hard
	// (set by the shell that starts it, so Go cannot raise it).
	fdLimit int
}

// startProxy writes a config in dir wired to the upstream, seeds the
// store, starts bin with it and waits until /readyz answers 200. Metrics,
// breaker, selection and the access log (JSON, info, drained by the bench)
// are at their defaults.
func startProxy(ctx context.Context, bin, dir, upstreamURL string, s proxySetup) (*proxyProc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	storePath := filepath.Join(dir, "tokens.json")
	var creds strings.Builder
	for i := range s.credentials {
		name, adv := credential(i)
		fmt.Fprintf(&creds, "  - name: %s\n    app_id: %q\n    app_secret: bench-secret-%d\n    advertiser_ids: [%q]\n", name, appID, i, adv)
	}
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
upstream:
  base_url: %s
store:
  path: %s
log:
  level: info
  format: json
credentials:
%s`, listen, admin, upstreamURL, storePath, creds.String())
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := seedStore(ctx, storePath, s); err != nil {
		return nil, err
	}
	path, args := bin, []string{"serve", "--config", cfgPath}
	if s.fdLimit > 0 {
		path, args = "/bin/sh", append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, s.fdLimit), bin}, args...)
	}
	c, err := startChild(path, args, nil)
	if err != nil {
		return nil, err
	}
	p := &proxyProc{child: c, url: "http://" + listen, adminURL: "http://" + admin}
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return p, nil
}

// credential is the name and advertiser of the i-th configured credential.
func credential(i int) (name, advertiser string) {
	if i == 0 {
		return credentialName, advertiserID
	}
	return fmt.Sprintf("filler%02d", i), fmt.Sprintf("70200000000000000%02d", i)
}

// seedStore writes every credential's grant into the file store, as an
// authorization would have.
func seedStore(ctx context.Context, path string, s proxySetup) error {
	st, err := filestore.Open(path, nil)
	if err != nil {
		return fmt.Errorf("bench: store: %w", err)
	}
	defer st.Close()
	now := time.Now()
	for i := range s.credentials {
		name, adv := credential(i)
		rec := &tokens.Record{
			Credential:   name,
			AccessToken:  longLivedToken,
			Advertisers:  []tokens.Advertiser{{ID: adv, Name: "bench"}},
			Scopes:       []string{"1"},
			AuthorizedAt: now.Add(-time.Hour),
		}
		if i == 0 && s.expired {
			rec.AccessToken = staleToken
			rec.AccessExpiresAt = now.Add(-time.Second)
			rec.RefreshToken = "bench-refresh-1"
			rec.RefreshExpiresAt = now.Add(365 * 24 * time.Hour)
			rec.AuthorizedAt = now.Add(-24 * time.Hour)
		}
		if err := st.Put(ctx, rec, 0); err != nil {
			return fmt.Errorf("bench: store: %w", err)
		}
	}
	return nil
}

// waitReady polls /readyz until it answers 200.
func (p *proxyProc) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := client.Get(p.adminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("bench: proxy exited: %s", p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("bench: proxy not ready within %v: %s", timeout, p.out.String())
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
