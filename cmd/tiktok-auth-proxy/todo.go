package main

import (
	"context"
	"errors"
)

var errNotYet = errors.New("not yet available")

func runAuthorize(ctx context.Context, args []string, s stdio) error { return errNotYet }
func runDemo(ctx context.Context, args []string, s stdio) error      { return errNotYet }
