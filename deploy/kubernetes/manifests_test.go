// Package kubernetes_test checks the Kubernetes examples against the
// program: each example is rendered with kustomize (kubectl kustomize, as
// kubectl apply -k would), every manifest parsed, the config in its
// ConfigMap run through the built binary's check, and the ports, probes,
// selectors and secret references compared with that config.
package kubernetes_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/stopbudget"
)

// binPath is the binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tiktok-auth-proxy-manifests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "tiktok-auth-proxy")
	build := exec.Command("go", "build", "-o", binPath, "../../cmd/tiktok-auth-proxy")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "manifests: build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// dummyEnv are stand-ins, valid in form, for the secrets the examples'
// configs read. A variable missing here fails the test, so a new secret in
// an example is noticed.
var dummyEnv = map[string]string{
	"ADMIN_TOKEN":       "dummy-admin-token-0123456789abcdef",
	"TOKENS_KEY":        base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
	"TIKTOK_APP_SECRET": "dummy-app-secret",
	"REDIS_PASSWORD":    "dummy-redis-password",
	"ETL_CLIENT_TOKEN":  "dummy-client-token-0123456789abcdef",
}

func TestExamples(t *testing.T) {
	for _, ex := range []struct {
		dir     string
		backend string
		kinds   []string // every kind the example must render, sorted, with repeats
	}{
		{"sidecar", "file", []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret"}},
		{"shared", "redis", []string{"ConfigMap", "Deployment", "Deployment", "NetworkPolicy", "NetworkPolicy",
			"PersistentVolumeClaim", "PodDisruptionBudget", "Secret", "Service", "Service"}},
	} {
		t.Run(ex.dir, func(t *testing.T) {
			objs := render(t, ex.dir)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.Kind)
			}
			slices.Sort(kinds)
			if !slices.Equal(kinds, ex.kinds) {
				t.Fatalf("rendered kinds %v, want %v", kinds, ex.kinds)
			}
			dep, ctr := proxyContainer(t, objs)
			cfgText := configOf(t, objs, dep, ctr)
			env := envOf(t, objs, ctr)
			runCheck(t, cfgText, env)
			cfg := parseConfig(t, cfgText, env)
			if cfg.Store.Backend != ex.backend {
				t.Errorf("store.backend %q, want %q", cfg.Store.Backend, ex.backend)
			}
			checkPorts(t, cfg, ctr)
			checkSelectors(t, objs)
			checkGracePeriods(t, objs)
			switch cfg.Store.Backend {
			case "file":
				checkTokenVolume(t, objs, dep, ctr, cfg.Store.Path)
			case "redis":
				redis := checkRedisService(t, objs, cfg.Store.Redis.Address)
				checkRedisStop(t, redis, dep)
				checkScrapeConfig(t, filepath.Join(ex.dir, "prometheus", "scrape-config.yaml"), dep, ctr)
			}
		})
	}
}

// object is the part of a manifest the checks read; fields of other kinds
// stay empty.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"` // ConfigMap; Secret (base64)
	Spec yaml.Node         `yaml:"spec"`
}

type deploymentSpec struct {
	Replicas int           `yaml:"replicas"`
	Selector labelSelector `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			// TerminationGracePeriodSeconds is nil when not set
			// (Kubernetes then gives 30 s).
			TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
			Containers                    []container `yaml:"containers"`
			Volumes                       []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
				PersistentVolumeClaim *struct {
					ClaimName string `yaml:"claimName"`
				} `yaml:"persistentVolumeClaim"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// portNumber resolves a port given by number or by the container's port name.
func (c container) portNumber(n yaml.Node) (int, bool) {
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p, true
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// render runs kustomize on a copy of the example in which secrets.env is
// its secrets.env.example, as the README tells operators to make it.
func render(t *testing.T, dir string) []object {
	t.Helper()
	tmp := t.TempDir()
	if err := os.CopyFS(tmp, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(dir, "secrets.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "secrets.env"), example, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("kubectl", "kustomize", tmp)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	var objs []object
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("parse rendered %s: %v", dir, err)
		}
		if o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("rendered %s: a document without kind or name", dir)
		}
		objs = append(objs, o)
	}
	return objs
}

func find(objs []object, kind, name string) *object {
	for i := range objs {
		if objs[i].Kind == kind && objs[i].Metadata.Name == name {
			return &objs[i]
		}
	}
	return nil
}

func decodeSpec[T any](t *testing.T, o object) T {
	t.Helper()
	var s T
	if err := o.Spec.Decode(&s); err != nil {
		t.Fatalf("%s %s: spec: %v", o.Kind, o.Metadata.Name, err)
	}
	return s
}

// proxyContainer is the container named tiktok-auth-proxy and its Deployment.
func proxyContainer(t *testing.T, objs []object) (deploymentSpec, container) {
	t.Helper()
	for _, o := range objs {
		if o.Kind != "Deployment" {
			continue
		}
		d := decodeSpec[deploymentSpec](t, o)
		for _, c := range d.Template.Spec.Containers {
			if c.Name == "tiktok-auth-proxy" {
				return d, c
			}
		}
	}
	t.Fatal("no Deployment has a container named tiktok-auth-proxy")
	return deploymentSpec{}, container{}
}

// configOf is the config.yaml of the ConfigMap mounted where the
// container's --config points.
func configOf(t *testing.T, objs []object, d deploymentSpec, c container) string {
	t.Helper()
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) || len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("container args %v, want serve --config FILE", c.Args)
	}
	file := c.Args[i+1]
	for _, m := range c.VolumeMounts {
		if path.Dir(file) != m.MountPath {
			continue
		}
		for _, v := range d.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			cm := find(objs, "ConfigMap", v.ConfigMap.Name)
			if cm == nil {
				t.Fatalf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			text, ok := cm.Data[path.Base(file)]
			if !ok {
				t.Fatalf("ConfigMap %s has no key %s", cm.Metadata.Name, path.Base(file))
			}
			return text
		}
	}
	t.Fatalf("no ConfigMap volume is mounted at %s", path.Dir(file))
	return ""
}

// envOf is the container's environment with each secret replaced by its
// dummy value, after checking the Secret it names has that key.
func envOf(t *testing.T, objs []object, c container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := find(objs, "Secret", ref.Name)
			if s == nil {
				t.Fatalf("env %s: no Secret %s", e.Name, ref.Name)
			}
			if _, ok := s.Data[ref.Key]; !ok {
				t.Fatalf("env %s: Secret %s has no key %s (add it to secrets.env.example)", e.Name, ref.Name, ref.Key)
			}
			v, ok := dummyEnv[e.Name]
			if !ok {
				t.Fatalf("env %s: no dummy value for it in this test", e.Name)
			}
			env[e.Name] = v
		case e.ValueFrom != nil:
			t.Fatalf("env %s: only secretKeyRef is understood by this test", e.Name)
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

// runCheck runs `tiktok-auth-proxy check` on the config with only the
// container's environment: an unset ${VAR} fails it.
func runCheck(t *testing.T, cfgText string, env map[string]string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "check", "--config", file)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "config OK") {
		t.Fatalf("check of the ConfigMap's config.yaml: %v\n%s", err, out)
	}
}

// parseConfig loads the config as the binary does, for its addresses.
func parseConfig(t *testing.T, cfgText string, env map[string]string) *config.Config {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Parse([]byte(cfgText), "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func port(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	return n
}

// checkPorts: the container declares listen's and admin_listen's ports as
// proxy and admin, and its probes ask the admin listener.
func checkPorts(t *testing.T, cfg *config.Config, c container) {
	t.Helper()
	want := map[string]int{"proxy": port(t, "listen", cfg.Listen), "admin": port(t, "admin_listen", cfg.AdminListen)}
	got := map[string]int{}
	for _, p := range c.Ports {
		got[p.Name] = p.ContainerPort
	}
	if !maps.Equal(got, want) {
		t.Errorf("container ports %v, want %v (listen %s, admin_listen %s)", got, want, cfg.Listen, cfg.AdminListen)
	}
	for _, pr := range []struct {
		name string
		p    *probe
		path string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("%s: missing or not httpGet", pr.name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s path %q, want %q", pr.name, pr.p.HTTPGet.Path, pr.path)
		}
		if n, ok := c.portNumber(pr.p.HTTPGet.Port); !ok || n != want["admin"] {
			t.Errorf("%s port %q is %d, want admin_listen's %d", pr.name, pr.p.HTTPGet.Port.Value, n, want["admin"])
		}
	}
	if net.ParseIP(hostOf(cfg.AdminListen)).IsLoopback() {
		t.Errorf("admin_listen %s is loopback: the kubelet's probes cannot reach it", cfg.AdminListen)
	}
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// pods are the Deployments' pod templates by Deployment name.
func pods(t *testing.T, objs []object) map[string]deploymentSpec {
	t.Helper()
	out := map[string]deploymentSpec{}
	for _, o := range objs {
		if o.Kind == "Deployment" {
			out[o.Metadata.Name] = decodeSpec[deploymentSpec](t, o)
		}
	}
	return out
}

// selected are the Deployments whose pods carry every label of sel.
func selected(ds map[string]deploymentSpec, sel map[string]string) []deploymentSpec {
	var out []deploymentSpec
	for _, name := range slices.Sorted(maps.Keys(ds)) {
		d := ds[name]
		match := len(sel) > 0
		for k, v := range sel {
			if d.Template.Metadata.Labels[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, d)
		}
	}
	return out
}

func hasPort(ds []deploymentSpec, p yaml.Node) bool {
	for _, d := range ds {
		for _, c := range d.Template.Spec.Containers {
			if _, ok := c.portNumber(p); ok {
				return true
			}
		}
	}
	return false
}

// checkSelectors: every Deployment selects its own pods; every Service,
// PodDisruptionBudget and NetworkPolicy selects some pods, and the ports it
// names are theirs.
func checkSelectors(t *testing.T, objs []object) {
	t.Helper()
	ds := pods(t, objs)
	for name, d := range ds {
		if len(selected(map[string]deploymentSpec{name: d}, d.Selector.MatchLabels)) != 1 {
			t.Errorf("Deployment %s: selector %v does not match its pod labels %v", name, d.Selector.MatchLabels, d.Template.Metadata.Labels)
		}
	}
	for _, o := range objs {
		switch o.Kind {
		case "Service":
			s := decodeSpec[struct {
				Selector map[string]string `yaml:"selector"`
				Ports    []struct {
					Name       string    `yaml:"name"`
					TargetPort yaml.Node `yaml:"targetPort"`
				} `yaml:"ports"`
			}](t, o)
			sel := selected(ds, s.Selector)
			if len(sel) == 0 {
				t.Errorf("Service %s selects no pods (%v)", o.Metadata.Name, s.Selector)
			}
			for _, p := range s.Ports {
				if !hasPort(sel, p.TargetPort) {
					t.Errorf("Service %s port %s: target %q is no port of its pods", o.Metadata.Name, p.Name, p.TargetPort.Value)
				}
			}
		case "PodDisruptionBudget":
			s := decodeSpec[struct {
				MinAvailable int           `yaml:"minAvailable"`
				Selector     labelSelector `yaml:"selector"`
			}](t, o)
			sel := selected(ds, s.Selector.MatchLabels)
			if len(sel) != 1 {
				t.Fatalf("PodDisruptionBudget %s selects %d Deployments, want 1", o.Metadata.Name, len(sel))
			}
			if s.MinAvailable < 1 || s.MinAvailable >= sel[0].Replicas {
				t.Errorf("PodDisruptionBudget %s: minAvailable %d with %d replicas lets no pod be evicted, or all", o.Metadata.Name, s.MinAvailable, sel[0].Replicas)
			}
		case "NetworkPolicy":
			s := decodeSpec[struct {
				PodSelector labelSelector `yaml:"podSelector"`
				Ingress     []struct {
					Ports []struct {
						Port yaml.Node `yaml:"port"`
					} `yaml:"ports"`
					From []struct {
						PodSelector *labelSelector `yaml:"podSelector"`
					} `yaml:"from"`
				} `yaml:"ingress"`
			}](t, o)
			sel := selected(ds, s.PodSelector.MatchLabels)
			if len(sel) == 0 {
				t.Errorf("NetworkPolicy %s selects no pods (%v)", o.Metadata.Name, s.PodSelector.MatchLabels)
			}
			for _, in := range s.Ingress {
				for _, p := range in.Ports {
					if !hasPort(sel, p.Port) {
						t.Errorf("NetworkPolicy %s: port %q is no port of its pods", o.Metadata.Name, p.Port.Value)
					}
				}
			}
		}
	}
}

// grace is how long Kubernetes waits between stopping the pod (preStop,
// then SIGTERM) and SIGKILL; false when the manifest leaves it to
// Kubernetes' default of 30 s.
func (d deploymentSpec) grace() (time.Duration, bool) {
	s := d.Template.Spec.TerminationGracePeriodSeconds
	if s == nil {
		return 30 * time.Second, false
	}
	return time.Duration(*s) * time.Second, true
}

// checkGracePeriods: every pod states how long Kubernetes waits between
// SIGTERM and SIGKILL, and a pod running the proxy waits longer than serve
// may take to stop, or a grant the store refused is killed mid-flush.
func checkGracePeriods(t *testing.T, objs []object) {
	t.Helper()
	ds := pods(t, objs)
	proxies := 0
	for _, name := range slices.Sorted(maps.Keys(ds)) {
		spec := ds[name].Template.Spec
		grace, ok := ds[name].grace()
		if !ok {
			t.Errorf("Deployment %s: no terminationGracePeriodSeconds: say how long its pods may take to stop", name)
		}
		for _, c := range spec.Containers {
			if c.Name != "tiktok-auth-proxy" {
				continue
			}
			proxies++
			if grace <= stopbudget.Serve {
				t.Errorf("Deployment %s: terminationGracePeriodSeconds %v, want more than serve's %v from SIGTERM to exit (stopbudget.Serve)", name, grace, stopbudget.Serve)
			}
		}
	}
	if proxies == 0 {
		t.Error("no container named tiktok-auth-proxy: the grace period of the proxy's pods went unchecked")
	}
}

// checkTokenVolume: the token file's directory is a mounted persistent volume.
func checkTokenVolume(t *testing.T, objs []object, d deploymentSpec, c container, storePath string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != filepath.Dir(storePath) {
			continue
		}
		for _, v := range d.Template.Spec.Volumes {
			if v.Name == m.Name && v.PersistentVolumeClaim != nil {
				if find(objs, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName) == nil {
					t.Errorf("volume %s: no PersistentVolumeClaim %s", v.Name, v.PersistentVolumeClaim.ClaimName)
				}
				return
			}
		}
	}
	t.Errorf("store.path %s: its directory is not a mounted persistent volume", storePath)
}

// checkRedisService: store.redis.address is a Service of the example on a
// port it serves. It returns the one Deployment the Service selects: Redis.
func checkRedisService(t *testing.T, objs []object, addr string) deploymentSpec {
	t.Helper()
	host := hostOf(addr)
	svc := find(objs, "Service", host)
	if svc == nil {
		t.Fatalf("store.redis.address %s: no Service %s", addr, host)
	}
	s := decodeSpec[struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Port int `yaml:"port"`
		} `yaml:"ports"`
	}](t, *svc)
	served := false
	for _, p := range s.Ports {
		served = served || p.Port == port(t, "store.redis.address", addr)
	}
	if !served {
		t.Errorf("store.redis.address %s: Service %s has no such port", addr, host)
	}
	sel := selected(pods(t, objs), s.Selector)
	if len(sel) != 1 {
		t.Fatalf("Service %s selects %d Deployments, want 1 (Redis)", host, len(sel))
	}
	return sel[0]
}

// redisStopTime is what Redis needs from SIGTERM to exit: every write is
// already fsync'd (appendfsync always), so closing the append-only file
// takes a few seconds; 10 s leaves room on a busy node.
const redisStopTime = 10 * time.Second

// checkRedisStop: Redis, stopped with the proxies (a node drain, a
// rollout), keeps serving them through a preStop sleep for as long as a
// proxy may still write to it on its way out (serve's stopbudget.Serve,
// and at most the proxy pod's grace period); its own grace period then
// leaves it redisStopTime to shut down cleanly, not SIGKILLed mid-write.
func checkRedisStop(t *testing.T, redis, proxy deploymentSpec) {
	t.Helper()
	proxyGrace, _ := proxy.grace()
	want := max(stopbudget.Serve, proxyGrace)
	grace, _ := redis.grace()
	if len(redis.Template.Spec.Containers) == 0 {
		t.Error("the Redis Deployment has no container: its stop went unchecked")
	}
	for _, c := range redis.Template.Spec.Containers {
		sleep, err := preStopSleep(c)
		if err != nil {
			t.Errorf("Redis container %s: %v", c.Name, err)
			continue
		}
		if sleep < want {
			t.Errorf("Redis container %s: preStop sleeps %v, want at least %v: serve may use Redis for %v from SIGTERM (stopbudget.Serve) and the proxy pod runs for up to its grace period %v",
				c.Name, sleep, want, stopbudget.Serve, proxyGrace)
		}
		if grace < sleep+redisStopTime {
			t.Errorf("Redis: terminationGracePeriodSeconds %v, want at least its preStop's %v plus %v for Redis to stop after SIGTERM", grace, sleep, redisStopTime)
		}
	}
}

// preStopSleep is how long the container's preStop hook, an exec of
// `sleep SECONDS`, delays its SIGTERM.
func preStopSleep(c container) (time.Duration, error) {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		return 0, errors.New("no preStop exec hook: it gets SIGTERM at the same moment as the proxies")
	}
	cmd := c.Lifecycle.PreStop.Exec.Command
	if len(cmd) != 2 || cmd[0] != "sleep" {
		return 0, fmt.Errorf("preStop command %q, want [sleep SECONDS]", cmd)
	}
	n, err := strconv.Atoi(cmd[1])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("preStop command %q: %q is no number of seconds", cmd, cmd[1])
	}
	return time.Duration(n) * time.Second, nil
}

// checkScrapeConfig: the Prometheus job scrapes /metrics on the proxy
// pods' admin port with a bearer token from a file.
func checkScrapeConfig(t *testing.T, file string, d deploymentSpec, c container) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var pc struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			Authorization struct {
				Type            string `yaml:"type"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			RelabelConfigs []struct {
				SourceLabels []string `yaml:"source_labels"`
				Regex        string   `yaml:"regex"`
				Action       string   `yaml:"action"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(false)
	if err := dec.Decode(&pc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(pc.ScrapeConfigs) != 1 {
		t.Fatalf("%s: %d scrape configs, want 1", file, len(pc.ScrapeConfigs))
	}
	sc := pc.ScrapeConfigs[0]
	// deploy/prometheus/alerts.yaml's TikTokAuthProxyDown watches this job.
	if sc.JobName != "tiktok-auth-proxy" {
		t.Errorf("%s: job_name %q, want tiktok-auth-proxy", file, sc.JobName)
	}
	if sc.MetricsPath != "/metrics" || sc.Authorization.Type != "Bearer" || sc.Authorization.CredentialsFile == "" {
		t.Errorf("%s: metrics_path %q, authorization %+v; want /metrics with a Bearer credentials_file", file, sc.MetricsPath, sc.Authorization)
	}
	// The keep rule must select exactly the proxy pods' admin port.
	adminName := ""
	for _, p := range c.Ports {
		if p.Name == "admin" {
			adminName = p.Name
		}
	}
	want := d.Template.Metadata.Labels["app.kubernetes.io/name"] + ";" + adminName
	for _, r := range sc.RelabelConfigs {
		if r.Action == "keep" {
			if r.Regex != want || !slices.Equal(r.SourceLabels, []string{"__meta_kubernetes_pod_label_app_kubernetes_io_name", "__meta_kubernetes_pod_container_port_name"}) {
				t.Errorf("%s: keep rule %v =~ %q, want the pod's app.kubernetes.io/name and port name =~ %q", file, r.SourceLabels, r.Regex, want)
			}
			return
		}
	}
	t.Errorf("%s: no keep rule selecting the proxies' admin port", file)
}
