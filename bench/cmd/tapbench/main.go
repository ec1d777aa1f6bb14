// Command tapbench measures tiktok-auth-proxy against a tuned
// httputil.ReverseProxy baseline and prints the report as markdown; see
// package bench and BENCHMARKS.md. `make bench` runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/bench"
)

func main() {
	bench.Child()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tapbench:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tapbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "bin/tiktok-auth-proxy", "the tiktok-auth-proxy binary to measure (make build)")
	quick := fs.Bool("quick", false, "a smoke run of about 30 s instead of the full run of about 4 minutes")
	plots := fs.String("plots", "", "write "+bench.LatencyPlot+" and "+bench.ThroughputPlot+" into this directory")
	md := fs.String("markdown", "", "replace the section between the tapbench markers of this file with the report")
	js := fs.String("json", "", "also write the report as JSON to this file")
	from := fs.String("from", "", "measure nothing: render the report saved by -json in this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: %w", fs.Args(), flag.ErrHelp)
	}
	rep := &bench.Report{}
	if *from != "" {
		b, err := os.ReadFile(*from)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, rep); err != nil {
			return fmt.Errorf("%s: %w", *from, err)
		}
	} else {
		o := bench.Defaults(*quick)
		o.Binary, o.Progress = *bin, stderr
		var err error
		if rep, err = bench.Run(ctx, o); err != nil {
			return err
		}
	}
	fmt.Fprint(stdout, rep.Markdown())
	if *plots != "" {
		if err := rep.WritePlots(*plots); err != nil {
			return err
		}
	}
	if *md != "" {
		if err := rep.UpdateMarkdown(*md); err != nil {
			return err
		}
	}
	if *js != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*js, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
