package fabric

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/proc"
)

// Benchmarks across two processes: this one sends, a child receives.
// The comparison with the floors is fabric/fabricbench's job; these are
// for tuning the fabric itself.

func init() {
	proc.Register("bench-peer", roleBenchPeer)
}

type benchResult struct {
	Bytes int64
	CPU   int64 // the child's user+system CPU time, ns
}

// roleBenchPeer accepts one connection and either echoes each record
// (args[3] == "echo") or consumes records by copying them out until EOF,
// then reports its CPU time. args[2] is the spin budget.
func roleBenchPeer(args []string) error {
	spin, _ := time.ParseDuration(args[2])
	f, err := Open(Config{Dir: args[0], SlabSize: 1 << 30, SpinBudget: spin})
	if err != nil {
		return err
	}
	n, err := f.Join(netip.MustParseAddr(args[1]))
	if err != nil {
		return err
	}
	defer n.Close()
	proc.Send(ready{true})
	c, err := n.Accept(context.Background())
	if err != nil {
		return err
	}
	if path := os.Getenv("ULTCP_PEER_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	var think time.Duration
	if len(args) > 4 {
		think, _ = time.ParseDuration(args[4])
	}
	cpu0 := cpuTime()
	buf := make([]byte, 8<<20)
	var total int64
	for {
		k, err := c.Recv(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		total += int64(k)
		if think > 0 {
			for t0 := time.Now(); time.Since(t0) < think; {
			}
		}
		if args[3] == "echo" {
			if err := c.Send(buf[:k]); err != nil {
				return err
			}
		}
	}
	c.Close()
	return proc.Send(benchResult{Bytes: total, CPU: int64(cpuTime() - cpu0)})
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchConn(b *testing.B, spin time.Duration, mode string, ring int, more ...string) (*Conn, *proc.Child) {
	b.Helper()
	dir := testDir(b)
	ch, err := proc.Start("bench-peer", append([]string{dir, addrB.String(), spin.String(), mode}, more...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ch.Kill(); ch.Wait(10 * time.Second) })
	var r ready
	if err := ch.Recv(&r, 20*time.Second); err != nil {
		b.Fatal(err)
	}
	f, err := Open(Config{Dir: dir, SlabSize: 1 << 30, SpinBudget: spin})
	if err != nil {
		b.Fatal(err)
	}
	n, err := f.Join(addrA)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	c, err := n.Dial(context.Background(), addrB, ConnConfig{RingSize: ring})
	if err != nil {
		b.Fatal(err)
	}
	return c, ch
}

func benchPingPong(b *testing.B, spin time.Duration, think ...string) {
	c, _ := benchConn(b, spin, "echo", 64<<10, think...)
	msg := []byte("pingpong")
	buf := make([]byte, 64)
	for range 1000 { // warm up both sides
		c.Send(msg)
		c.Recv(buf)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := c.Send(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Recv(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2, "ns/half-rtt")
	c.Close()
}

// BenchmarkPingPong8BSpin: both sides busy-poll (default spin budget).
func BenchmarkPingPong8BSpin(b *testing.B) { benchPingPong(b, DefaultSpinBudget) }

// BenchmarkPingPong8BFutex: both sides sleep at once (every record costs a
// futex wake-up).
func BenchmarkPingPong8BFutex(b *testing.B) { benchPingPong(b, -1) }

// BenchmarkPingPongThink is the spin budget's trade-off: the peer answers
// after a think time, and both sides use the budget given. A budget shorter
// than the think time puts the waiting side to sleep for every record, so
// each round trip pays a futex wake-up on top of the think time.
func BenchmarkPingPongThink(b *testing.B) {
	for _, think := range []time.Duration{5 * time.Microsecond, 20 * time.Microsecond, 100 * time.Microsecond} {
		for _, spin := range []time.Duration{-1, 10 * time.Microsecond, 50 * time.Microsecond, 200 * time.Microsecond} {
			b.Run(fmt.Sprintf("think=%v/spin=%v", think, spin), func(b *testing.B) {
				benchPingPong(b, spin, think.String())
			})
		}
	}
}

func benchStream(b *testing.B, block int, dma bool) {
	ring := 4 << 20 // as the floor's ring copy
	if dma {
		ring = 64 << 10
	}
	c, ch := benchConn(b, DefaultSpinBudget, "drain", ring)
	if dma && !c.DMA() {
		b.Skip("no process_vm_readv here")
	}
	p := make([]byte, block)
	for i := range p {
		p[i] = byte(i)
	}
	b.SetBytes(int64(block))
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		var err error
		if dma {
			err = c.SendDMA(nil, p)
		} else {
			err = c.Send(p)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if os.Getenv("ULTCP_DEBUG") != "" {
		b.Logf("wakeAt %d", c.wakeAt)
	}
	c.Close()
	var res benchResult
	if err := ch.Recv(&res, 60*time.Second); err != nil {
		b.Fatal(err)
	}
	el := b.Elapsed()
	b.StopTimer()
	bytes := float64(block) * float64(b.N)
	if res.Bytes != int64(bytes) {
		b.Fatal(errors.New("receiver got " + strconv.FormatInt(res.Bytes, 10) + " bytes"))
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/bytes, "sender-ns/B")
	b.ReportMetric(float64(res.CPU)/bytes, "receiver-ns/B")
	b.ReportMetric(bytes/el.Seconds()/1e9, "GB/s")
}

func BenchmarkStreamPIO64K(b *testing.B) { benchStream(b, 64<<10, false) }
func BenchmarkStreamPIO1M(b *testing.B)  { benchStream(b, 1<<20, false) }
func BenchmarkStreamDMA64K(b *testing.B) { benchStream(b, 64<<10, true) }
func BenchmarkStreamDMA1M(b *testing.B)  { benchStream(b, 1<<20, true) }

// BenchmarkSendRecvOneGoroutine is the fabric's own instruction cost per
// record: send and receive in one goroutine, so no cache line ever moves
// between cores.
func BenchmarkSendRecvOneGoroutine8B(b *testing.B) {
	f, err := Open(Config{Dir: testDir(b), SlabSize: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	a, err := f.Join(addrA)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	nb, err := f.Join(addrB)
	if err != nil {
		b.Fatal(err)
	}
	defer nb.Close()
	ca, err := a.Dial(context.Background(), addrB, ConnConfig{RingSize: 64 << 10})
	if err != nil {
		b.Fatal(err)
	}
	cb, err := nb.Accept(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	msg, buf := []byte("pingpong"), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if err := ca.Send(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := cb.Recv(buf); err != nil {
			b.Fatal(err)
		}
	}
}
