package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
)

// demoConfig wires the proxy to the in-process simulator. The secret is the
// simulator's, not a real one.
const demoConfig = `# Written by 'tiktok-auth-proxy demo': the proxy wired to the bundled TikTok simulator.
listen: %s
admin_listen: %s
upstream:
  base_url: %s
oauth:
  redirect_url: %s/oauth/callback
tokens:
  refresh_before: %s
store:
  path: %s
log:
  level: info
  format: text
credentials:
  - name: demo
    description: Simulated agency ad accounts
    app_id: "7000000000000000001"
    app_secret: demo-simulator-secret
`

func runDemo(ctx context.Context, args []string, s stdio) error {
	fs := newFlags("demo", "[--listen ADDR] [--admin-listen ADDR]", s.out)
	listenAddr := fs.String("listen", "127.0.0.1:8080", "proxy listener")
	adminAddr := fs.String("admin-listen", "127.0.0.1:8081", "admin listener (setup page, metrics)")
	simAddr := fs.String("sim-listen", "127.0.0.1:0", "TikTok simulator listener")
	accessTTL := fs.Duration("access-ttl", 30*time.Minute, "lifetime of the simulator's access tokens (short, so refreshes show)")
	if err := parseFlags(fs, args); err != nil {
		return helpOr(fs, err)
	}
	simLn, err := listen("simulator", *simAddr)
	if err != nil {
		return err
	}
	sim := tiktoksim.New(tiktoksim.Options{AccessTTL: *accessTTL})
	defer sim.Close()
	simSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go simSrv.Serve(simLn)
	defer simSrv.Close()
	simURL := httpURL(simLn.Addr())

	dir, err := os.MkdirTemp("", "tiktok-auth-proxy-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	adminURL := "http://" + dialable(*adminAddr)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfgText := fmt.Sprintf(demoConfig, *listenAddr, *adminAddr, simURL, adminURL, (*accessTTL / 3).String(),
		filepath.Join(dir, "tokens.json"))
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := loadConfig(cfgPath, s)
	if err != nil {
		return err
	}
	a, err := newApp(ctx, cfg, newLogger(cfg.Log, s.err), nil)
	if err != nil {
		if errors.Is(err, errReported) {
			return err
		}
		return fmt.Errorf("demo: %w (is another proxy running? try --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:18081)", err)
	}
	proxyURL := httpURL(a.proxyLn.Addr())
	adminURL = httpURL(a.adminLn.Addr())
	fmt.Fprintf(s.out, `
tiktok-auth-proxy demo: everything runs on this machine. Ctrl-C stops it.

  TikTok simulator  %s
  Config and store  %s

  1. Open the setup page and click Authorize, then approve on the simulator's consent page:
       %s/authorize
  2. Call TikTok through the proxy, as your script would:
       curl '%s/open_api/v1.3/campaign/get/?advertiser_id=%s'
  3. Watch it:
       %s/metrics     tiktok-auth-proxy status --config %s

`, simURL, dir, adminURL, proxyURL, tiktoksim.DefaultAdvertisers[0].ID, adminURL, cfgPath)
	return a.Run(ctx)
}
