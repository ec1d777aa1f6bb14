// Package stopbudget reads from serve's source how long it may take from
// SIGTERM to exit, for tests of the deployment examples: a supervisor that
// kills it sooner (Kubernetes' terminationGracePeriodSeconds, systemd's
// TimeoutStopSec) can lose a grant the store had refused, so their
// timeouts are checked against the code's constants, not a copy of them.
package stopbudget

import (
	"errors"
	"fmt"
	"go/ast"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Bounds are the constants of package main whose sum is serve's longest
// way from SIGTERM to exit, in the order it spends them: in-flight
// requests, handlers still running once their connections were cut, and
// the retries of writing a grant the store refused. Closing the store
// after them takes no bounded time of its own; callers leave a margin.
var Bounds = []string{"defaultShutdownTimeout", "defaultHandlerGrace", "flushTimeout"}

// serveDir is cmd/tiktok-auth-proxy, found from this file's place in the
// module so that any test package can call Serve.
func serveDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("stopbudget: cannot locate the module's source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "cmd", "tiktok-auth-proxy"), nil
}

// Serve returns the sum of Bounds, each evaluated as the compiler would
// from its declaration in cmd/tiktok-auth-proxy (in whichever of its
// non-test files it is), and each bound by name.
func Serve() (time.Duration, map[string]time.Duration, error) {
	dir, err := serveDir()
	if err != nil {
		return 0, nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, fmt.Errorf("stopbudget: %w", err)
	}
	fset := token.NewFileSet()
	want := map[string]bool{}
	for _, name := range Bounds {
		want[name] = true
	}
	// The declarations are type-checked on their own, with only package
	// time imported: the rest of package main is not needed to evaluate
	// them, and they must not depend on it.
	var src strings.Builder
	src.WriteString("package main\n\nimport \"time\"\n\n")
	found := 0
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		text, err := os.ReadFile(path)
		if err != nil {
			return 0, nil, fmt.Errorf("stopbudget: %w", err)
		}
		f, err := parser.ParseFile(fset, path, text, 0)
		if err != nil {
			return 0, nil, fmt.Errorf("stopbudget: %w", err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for _, n := range vs.Names {
					if want[n.Name] {
						found++
						start, end := fset.Position(vs.Pos()).Offset, fset.Position(vs.End()).Offset
						fmt.Fprintf(&src, "const %s\n", text[start:end])
					}
				}
			}
		}
	}
	if found != len(Bounds) {
		return 0, nil, fmt.Errorf("stopbudget: found %d of the constants %v in %s", found, Bounds, dir)
	}
	f, err := parser.ParseFile(fset, "bounds.go", src.String(), 0)
	if err != nil {
		return 0, nil, fmt.Errorf("stopbudget: %w", err)
	}
	conf := types.Config{Importer: importer.Default()}
	pkg, err := conf.Check("main", fset, []*ast.File{f}, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("stopbudget: evaluating %v: %w", Bounds, err)
	}
	var sum time.Duration
	each := map[string]time.Duration{}
	for _, name := range Bounds {
		c, ok := pkg.Scope().Lookup(name).(*types.Const)
		if !ok {
			return 0, nil, fmt.Errorf("stopbudget: %s is not a constant", name)
		}
		v, exact := constant.Int64Val(c.Val())
		if !exact || c.Type().String() != "time.Duration" {
			return 0, nil, fmt.Errorf("stopbudget: %s = %s (%s), want a time.Duration", name, c.Val(), c.Type())
		}
		each[name] = time.Duration(v)
		sum += time.Duration(v)
	}
	return sum, each, nil
}
