package ultcp

import (
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/proc"
)

// The connection-rate benchmark (netperf's TCP_CRR, issue 6): connect,
// one byte each way, close, between two processes. The child runs the
// server as `ultcp bench` does (it answers in its accepting goroutine);
// the benchmark's process dials. Profile the dialling side with
//
//	go test -run X -bench CRR -benchtime 2s -cpuprofile /tmp/crr.pprof .
//
// (the harness's ULTCP_BENCH_CPUPROFILE profiles both sides of
// `ultcp bench`).

func init() {
	proc.Register("crr-server", roleCRRServer)
}

// roleCRRServer accepts connections and answers each one-byte request
// with one byte and a close, in the accepting goroutine.
func roleCRRServer(args []string) error {
	s, l, err := childStack(args)
	if err != nil {
		return err
	}
	defer s.Close()
	go func() {
		b := make([]byte, 1)
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(b); err == nil {
				c.Write(b)
			}
			c.Close()
		}
	}()
	untilStdinCloses()
	return nil
}

func BenchmarkCRR(b *testing.B) {
	dir := testDir(b)
	startChild(b, "crr-server", dir, addrB, 80)
	a := newStack(b, dir, addrA)
	one := func() error {
		c, err := a.Dial("tcp", "10.77.0.2:80")
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := []byte{'C'}
		if _, err := c.Write(buf); err != nil {
			return err
		}
		_, err = c.Read(buf)
		return err
	}
	for range 100 { // first contact, warm pools
		if err := one(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if err := one(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conns/s")
}
