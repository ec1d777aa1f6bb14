//go:build !linux

package proxy

import "net"

// acceptQueue cannot read a listener's accept queue outside Linux.
func acceptQueue(net.Listener) (int, bool) { return 0, false }
