package memlimit

import (
	"testing"
	"testing/fstest"
)

func TestRead(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		fs    fstest.MapFS
		limit int64
		ok    bool
	}{
		{"v2 in a container's namespace", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("134217728\n"),
		}, 128 * mib, true},
		{"v2 unlimited", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, 0, false},
		{"v2, the parent's limit is smaller", fstest.MapFS{
			"proc/self/cgroup":                           file("0::/kubepods/pod1/ctr\n"),
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max": file("max\n"),
			"sys/fs/cgroup/kubepods/pod1/memory.max":     file("268435456\n"),
			"sys/fs/cgroup/kubepods/memory.max":          file("1073741824\n"),
		}, 256 * mib, true},
		{"v1 memory controller", fstest.MapFS{
			"proc/self/cgroup": file("9:name=systemd:/\n4:memory:/process_api/x\n3:cpuset:/\n"),
			"sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": file("134217728\n"),
			"sys/fs/cgroup/memory/process_api/memory.limit_in_bytes":   file("9223372036854771712\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":               file("9223372036854771712\n"),
		}, 128 * mib, true},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           file("4:memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0, false},
		{"v1 with controllers joined", fstest.MapFS{
			"proc/self/cgroup":                           file("5:cpuacct,memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("67108864\n"),
		}, 64 * mib, true},
		{"no cgroup file", fstest.MapFS{}, 0, false},
		{"limit file unreadable or garbage", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("lots\n"),
		}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit, ok := read(tc.fs)
			if ok != tc.ok || (ok && limit != tc.limit) {
				t.Errorf("read = %d, %v; want %d, %v", limit, ok, tc.limit, tc.ok)
			}
		})
	}
}
