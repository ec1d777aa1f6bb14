package metrics

import (
	"encoding/json"
	"fmt"
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
		Panels []dashPanel `json:"panels"`
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
	// A row's panels (collapsed rows carry them) are checked too.
	var check func(panels []dashPanel)
	check = func(panels []dashPanel) {
		for _, p := range panels {
			for _, tg := range p.Targets {
				for _, m := range selector.FindAllStringSubmatch(tg.Expr, -1) {
					if !strings.Contains(m[1], `job=~"$job"`) || !strings.Contains(m[1], `instance=~"$instance"`) {
						t.Errorf("panel %q: %s is not filtered by $job and $instance", p.Title, m[0])
					}
				}
			}
			check(p.Panels)
		}
	}
	check(d.Panels)
}

// gridWidth is the width of Grafana's dashboard grid, in columns.
const gridWidth = 24

// gridPos is a panel's place on the dashboard grid, in grid units.
type gridPos struct {
	X, Y, W, H int
}

// dashPanel is the part of a dashboard panel the tests read: its layout and
// its queries; a row carries its collapsed panels in Panels.
type dashPanel struct {
	ID      *int     `json:"id"`
	Title   string   `json:"title"`
	GridPos *gridPos `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

// overlaps reports whether two grid rectangles share any cell.
func (a gridPos) overlaps(b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

// layoutProblems lists what would make Grafana draw the dashboard wrong: a
// panel without an id or gridPos, two panels with one id (links and edits go
// to the wrong one), a panel outside the 24-column grid, and two panels whose
// rectangles intersect (one is drawn over the other). A collapsed row's
// panels are compared with each other only: Grafana places them when the row
// opens and pushes the panels below it down, so their stored y may meet the
// y of panels under the closed row.
func layoutProblems(panels []dashPanel) []string {
	var problems []string
	owner := map[int]string{}
	var check func(group []dashPanel)
	check = func(group []dashPanel) {
		for i, p := range group {
			if p.ID == nil {
				problems = append(problems, fmt.Sprintf("panel %q has no id", p.Title))
			} else if other, dup := owner[*p.ID]; dup {
				problems = append(problems, fmt.Sprintf("panels %q and %q share id %d", other, p.Title, *p.ID))
			} else {
				owner[*p.ID] = p.Title
			}
			if g := p.GridPos; g == nil {
				problems = append(problems, fmt.Sprintf("panel %q has no gridPos", p.Title))
			} else if g.X < 0 || g.Y < 0 || g.W <= 0 || g.H <= 0 || g.X+g.W > gridWidth {
				problems = append(problems, fmt.Sprintf("panel %q: gridPos %+v is not inside the %d-column grid", p.Title, *g, gridWidth))
			} else {
				for _, q := range group[:i] {
					if q.GridPos != nil && g.overlaps(*q.GridPos) {
						problems = append(problems, fmt.Sprintf("panels %q %+v and %q %+v overlap", q.Title, *q.GridPos, p.Title, *g))
					}
				}
			}
			check(p.Panels)
		}
	}
	check(panels)
	return problems
}

// The dashboard's panels each have their own id and their own place on the
// grid, so none is drawn over another.
func TestDashboardLayout(t *testing.T) {
	data, err := os.ReadFile("../deploy/grafana/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Panels) == 0 {
		t.Fatal("dashboard has no panel")
	}
	for _, p := range layoutProblems(d.Panels) {
		t.Error(p)
	}
}

// layoutProblems finds each kind of problem, in collapsed rows too, and
// passes a layout without one.
func TestLayoutProblems(t *testing.T) {
	id := func(n int) *int { return &n }
	at := func(x, y, w, h int) *gridPos { return &gridPos{X: x, Y: y, W: w, H: h} }
	tests := []struct {
		name   string
		panels []dashPanel
		want   []string
	}{
		{"side by side and stacked", []dashPanel{
			{ID: id(1), Title: "a", GridPos: at(0, 0, 12, 8)},
			{ID: id(2), Title: "b", GridPos: at(12, 0, 12, 8)},
			{ID: id(3), Title: "c", GridPos: at(0, 8, 24, 5)},
		}, nil},
		{"moved onto another", []dashPanel{
			{ID: id(1), Title: "a", GridPos: at(0, 0, 12, 8)},
			{ID: id(2), Title: "b", GridPos: at(11, 7, 12, 8)},
		}, []string{`panels "a" {X:0 Y:0 W:12 H:8} and "b" {X:11 Y:7 W:12 H:8} overlap`}},
		{"shared id", []dashPanel{
			{ID: id(1), Title: "a", GridPos: at(0, 0, 12, 8)},
			{ID: id(1), Title: "b", GridPos: at(12, 0, 12, 8)},
		}, []string{`panels "a" and "b" share id 1`}},
		{"no gridPos, no id", []dashPanel{
			{ID: id(1), Title: "a"},
			{Title: "b", GridPos: at(0, 0, 6, 5)},
		}, []string{`panel "a" has no gridPos`, `panel "b" has no id`}},
		{"wider than the grid", []dashPanel{
			{ID: id(1), Title: "a", GridPos: at(18, 0, 8, 5)},
		}, []string{`panel "a": gridPos {X:18 Y:0 W:8 H:5} is not inside the 24-column grid`}},
		{"row's panels overlap each other and share an id with a top panel", []dashPanel{
			{ID: id(1), Title: "top", GridPos: at(0, 0, 24, 5)},
			{ID: id(2), Title: "row", GridPos: at(0, 5, 24, 1), Panels: []dashPanel{
				{ID: id(1), Title: "x", GridPos: at(0, 6, 12, 8)},
				{ID: id(4), Title: "y", GridPos: at(6, 6, 12, 8)},
			}},
		}, []string{
			`panels "top" and "x" share id 1`,
			`panels "x" {X:0 Y:6 W:12 H:8} and "y" {X:6 Y:6 W:12 H:8} overlap`,
		}},
		{"collapsed row's panels may sit where panels below the closed row are", []dashPanel{
			{ID: id(1), Title: "row", GridPos: at(0, 0, 24, 1), Panels: []dashPanel{
				{ID: id(2), Title: "x", GridPos: at(0, 1, 24, 8)},
			}},
			{ID: id(3), Title: "below", GridPos: at(0, 1, 24, 8)},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := layoutProblems(tt.panels)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("layoutProblems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
