package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path, expands ${VAR} from the environment in
// every value, decodes it strictly, fills every default and validates it.
//
// Any problem with the file's content (YAML syntax, unknown key, unset
// variable, bad value, failed validation) is returned as a
// *ValidationError listing every problem found, each with its YAML line, so
// the check command can print them all; errors.As finds it. Relative paths
// in the file (store.path, forward_proxy.ca_cert, forward_proxy.ca_key) are
// resolved against the directory holding the file, not the working
// directory, so the config means the same thing wherever the binary starts.
func Load(path string) (*Config, error) {
	return LoadWith(path, LoadOptions{})
}

// LoadOptions relaxes what Load requires, for commands that use only part
// of the config.
type LoadOptions struct {
	// WithoutCallerSecrets accepts an unset or empty credentials[].app_secret
	// and clients[].token: they are left empty and not reported. For
	// commands that read state (status, healthcheck) and never call TikTok
	// nor authenticate a client, so they run where those secrets are not
	// in the environment. The Config must not be served.
	WithoutCallerSecrets bool
}

// LoadWith is Load with opts.
func LoadWith(path string, opts LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read config file: %w", err)
	}
	return parseWith(data, path, opts)
}

// Parse is Load for a document already in memory. path names the document
// in error messages and anchors relative paths; "" leaves relative paths
// relative to the working directory.
func Parse(data []byte, path string) (*Config, error) {
	return parseWith(data, path, LoadOptions{})
}

// callerSecretRE matches the key paths LoadOptions.WithoutCallerSecrets
// waives.
var callerSecretRE = regexp.MustCompile(`^(credentials\[\d+\]\.app_secret|clients\[\d+\]\.token)$`)

func parseWith(data []byte, path string, opts LoadOptions) (*Config, error) {
	p := &parser{file: path, lines: map[string]int{}, refs: map[string]string{}, empties: map[string]string{}}
	if opts.WithoutCallerSecrets {
		p.waived = callerSecretRE.MatchString
	}
	c := p.parse(data)
	if c == nil {
		return nil, p.err()
	}
	c.Path = path
	c.lines = p.lines
	c.refs = p.refs
	c.empties = p.empties
	c.applyDefaults()
	p.defaultedEmpties(c)
	if p.incomplete {
		return nil, p.err()
	}
	if err := c.Validate(); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return nil, err
		}
		for _, pr := range ve.Problems {
			if !p.reported(pr.Path) && !p.waives(pr.Path) {
				p.problems = append(p.problems, pr)
			}
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// parser turns the document into a Config, collecting problems instead of
// stopping at the first one.
type parser struct {
	file     string
	lines    map[string]int // key path → line of its key (or list item)
	problems []Problem
	// values indexes scalar value nodes by line so a decoder message that
	// names only a line and a value can be given its key path.
	values map[int][]pathNode
	// keys indexes every key path, repeated keys included, by line.
	keys map[int][]string
	// refs maps the path of each value that came from ${VAR} expansion to
	// the value as written, so messages can name the reference instead of
	// showing what the environment held (it may be a secret).
	refs map[string]string
	// empties maps the path of each value left empty by a set-but-empty
	// variable to that variable's name.
	empties map[string]string
	// expanded marks the scalar nodes whose value came from expansion.
	expanded map[*yaml.Node]bool
	// waived, when set, names the key paths whose unset variables and
	// empty values are accepted (LoadOptions.WithoutCallerSecrets).
	waived func(path string) bool
	// incomplete is set when decoding skipped part of the document, so
	// validating what was decoded would report problems that are not there.
	incomplete bool
}

type pathNode struct {
	path string
	node *yaml.Node
}

func (p *parser) add(line int, path, format string, args ...any) {
	p.problems = append(p.problems, Problem{Line: line, Path: path, Message: fmt.Sprintf(format, args...)})
}

// reported says whether a decode problem already covers path, so that
// validation does not repeat it (an unset ${VAR} in app_secret is not also
// "app_secret is empty").
func (p *parser) reported(path string) bool {
	for _, pr := range p.problems {
		if pr.Path != "" && (path == pr.Path || strings.HasPrefix(path, pr.Path+".") || strings.HasPrefix(path, pr.Path+"[")) {
			return true
		}
	}
	return false
}

func (p *parser) waives(path string) bool { return p.waived != nil && p.waived(path) }

func (p *parser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	sort.SliceStable(p.problems, func(i, j int) bool { return p.problems[i].Line < p.problems[j].Line })
	return &ValidationError{File: p.file, Problems: p.problems}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) parse(data []byte) *Config {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(0, "", "the file is empty; start from config.example.yaml")
			return nil
		}
		p.syntaxError(data, err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			p.syntaxError(data, err)
			return nil
		}
		p.add(line, "", "a second YAML document starts here; a config file holds exactly one (remove the extra ---)")
		return nil
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		p.add(doc.Line, "", "the top level must be a mapping of keys such as listen: and credentials:; start from config.example.yaml")
		return nil
	}
	p.values = map[int][]pathNode{}
	p.keys = map[int][]string{}
	p.expanded = map[*yaml.Node]bool{}
	p.walk(doc, "")
	p.unknownKeys(data)

	var c Config
	if err := doc.Decode(&c); err != nil {
		p.decodeError(err)
	}
	return &c
}

func (p *parser) syntaxError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if l := syntaxLine(data, msg); l > 0 {
		line = l
	}
	hint := "check the indentation and quoting of this line"
	if line > 0 && strings.Contains(msg, "'}'") && strings.Contains(lineText(data, line), "${") {
		hint = `inside { } write "${VAR}" in double quotes`
	}
	p.add(line, "", "invalid YAML: %s; %s", msg, hint)
}

func lineText(data []byte, line int) string {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return ""
	}
	return string(lines[line-1])
}

// maxSyntaxScanLines bounds syntaxLine's quadratic scan.
const maxSyntaxScanLines = 2000

// syntaxLine finds the line a YAML syntax error is on. The parser names the
// line where the enclosing block starts, often far above the mistake; the
// first prefix of the document that fails with the same message ends on
// the offending line. 0 when that cannot be found.
func syntaxLine(data []byte, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxSyntaxScanLines {
		return 0
	}
	end := 0
	for i, l := range lines {
		end += len(l)
		var n yaml.Node
		err := yaml.Unmarshal(data[:end], &n)
		if err != nil && strings.HasSuffix(err.Error(), msg) {
			return i + 1
		}
	}
	return 0
}

// walk records the line of every key path and expands ${VAR} in every
// scalar value (never in keys, never in comments).
func (p *parser) walk(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := k.Value
			if path != "" {
				child = path + "." + k.Value
			}
			if _, seen := p.lines[child]; !seen {
				p.lines[child] = k.Line
			}
			p.keys[k.Line] = append(p.keys[k.Line], child)
			p.walk(v, child)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			child := fmt.Sprintf("%s[%d]", path, i)
			p.lines[child] = item.Line
			p.walk(item, child)
		}
	case yaml.ScalarNode:
		p.values[n.Line] = append(p.values[n.Line], pathNode{path, n})
		p.expand(n, path)
	}
}

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces ${VAR} in a scalar from the environment, and
// ${VAR:-default} with default when VAR is unset or empty; $${ stands for a
// literal ${. The result is typed as if written unquoted in the file, so
// db: "${REDIS_DB}" decodes as a number.
func (p *parser) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	var b strings.Builder
	raw := n.Value
	s := raw
	// emptyVar is a variable that is set but empty; when the whole value
	// ends up empty, messages name it so the operator knows where to look.
	var emptyVar string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			p.add(n.Line, path, "unterminated ${ in value; write ${NAME}, or $${ for a literal ${")
			return
		}
		name, def, hasDefault := strings.Cut(s[i+2:i+end], ":-")
		if !varNameRE.MatchString(name) {
			p.add(n.Line, path, "${%s} is not a valid environment variable reference; use letters, digits and _ (e.g. ${TIKTOK_APP_SECRET}), or $${ for a literal ${", s[i+2:i+end])
			return
		}
		v, ok := os.LookupEnv(name)
		switch {
		case hasDefault && v == "":
			// As in the shell: the default stands in for an unset and for
			// an empty variable alike.
			v = def
		case !ok && p.waives(path):
			n.Value = ""
			return
		case !ok:
			p.add(n.Line, path, "environment variable %s is not set; export it before starting, or write the value in the file", name)
			return
		case v == "":
			emptyVar = name
		}
		b.WriteString(v)
		s = s[i+end+1:]
	}
	n.Value = b.String()
	p.refs[path] = raw
	p.expanded[n] = true
	if n.Value == "" && emptyVar != "" {
		p.empties[path] = emptyVar
	}
	if n.Style&yaml.TaggedStyle == 0 {
		// Quoting is often needed around ${VAR} itself (inside { }), so
		// it says nothing about the value's type: "${REDIS_DB}" must still
		// give a number. Text fields take any scalar verbatim, so this
		// never changes a string; only an empty value must stay a string.
		n.Style = 0
		n.Tag = ""
		if n.ShortTag() == "!!null" {
			n.Tag = "!!str"
		}
	}
}

var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	duplicateKeyRE = regexp.MustCompile(`^line (\d+): mapping key "(.*)" already defined at line (\d+)$`)
	// (?s): an expanded value may hold a newline, and a message the
	// pattern misses would be shown as the decoder wrote it.
	cannotDecodeRE = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
	// quotedValueRE finds the value a decoder message quotes in backticks.
	quotedValueRE = regexp.MustCompile("(?s)`.*`")
)

// unknownKeys runs the strict decoder over the original text: keys are never
// expanded, so its verdict and line numbers hold for the expanded document.
// Its value errors are ignored here (a ${VAR} is not yet a number); the
// expanded document's decode reports those.
func (p *parser) unknownKeys(data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var te *yaml.TypeError
	if err := dec.Decode(&Config{}); !errors.As(err, &te) {
		return
	}
	for _, msg := range te.Errors {
		m := unknownFieldRE.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		path := p.keyPathAt(line, m[2])
		known := knownKeys[m[3]]
		if near := nearestKey(m[2], known); near != "" {
			p.add(line, path, "unknown key %q; did you mean %s? (valid keys here: %s)", m[2], near, strings.Join(known, ", "))
			continue
		}
		p.add(line, path, "unknown key %q; check its spelling and indentation (valid keys here: %s)", m[2], strings.Join(known, ", "))
	}
}

// keyPathAt finds the path of the key named key on line.
func (p *parser) keyPathAt(line int, key string) string {
	for _, path := range p.keys[line] {
		if path == key || strings.HasSuffix(path, "."+key) {
			return path
		}
	}
	return ""
}

// valueAt finds the path of the scalar on line whose value the decoder
// quoted (possibly cut to its first 7 bytes and "...") and how a message
// may show that value: quoted in full when written in the file, by its
// ${VAR} reference when it came from the environment, since the decoder's
// quote would otherwise leak the start of a secret.
func (p *parser) valueAt(line int, quoted string) (path, shown string) {
	prefix, truncated := strings.CutSuffix(quoted, "...")
	fromEnv := false
	for _, pn := range p.values[line] {
		if pn.node.Value == quoted || (truncated && strings.HasPrefix(pn.node.Value, prefix)) {
			if p.expanded[pn.node] {
				return pn.path, refText(p.refs[pn.path])
			}
			return pn.path, fmt.Sprintf("%q", pn.node.Value)
		}
		fromEnv = fromEnv || p.expanded[pn.node]
	}
	if fromEnv {
		return "", "a value from the environment"
	}
	return "", fmt.Sprintf("%q", quoted)
}

// refText names a value that came from ${VAR} expansion by what the file
// says, never by its content: "the value of ${RV_PW}".
func refText(raw string) string {
	if strings.HasPrefix(raw, "${") && strings.Index(raw, "}") == len(raw)-1 {
		return "the value of " + raw
	}
	return fmt.Sprintf("the value of %q", raw)
}

// hideValue drops the value a decoder message quotes, for messages the
// parser cannot tie to a node: the value may have come from the
// environment.
func hideValue(msg string) string {
	return quotedValueRE.ReplaceAllString(msg, "(value hidden)")
}

// decodeError turns the decoder's Go-flavoured messages into operator ones.
func (p *parser) decodeError(err error) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		p.add(0, "", "cannot decode: %s", hideValue(strings.TrimPrefix(err.Error(), "yaml: ")))
		return
	}
	for _, msg := range te.Errors {
		if m := duplicateKeyRE.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			p.add(line, p.keyPathAt(line, m[2]), "key %q appears twice (first on line %s); keep only one", m[2], m[3])
			// The decoder skips a mapping with a repeated key, so the
			// rest of the config would look emptier than it is.
			p.incomplete = true
			continue
		}
		m := cannotDecodeRE.FindStringSubmatch(msg)
		if m == nil {
			p.add(0, "", "%s", hideValue(msg))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		tag, value, goType := m[2], m[3], m[4]
		var path, got string
		switch tag {
		case "!!map":
			path, got = p.containerPathAt(line), "a mapping"
		case "!!seq":
			path, got = p.containerPathAt(line), "a list"
		default:
			path, got = p.valueAt(line, value)
			if goType == secretType {
				// A Secret field is a string, so this is a tagged
				// literal such as !!int; its text is still the secret.
				got = "the value"
			}
		}
		if !p.reported(path) {
			p.add(line, path, "%s", describeMismatch(got, goType))
		}
	}
}

// containerPathAt finds the path whose (mapping or list) value starts on line.
func (p *parser) containerPathAt(line int) string {
	best := ""
	for path, l := range p.lines {
		if l == line && (best == "" || len(path) > len(best)) {
			best = path
		}
	}
	return best
}

// secretType is Secret's name as the decoder prints it.
var secretType = reflect.TypeFor[Secret]().String()

// describeMismatch says why got, already rendered for the message, does not
// fit a field of the Go type goType.
func describeMismatch(got, goType string) string {
	switch {
	case goType == "time.Duration":
		return got + " is not a duration; write a Go duration such as 30s, 5m or 1h"
	case goType == "int" || goType == "int64":
		return got + " is not a whole number; write digits only"
	case goType == "uint32":
		return got + " is not a whole number of zero or more; write digits, e.g. 5"
	case goType == "float64":
		return got + " is not a number; write e.g. 10 or 2.5"
	case goType == "bool":
		return got + " is not true or false"
	case strings.HasPrefix(goType, "[]"):
		return got + " is not a list; write [a, b] or one \"- item\" per line"
	case strings.HasPrefix(goType, "config."):
		return got + " is not a mapping of keys; see config.example.yaml for its keys"
	default:
		return got + " is not a text value; quote it"
	}
}

// knownKeys maps each config struct's Go type name, as the strict decoder
// prints it, to its YAML keys, for "valid keys here" hints.
var knownKeys = func() map[string][]string {
	m := map[string][]string{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		if _, done := m[t.String()]; done {
			return
		}
		var keys []string
		m[t.String()] = keys
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			keys = append(keys, name)
			visit(f.Type)
		}
		m[t.String()] = keys
	}
	visit(reflect.TypeFor[Config]())
	return m
}()

// defaultedEmpties reports each value a set-but-empty variable left empty
// and a default then filled: the operator meant to set it, and the proxy
// would quietly run with something else (another address, another store).
// ${VAR:-} asks for the default explicitly and is not reported.
func (p *parser) defaultedEmpties(c *Config) {
	for path, name := range p.empties {
		v, ok := stringAt(reflect.ValueOf(c).Elem(), path)
		if ok && v != "" {
			p.add(p.lines[path], path, "%s is set but empty, so the default %s would be used; set it, or write ${%s:-} to use the default", name, v, name)
		}
	}
}

// stringAt is the string field of the struct v at the key path written
// with YAML keys ("store.path", "credentials[0].kind"); false when path
// names no string field.
func stringAt(v reflect.Value, path string) (string, bool) {
	for part := range strings.SplitSeq(path, ".") {
		key, index, indexed := strings.Cut(part, "[")
		if v.Kind() != reflect.Struct {
			return "", false
		}
		v = fieldByKey(v, key)
		if !v.IsValid() {
			return "", false
		}
		if indexed {
			i, err := strconv.Atoi(strings.TrimSuffix(index, "]"))
			if err != nil || v.Kind() != reflect.Slice || i >= v.Len() {
				return "", false
			}
			v = v.Index(i)
		}
	}
	if v.Kind() != reflect.String {
		return "", false
	}
	return v.String(), true
}

// fieldByKey is the field of struct v whose yaml tag names key.
func fieldByKey(v reflect.Value, key string) reflect.Value {
	t := v.Type()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == key {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

// maxKeyDistance is the largest edit distance at which an unknown key is
// taken for a misspelling of a known one: a dropped, doubled or swapped
// letter or two.
const maxKeyDistance = 2

// nearestKey is the known key closest to key by edit distance (case
// ignored), "" when none is within maxKeyDistance or the nearest is tied.
func nearestKey(key string, known []string) string {
	best, bestD, tied := "", maxKeyDistance+1, false
	for _, k := range known {
		d := editDistance(strings.ToLower(key), k)
		switch {
		case d < bestD:
			best, bestD, tied = k, d, false
		case d == bestD:
			tied = true
		}
	}
	if tied || bestD >= len(key) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, counting an
// adjacent swap as one edit (the commonest typo).
func editDistance(a, b string) int {
	// prev2, prev and cur are rows i-2, i-1 and i of the usual table.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
