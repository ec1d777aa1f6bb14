package main

import (
	"context"
)

func runServe(ctx context.Context, args []string, s stdio) error {
	fs := newFlags("serve", "[--config FILE]", s.out)
	path := fs.String("config", defaultConfig, "config file")
	if err := parseFlags(fs, args); err != nil {
		return helpOr(fs, err)
	}
	cfg, err := loadConfig(*path, s)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, s.err)
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
