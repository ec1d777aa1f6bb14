// Package memlimit reads the memory limit of the process's container: the
// smallest limit its cgroup and the cgroups above it set (cgroup v2's
// memory.max, v1's memory.limit_in_bytes). Go's runtime does not: a proxy
// that sizes itself (how many connections it holds in a burst, its soft
// memory limit) for a machine's memory is killed by a container's limit
// instead of waiting within it.
package memlimit

import (
	"bufio"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
)

// Container returns the memory limit of the process's cgroup in bytes; ok
// is false when there is none (no cgroup, no memory controller, "max", or
// a limit so large it is none). The files are read once, on the first
// call: serve's collector and the client-connection bound ask.
var Container = sync.OnceValues(func() (limit int64, ok bool) {
	return read(os.DirFS("/"))
})

// noLimit is what cgroup v1 reports for "no limit" (PAGE_COUNTER_MAX in
// bytes, rounded to a page); anything from it on is no limit.
const noLimit = 1 << 62

// read is Container on the file system root fsys (a directory in tests):
// proc/self/cgroup names the process's cgroups, sys/fs/cgroup holds them.
func read(fsys fs.FS) (limit int64, ok bool) {
	f, err := fsys.Open("proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	limit = noLimit
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path; v2's unified hierarchy is "0::path".
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir, file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir, file = "sys/fs/cgroup", "memory.max"
		case hasController(parts[1], "memory"):
			dir, file = "sys/fs/cgroup/memory", "memory.limit_in_bytes"
		default:
			continue
		}
		if l, found := smallest(fsys, dir, parts[2], file); found {
			limit = min(limit, l)
		}
	}
	return limit, limit < noLimit
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// smallest is the smallest limit in file of the cgroup at p below root and
// of each cgroup above it. Inside a container's cgroup namespace p is "/"
// and root is the container's own cgroup; outside one, p is the full path.
func smallest(fsys fs.FS, root, p, file string) (limit int64, found bool) {
	limit = noLimit
	for p = path.Clean("/" + p); ; p = path.Dir(p) {
		if b, err := fs.ReadFile(fsys, path.Join(root, p, file)); err == nil {
			if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
				limit, found = min(limit, v), true
			}
		}
		if p == "/" {
			return limit, found
		}
	}
}
