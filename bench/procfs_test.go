package bench

import "testing"

// TestNetstatField reads a field by name from /proc/net/netstat's
// name-line/value-line pairs, in the group asked for only.
func TestNetstatField(t *testing.T) {
	const netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n" +
		"TcpExt: 0 1807 1810\n" +
		"IpExt: InNoRoutes ListenOverflows\n" +
		"IpExt: 3 99\n"
	if n, err := netstatField([]byte(netstat), "TcpExt", "ListenOverflows"); err != nil || n != 1807 {
		t.Errorf("TcpExt ListenOverflows = %d, %v; want 1807", n, err)
	}
	if n, err := netstatField([]byte(netstat), "IpExt", "ListenOverflows"); err != nil || n != 99 {
		t.Errorf("IpExt ListenOverflows = %d, %v; want 99", n, err)
	}
	for _, c := range []struct{ text, group, field string }{
		{netstat, "TcpExt", "InNoRoutes"},
		{netstat, "MPTcpExt", "ListenOverflows"},
		{"TcpExt: ListenOverflows\nTcpExt: many\n", "TcpExt", "ListenOverflows"},
	} {
		if n, err := netstatField([]byte(c.text), c.group, c.field); err == nil {
			t.Errorf("%s %s in %q = %d, want an error", c.group, c.field, c.text, n)
		}
	}
}
