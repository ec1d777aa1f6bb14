// Package stopbudget holds how long serve may take from SIGTERM to exit, in
// the order it spends it, so that serve and the tests of the deployment
// examples read the same numbers: a supervisor that kills serve sooner
// (Kubernetes' terminationGracePeriodSeconds, systemd's TimeoutStopSec) can
// lose a grant the store had refused.
package stopbudget

import "time"

const (
	// Requests bounds how long in-flight requests may take to finish
	// after SIGTERM before their connections are closed under them.
	Requests = 25 * time.Second
	// HandlerGrace bounds the wait, once their connections are closed,
	// for handlers still running before the store is closed under them.
	HandlerGrace = 2 * time.Second
	// Flush bounds the retries of writing a grant the store refused; past
	// it the grant is lost and serve exits 1 naming it.
	Flush = 3 * time.Second
)

// Serve is serve's longest way from SIGTERM to exit: the three bounds.
// Closing the store after them takes no bounded time of its own; callers
// leave a margin.
const Serve = Requests + HandlerGrace + Flush
