package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// hostList is a repeatable --host flag.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	if v == "" || strings.ContainsAny(v, "/: ") {
		return fmt.Errorf("%q is not a host name", v)
	}
	*h = append(*h, strings.ToLower(v))
	return nil
}

func runCA(_ context.Context, args []string, s stdio) error {
	fs := newFlags("ca", "--out DIR [--host NAME]...", s.out)
	out := fs.String("out", "", "directory for ca.crt and ca.key (created 0700 if missing)")
	var hosts hostList
	fs.Var(&hosts, "host", "host the CA may sign for (repeatable); default: "+strings.Join(config.DefaultForwardHosts(), ", "))
	if err := parseFlags(fs, args); err != nil {
		return helpOr(fs, err)
	}
	if *out == "" {
		return usagef("ca: --out is required")
	}
	if len(hosts) == 0 {
		hosts = config.DefaultForwardHosts()
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("ca: %s already exists; a CA is never overwritten (clients trust the old one): remove it first or choose another --out", f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ca: %w", err)
		}
	}
	certPEM, keyPEM, err := config.NewCA(hosts, time.Now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	// The key first: a certificate without its key is useless, and a
	// failure after the key leaves nothing behind.
	if err := writeNew(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(certFile, certPEM, 0o644); err != nil {
		_ = os.Remove(keyFile)
		return err
	}
	printCAUsage(s, certFile, keyFile, hosts)
	return nil
}

// writeNew creates file with b, failing if it exists (O_EXCL), so a CA
// created meanwhile by someone else is not overwritten either.
func writeNew(file string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(file)
		return fmt.Errorf("ca: write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(file)
		return fmt.Errorf("ca: write %s: %w", file, err)
	}
	return nil
}

func printCAUsage(s stdio, certFile, keyFile string, hosts []string) {
	const proxy = "http://127.0.0.1:3128"
	w := s.out
	fmt.Fprintf(w, "Created a CA for forward-proxy mode, valid %d years, for %s only:\n", int(config.CALifetime.Hours()/24/365), strings.Join(hosts, ", "))
	fmt.Fprintf(w, "  %s  certificate: give it to the clients\n", certFile)
	fmt.Fprintf(w, "  %s  private key (0600): keep it secret, anyone holding it can impersonate those hosts\n\n", keyFile)
	fmt.Fprintf(w, "In the config:\n  forward_proxy:\n    listen: 127.0.0.1:3128\n    ca_cert: %s\n    ca_key: %s\n\n", certFile, keyFile)
	fmt.Fprintln(w, "Make a client use the proxy and trust the CA:")
	fmt.Fprintf(w, "  curl             curl --proxy %s --cacert %s https://%s/open_api/v1.3/...\n", proxy, certFile, hosts[0])
	fmt.Fprintf(w, "                   (or export HTTPS_PROXY=%s CURL_CA_BUNDLE=%s)\n", proxy, certFile)
	fmt.Fprintf(w, "  Python requests  export HTTPS_PROXY=%s REQUESTS_CA_BUNDLE=%s\n", proxy, certFile)
	fmt.Fprintf(w, "  Node.js          export HTTPS_PROXY=%s NODE_USE_ENV_PROXY=1 NODE_EXTRA_CA_CERTS=%s\n", proxy, certFile)
	fmt.Fprintf(w, "  Go               export HTTPS_PROXY=%s SSL_CERT_FILE=%s\n", proxy, certFile)
	fmt.Fprintln(w, "CURL_CA_BUNDLE, REQUESTS_CA_BUNDLE and SSL_CERT_FILE replace the system's CA list for that process;")
	fmt.Fprintln(w, "NODE_EXTRA_CA_CERTS adds to it. With clients in the config, put the client token in the proxy URL:")
	fmt.Fprintf(w, "  HTTPS_PROXY=http://CLIENT:TOKEN@127.0.0.1:3128\n")
}
