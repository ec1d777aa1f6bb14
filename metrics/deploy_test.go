package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// readmeAnchors returns the GitHub anchors of README.md's headings.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			title := strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(title), ""), " ", "-")] = true
		}
	}
	return anchors
}

// Every alert carries a runbook_url that points at a section of the README
// that exists.
func TestAlertsHaveRunbooks(t *testing.T) {
	data, err := os.ReadFile("../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	anchors := readmeAnchors(t)
	const prefix = "https://github.com/tiktok-auth-proxy/tiktok-auth-proxy/blob/main/README.md#"
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], prefix)
			if !ok {
				t.Errorf("%s: runbook_url %q does not point into the README (%s...)", r.Alert, r.Annotations["runbook_url"], prefix)
				continue
			}
			if !anchors[anchor] {
				t.Errorf("%s: runbook_url anchor #%s is no README heading", r.Alert, anchor)
			}
		}
	}
	if n == 0 {
		t.Fatal("alerts.yaml holds no alert")
	}
}

// Every dashboard query is filtered by the job and instance variables, so
// one proxy among several can be looked at alone.
func TestDashboardFiltersByJobAndInstance(t *testing.T) {
	data, err := os.ReadFile("../deploy/grafana/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, want := range []string{"job", "instance", "credential"} {
		if !vars[want] {
			t.Errorf("dashboard has no $%s variable", want)
		}
	}
	selector := regexp.MustCompile(`tiktok_auth_proxy_[a-z_]+(\{[^}]*\})?`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range selector.FindAllStringSubmatch(tg.Expr, -1) {
				if !strings.Contains(m[1], `job=~"$job"`) || !strings.Contains(m[1], `instance=~"$instance"`) {
					t.Errorf("panel %q: %s is not filtered by $job and $instance", p.Title, m[0])
				}
			}
		}
	}
}
