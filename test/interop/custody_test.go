package interop

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// BenchmarkCustody is issue 7's custody measurement on the real path: a
// node sends to socat in ext through the gateway, with kernel-made loss of
// 1 % each way and the gateway's 20 ms delay, once with the node keeping
// its own copies and once with the gateway in custody (--custody). It
// reports throughput, the time the node's Writes blocked and the most the
// node's engine held for retransmission (ultcp nc -v). Size:
// ULTCP_CUSTODY_BYTES (default 8 MiB).
//
//	sudo go test -run XXX -bench Custody -benchtime 1x ./test/interop
func BenchmarkCustody(b *testing.B) {
	n := int64(8 << 20)
	if v := os.Getenv("ULTCP_CUSTODY_BYTES"); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n <= 0 {
			b.Fatalf("ULTCP_CUSTODY_BYTES=%q: want a positive byte count", v)
		}
	}
	src := zeroFile(b, n)
	for _, mode := range []struct {
		name  string
		extra []string
	}{{"node-retains", nil}, {"custody", []string{"--custody", "256MiB"}}} {
		b.Run(mode.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				tp := NewTopology(b, false)
				cl := newUltcpClusterTB(b, tp, "delay=20ms", mode.extra...)
				tp.Loss(b, 0.01)
				r, err := custodySend(cl, tp, src, 7400+i, n, 10*time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%s: %.2f MB/s, Write blocked %v, retained peak %d B, node retransmits %d, custody %v",
					mode.name, r.mbps, r.blocked, r.peak, r.retrans, r.custody)
				b.ReportMetric(r.mbps, "MB/s")
				b.ReportMetric(float64(r.peak), "retained-peak-B")
				b.ReportMetric(r.blocked.Seconds(), "write-blocked-s")
				b.ReportMetric(float64(r.retrans), "node-retransmits")
			}
		})
	}
}

type custodyResult struct {
	mbps    float64
	blocked time.Duration
	peak    int64
	retrans int64
	custody bool
}

var ncCustodyLine = regexp.MustCompile(`write blocked (\S+); retained peak (\d+) bytes; retransmits (\d+); custody (true|false)`)

// custodySend sends the n bytes of file src from `ultcp nc -v` on a node
// to a socat in ext that discards them, and reads nc's report.
func custodySend(cl *ultcpCluster, tp *Topology, src string, port int, n int64, timeout time.Duration) (custodyResult, error) {
	var res custodyResult
	d, stderr, err := ncSendFile(cl, tp, src, port, timeout, "-v")
	if err != nil {
		return res, err
	}
	res.mbps = float64(n) / d.Seconds() / 1e6
	m := ncCustodyLine.FindStringSubmatch(stderr)
	if m == nil {
		return res, fmt.Errorf("no custody report in ultcp nc's output: %s", stderr)
	}
	if res.blocked, err = time.ParseDuration(m[1]); err != nil {
		return res, err
	}
	res.peak, _ = strconv.ParseInt(m[2], 10, 64)
	res.retrans, _ = strconv.ParseInt(m[3], 10, 64)
	res.custody = m[4] == "true"
	return res, nil
}
