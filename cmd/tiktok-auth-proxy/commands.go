package main

import (
	"context"
	"errors"
)

var errNotYet = errors.New("not yet available")

func runServe(ctx context.Context, args []string, s stdio) error     { return errNotYet }
func runCheck(ctx context.Context, args []string, s stdio) error     { return errNotYet }
func runStatus(ctx context.Context, args []string, s stdio) error    { return errNotYet }
func runAuthorize(ctx context.Context, args []string, s stdio) error { return errNotYet }
func runDemo(ctx context.Context, args []string, s stdio) error      { return errNotYet }
func runSimulate(ctx context.Context, args []string, s stdio) error  { return errNotYet }
