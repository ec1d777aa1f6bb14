package bench

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's utime and stime: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime is the user+system CPU time process pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	// The command name (field 2) may hold spaces; fields after it are
	// space-separated, utime and stime being the 14th and 15th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// memory reads a "Vm..." line of /proc/PID/status (VmRSS, VmHWM) in bytes.
func memory(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bench: /proc/%d/status: %s: %q", pid, field, v)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc/%d/status: %s: %w", pid, field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("bench: /proc/%d/status: no %s", pid, field)
}

// listenOverflows is the kernel's count of connections dropped because a
// listener's accept queue was full (TcpExt ListenOverflows in
// /proc/net/netstat): the whole machine's, since boot.
func listenOverflows() (int64, error) {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return netstatField(b, "TcpExt", "ListenOverflows")
}

// netstatField reads field of group from /proc/net/netstat's text, where
// each group is a line of names followed by a line of values.
func netstatField(b []byte, group, field string) (int64, error) {
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != group+":" || len(values) != len(names) || values[0] != names[0] {
			continue
		}
		if j := slices.Index(names, field); j > 0 {
			n, err := strconv.ParseInt(values[j], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: /proc/net/netstat: %s: %w", field, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("bench: /proc/net/netstat: no %s %s", group, field)
}
