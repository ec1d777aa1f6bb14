// Command tiktok-auth-proxy lets scripts call the TikTok Marketing API
// without handling OAuth. main only wires: flags, subcommands, signals and
// exit codes; every behaviour lives in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// errReported is returned after a command already printed its failure
// (check's problem list): exit 1 without a second message.
var errReported = errors.New("reported")

// errUsageShown is returned after a usage text was printed in place of
// running a command: exit 2 without a second message.
var errUsageShown = errors.New("usage shown")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errReported):
		return 1
	case errors.Is(err, errUsageShown):
		return 2
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "tiktok-auth-proxy: %v (see 'tiktok-auth-proxy help')\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "tiktok-auth-proxy: %v\n", err)
		return 1
	}
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, io stdio) error
}

type stdio struct {
	in       io.Reader
	out, err io.Writer
}

var commands = []command{
	{"serve", "run the proxy and the admin listener (the default command)", runServe},
	{"check", "validate the config and print every problem with its line", runCheck},
	{"status", "show each credential's authorization and token expiry", runStatus},
	{"authorize", "authorize a credential from the terminal", runAuthorize},
	{"demo", "run the proxy against the bundled TikTok simulator", runDemo},
	{"simulate", "run the TikTok simulator alone", runSimulate},
	{"ca", "create a CA for forward-proxy mode (HTTPS_PROXY)", runCA},
	{"healthcheck", "exit 0 when the running proxy's /readyz answers 200, else 1", runHealthcheck},
	{"version", "print version, commit and Go version", runVersion},
}

// run is the whole program; tests call it directly.
func run(ctx context.Context, args []string, in io.Reader, out, errw io.Writer) error {
	s := stdio{in: in, out: out, err: errw}
	if len(args) == 0 {
		if _, err := os.Stat(defaultConfig); errors.Is(err, fs.ErrNotExist) {
			// A first run without arguments: say what to do rather
			// than that a file is missing.
			printShortUsage(errw)
			return errUsageShown
		}
		return runServe(ctx, nil, s)
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		printUsage(out)
		return nil
	case "-v", "-version", "--version":
		return runVersion(ctx, args[1:], s)
	}
	if len(name) > 0 && name[0] == '-' {
		return runServe(ctx, args, s)
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, args[1:], s)
		}
	}
	return usagef("unknown command %q", name)
}

// printShortUsage is what a bare run without ./config.yaml prints.
func printShortUsage(w io.Writer) {
	fmt.Fprintln(w, "tiktok-auth-proxy: no ./config.yaml here, so there is nothing to serve.")
	fmt.Fprintln(w, "  tiktok-auth-proxy demo                   try it against the bundled TikTok simulator")
	fmt.Fprintln(w, "  tiktok-auth-proxy serve --config FILE    run the proxy (start from config.example.yaml)")
	fmt.Fprintln(w, "  tiktok-auth-proxy --help                 every command")
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: tiktok-auth-proxy <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'tiktok-auth-proxy <command> --help' for a command's flags.")
}

// newFlags returns a FlagSet whose errors are returned, not printed twice,
// and whose --help prints usage to out.
func newFlags(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: tiktok-auth-proxy %s %s\n\nFlags:\n", name, synopsis)
		fs.SetOutput(out)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning a flag mistake into a usage error and
// refusing stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// flag.Parse prints the usage itself on --help and on every mistake;
	// silenced here, --help prints it once (helpOr) and a mistake is one
	// line on stderr.
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func runVersion(_ context.Context, args []string, s stdio) error {
	fs := newFlags("version", "", s.out)
	if err := parseFlags(fs, args); err != nil {
		return helpOr(fs, err)
	}
	fmt.Fprintf(s.out, "tiktok-auth-proxy %s (commit %s, %s)\n", version, commit, runtime.Version())
	return nil
}

// helpOr prints the flag set's usage on --help and passes other errors on.
func helpOr(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
	}
	return err
}
