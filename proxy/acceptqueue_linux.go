package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// acceptQueue is how many connections the kernel holds in ln's accept
// queue, their handshake done, waiting for Accept. For a listening socket
// Linux reports that queue's length in TCP_INFO's unacked field (as ss
// shows it in Recv-Q). A closed listener, or one that is not TCP, has none
// to read.
func acceptQueue(ln net.Listener) (int, bool) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return 0, false
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int
	var read bool
	if err := rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			n, read = int(info.Unacked), true
		}
	}); err != nil {
		return 0, false
	}
	return n, read
}
