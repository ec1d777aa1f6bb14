package tiktoksim

import (
	"fmt"
	"io"
)

// reportLineLen is the length of every line NewReportReader produces.
const reportLineLen = 32

// NewReportReader returns the size bytes the report download endpoint
// streams: CSV lines "0000000000,sim-report-row,12345\n" numbered from 0,
// the last one cut at size. They are generated on the fly, so any size
// costs no memory.
func NewReportReader(size int64) io.Reader { return &reportReader{size: size} }

type reportReader struct {
	pos, size int64
}

func (r *reportReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	n := 0
	// Each round copies at least one byte, bounded by len(p).
	for n < len(p) && r.pos < r.size {
		line := fmt.Appendf(nil, "%010d,sim-report-row,12345\n", r.pos/reportLineLen)
		off := r.pos % reportLineLen
		k := copy(p[n:], line[off:])
		if rem := r.size - r.pos; int64(k) > rem {
			k = int(rem)
		}
		n += k
		r.pos += int64(k)
	}
	return n, nil
}
