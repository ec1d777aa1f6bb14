package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// containerTools runs buildah and podman on a storage of the test's own
// (vfs: no overlay mount needed), so the test leaves no image behind and
// never meets another run's.
type containerTools struct {
	storage []string // global options both tools take
}

// The options that let podman run containers inside this kind of
// unprivileged container: crun refuses a hybrid cgroup v1/v2 host ("cgroups
// in hybrid mode not supported") where runc with cgroupfs works, and
// podman's default RLIMIT_NOFILE/RLIMIT_NPROC (1048576) exceed the hard
// limits here ("setrlimit ... operation not permitted"). Both are harmless
// on an ordinary host.
var (
	podmanGlobal = []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs"}
	podmanRun    = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
)

func newContainerTools(t *testing.T) *containerTools {
	t.Helper()
	for _, tool := range []string{"buildah", "podman", "runc", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/ensure-test-deps.sh (the image test is part of make test and is never skipped)", tool)
		}
	}
	dir := t.TempDir()
	ct := &containerTools{storage: []string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}}
	t.Cleanup(func() {
		// Containers first: their layers hold the image's.
		ct.run(t, 60*time.Second, "podman", "rm", "--all", "--force")
		ct.run(t, 60*time.Second, "podman", "rmi", "--all", "--force")
	})
	return ct
}

// run runs tool with the test storage and returns its stdout, stderr
// (where podman adds notices of its own) and exit code; both join the logs
// scanned for secrets.
func (ct *containerTools) run(t *testing.T, timeout time.Duration, tool string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{}, ct.storage...)
	if tool == "podman" {
		full = append(full, podmanGlobal...)
	}
	cmd := exec.CommandContext(ctx, tool, append(full, args...)...)
	return runScanned(t, ctx, cmd, timeout)
}

// must is run that fails the test on a non-zero exit and returns stdout.
func (ct *containerTools) must(t *testing.T, timeout time.Duration, tool string, args ...string) string {
	t.Helper()
	out, errOut, code := ct.run(t, timeout, tool, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d:\n%s%s", tool, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// logs is the container's output, stdout and stderr (serve logs there).
func (ct *containerTools) logs(t *testing.T, name string) string {
	t.Helper()
	out, errOut, _ := ct.run(t, 30*time.Second, "podman", "logs", name)
	return out + errOut
}

// readmeContainerConfig is the container config README.md shows: the yaml
// block that stores tokens on the image's volume.
func readmeContainerConfig(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "/var/lib/tiktok-auth-proxy/tokens.json") {
			return m[1]
		}
	}
	t.Fatal("README.md has no yaml block with store.path /var/lib/tiktok-auth-proxy/tokens.json")
	return ""
}

// `make image` builds the FROM-scratch image with buildah, and podman runs
// it: version; check on README's container config; serve as the non-root
// user on a read-only root filesystem, healthy by the image's own
// HEALTHCHECK; SIGTERM ends it with exit 0.
func TestContainerImage(t *testing.T) {
	ct := newContainerTools(t)
	const image = "localhost/tiktok-auth-proxy:e2e"

	// make image, as an operator runs it; MAKEFLAGS of an outer `make test`
	// must not reach the inner make.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mk := exec.CommandContext(ctx, "make", "-C", "..", "image", "IMAGE="+image, "BUILDAH=buildah "+strings.Join(ct.storage, " "))
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			mk.Env = append(mk.Env, kv)
		}
	}
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}

	var inspected []struct {
		Config struct {
			User       string
			Entrypoint []string
			Volumes    map[string]struct{}
		}
		Healthcheck struct{ Test []string }
	}
	if err := json.Unmarshal([]byte(ct.must(t, time.Minute, "podman", "image", "inspect", image)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	cfg, health := inspected[0].Config, inspected[0].Healthcheck
	if cfg.User != "65532:65532" || strings.Join(cfg.Entrypoint, " ") != "/usr/local/bin/tiktok-auth-proxy" ||
		strings.Join(health.Test, " ") != "CMD /usr/local/bin/tiktok-auth-proxy healthcheck --config /etc/tiktok-auth-proxy/config.yaml" {
		t.Errorf("image config: user %q, entrypoint %q, healthcheck %q", cfg.User, cfg.Entrypoint, health.Test)
	}
	if _, ok := cfg.Volumes["/var/lib/tiktok-auth-proxy"]; !ok {
		t.Errorf("image volumes %v lack /var/lib/tiktok-auth-proxy", cfg.Volumes)
	}

	runArgs := func(extra ...string) []string {
		return append(append([]string{"run", "--read-only", "--network", "none"}, podmanRun...), extra...)
	}
	if out := ct.must(t, time.Minute, "podman", runArgs("--rm", image, "version")...); !strings.HasPrefix(out, "tiktok-auth-proxy ") {
		t.Errorf("version in the image: %q", out)
	}

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(readmeContainerConfig(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The store's volume belongs to the image's user, as on a fresh named
	// volume; the test runs as root (podman here is rootful).
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65532, 65532); err != nil {
		t.Fatalf("chown the volume to the image's user 65532 (the test needs root, as rootful podman does): %v", err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	env := map[string]string{
		"ADMIN_TOKEN":       "e2e-image-admin-" + rand.Text(),
		"TOKENS_KEY":        base64.StdEncoding.EncodeToString(key),
		"ETL_CLIENT_TOKEN":  "e2e-image-client-" + rand.Text(),
		"TIKTOK_APP_SECRET": "e2e-image-secret-" + rand.Text(),
	}
	mounts := []string{"-v", cfgPath + ":/etc/tiktok-auth-proxy/config.yaml:ro"}
	for k, v := range env {
		rememberSecret(v)
		mounts = append(mounts, "-e", k+"="+v)
	}
	out := ct.must(t, time.Minute, "podman", runArgs(append(append([]string{"--rm"}, mounts...), image, "check", "--config", "/etc/tiktok-auth-proxy/config.yaml")...)...)
	if out != "config OK: 1 credential\n" {
		t.Errorf("check of README's container config in the image: %q", out)
	}

	// serve, the image's default command. The periodic health timer needs
	// systemd, absent here; the test runs the HEALTHCHECK itself.
	const name = "tiktok-auth-proxy-e2e"
	ct.must(t, time.Minute, "podman", runArgs(append(append([]string{"-d", "--name", name, "--health-interval", "disable",
		"-v", data + ":/var/lib/tiktok-auth-proxy"}, mounts...), image)...)...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, errOut, code := ct.run(t, 30*time.Second, "podman", "healthcheck", "run", name)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the image's HEALTHCHECK did not pass within 60s: exit %d %s%s\nserve's log:\n%s", code, out, errOut, ct.logs(t, name))
		}
	}
	if out := ct.must(t, 30*time.Second, "podman", "top", name, "user", "huser"); !regexp.MustCompile(`(?m)^nonroot\s+65532\s*$`).MatchString(out) {
		t.Errorf("serve does not run as nonroot (65532):\n%s", out)
	}
	if out := ct.must(t, 30*time.Second, "podman", "inspect", name, "--format", "{{.HostConfig.ReadonlyRootfs}}"); strings.TrimSpace(out) != "true" {
		t.Errorf("root filesystem read-only: %q", out)
	}
	// The binary in the image also reports the running server's view.
	out, errOut, code := ct.run(t, 30*time.Second, "podman", "exec", name, "/usr/local/bin/tiktok-auth-proxy", "status", "--config", "/etc/tiktok-auth-proxy/config.yaml")
	if code != 1 || !strings.HasPrefix(out, "source: running server at http://127.0.0.1:8081\n") || !strings.Contains(errOut, "main: not authorized") {
		t.Errorf("status in the container: exit %d:\n%s%s", code, out, errOut)
	}

	ct.must(t, 60*time.Second, "podman", "stop", "--time", "30", name)
	logs := ct.logs(t, name)
	if out := ct.must(t, 30*time.Second, "podman", "inspect", name, "--format", "{{.State.ExitCode}}"); strings.TrimSpace(out) != "0" {
		t.Errorf("serve's exit code after SIGTERM: %s\n%s", out, logs)
	}
	if !strings.Contains(logs, `"msg":"tiktok-auth-proxy serving"`) {
		t.Errorf("serve's log lacks its start line:\n%s", logs)
	}
}
