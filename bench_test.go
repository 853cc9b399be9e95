package ultcp

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/proc"
)

// Benchmarks between two processes (the child runs the other end).
//
//	go test -run XXX -bench 'PingPong|Bulk' -benchtime 2s .
//
// pinEnv, set to "split", pins this process to CPU 0 and the child to
// CPU 1 for the ping-pong benchmarks, as `ultcp bench --pin split` does:
// on a busy two-core machine it keeps the scheduler from moving the two
// spinners onto one CPU now and then.
const pinEnv = "ULTCP_BENCH_PIN"

// pinFromEnv pins every thread of this process to cpu if pinEnv says
// split.
func pinFromEnv(cpu int) error {
	if os.Getenv(pinEnv) != "split" {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	return setAffinity(&set)
}

// unpin lets this process's threads run on every CPU again.
func unpin() {
	if os.Getenv(pinEnv) != "split" {
		return
	}
	var set unix.CPUSet
	for i := range runtime.NumCPU() {
		set.Set(i)
	}
	setAffinity(&set)
}

func setAffinity(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			if err := unix.SchedSetaffinity(tid, set); err != nil {
				return err
			}
		}
	}
	return nil
}

// BenchmarkPingPong1Byte measures, in one run, the half round trip of a
// 1-byte message through Conn.Write/Conn.Read, through the raw fabric ring
// (fabric.Conn.Send/Recv, the floor under the stack; fabric-41B with
// records as large as the stack's), and through kernel TCP on loopback
// from the same Go program (net.Conn). Compare ns/half-rtt-med (see
// pingPong), in one run:
//
//	ULTCP_BENCH_PIN=split go test -run XXX -bench 'PingPong1Byte' -benchtime 1s -count 5 .

func init() {
	proc.Register("pong-ultcp", rolePongUltcp)
	proc.Register("pong-fabric", rolePongFabric)
	proc.Register("pong-kernel", rolePongKernel)
	proc.Register("reader", roleReader)
}

func rolePongUltcp(args []string) error {
	if err := pinFromEnv(1); err != nil {
		return err
	}
	s, l, err := childStack(args)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := l.AcceptTCP()
	if err != nil {
		return err
	}
	b := make([]byte, 64)
	for {
		n, err := c.Read(b)
		if err != nil {
			return nil
		}
		if _, err := c.Write(b[:n]); err != nil {
			return nil
		}
	}
}

func rolePongFabric(args []string) error {
	if err := pinFromEnv(1); err != nil {
		return err
	}
	f, err := fabric.Open(fabric.Config{Dir: args[0]})
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
	b := make([]byte, 64)
	for {
		k, err := c.Recv(b)
		if err != nil {
			return nil
		}
		if err := c.Send(b[:k]); err != nil {
			return nil
		}
	}
}

type portMsg struct{ Port int }

func rolePongKernel(args []string) error {
	if err := pinFromEnv(1); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	proc.Send(portMsg{l.Addr().(*net.TCPAddr).Port})
	c, err := l.Accept()
	if err != nil {
		return err
	}
	b := make([]byte, 64)
	for {
		n, err := c.Read(b)
		if err != nil {
			return nil
		}
		if _, err := c.Write(b[:n]); err != nil {
			return nil
		}
	}
}

// roleReader reads everything into a 1 MiB buffer (one copy into the
// application's memory) and reports the byte count at EOF.
func roleReader(args []string) error {
	s, l, err := childStack(args)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := l.AcceptTCP()
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := c.Read(buf)
		total += int64(n)
		if err != nil {
			break
		}
	}
	c.Close()
	proc.Send(sinkResult{Bytes: total})
	untilStdinCloses()
	return nil
}

// pingPong measures 1-byte round trips on c and reports the half round
// trip two ways: ns/half-rtt is the mean over every round trip (what
// ns/op says, halved), ns/half-rtt-med the median of the means of batches
// of pingBatch round trips. The median is the figure to compare with
// `ultcp bench` (which reports medians of round trips timed one by one):
// on this two-core machine a spinning pair is now and then preempted (a
// progress engine or GC worker, another process), and a single such stall
// of tens of microseconds moves the mean of a million 300 ns round trips
// by a visible amount, while it moves only one batch. Timing a batch, not
// each round trip, keeps the clock reads (~20 ns each here) out of the
// figure.
//
// Before the timer starts, the pair ping-pongs for pingWarmUp, as `ultcp
// bench` does: a child process starts on its parent's CPU, and until the
// scheduler moves one of the two spinners away (up to a second here) a
// round trip costs microseconds, which the mean would otherwise include.
func pingPong(b *testing.B, c io.ReadWriter) { pingPongN(b, c, 1) }

// pingPongN is pingPong with messages of n bytes.
func pingPongN(b *testing.B, c io.ReadWriter, n int) {
	b.ReportAllocs()
	msg := make([]byte, n)
	got := make([]byte, n)
	rt := func() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
	for end := time.Now().Add(pingWarmUp); time.Now().Before(end); {
		for range pingBatch {
			rt()
		}
	}
	batches := make([]time.Duration, 0, 1<<16)
	b.ResetTimer()
	t0, i := time.Now(), 0
	for b.Loop() {
		rt()
		if i++; i == pingBatch {
			t1 := time.Now()
			if len(batches) < cap(batches) {
				batches = append(batches, t1.Sub(t0))
			}
			t0, i = t1, 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2, "ns/half-rtt")
	if len(batches) > 0 {
		slices.Sort(batches)
		b.ReportMetric(float64(batches[len(batches)/2].Nanoseconds())/pingBatch/2, "ns/half-rtt-med")
	}
}

// pingWarmUp and pingBatch: see pingPong.
const (
	pingWarmUp = 200 * time.Millisecond
	pingBatch  = 64
)

// fabricRW adapts a raw fabric connection to io.ReadWriter for pingPong.
type fabricRW struct{ c *fabric.Conn }

func (f fabricRW) Write(p []byte) (int, error) { return len(p), f.c.Send(p) }
func (f fabricRW) Read(p []byte) (int, error)  { return f.c.Recv(p) }

func BenchmarkPingPong1Byte(b *testing.B) {
	if err := pinFromEnv(0); err != nil {
		b.Fatal(err)
	}
	defer unpin()
	b.Run("ultcp", func(b *testing.B) {
		dir := testDir(b)
		startChild(b, "pong-ultcp", dir, addrB, 7)
		a := newStack(b, dir, addrA)
		c, err := a.Dial("tcp", "10.77.0.2:7")
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		st0 := a.Stats()
		pingPong(b, c)
		// How often this side's Read gave up spinning and slept, and how
		// often its progress engine woke: both cost microseconds.
		st1 := a.Stats()
		b.ReportMetric(float64(st1.Sleeps-st0.Sleeps)/float64(b.N), "sleeps/op")
		b.ReportMetric(float64(st1.EngineWakeups-st0.EngineWakeups)/float64(b.N), "wakeups/op")
	})
	// fabric-41B: raw records as large as the record of an ultcp
	// 1-byte segment (40 bytes of headers and the byte). A 56-byte ring
	// record often spans two cache lines where a 1-byte one (16 bytes)
	// spans one, and the extra line transfer is part of the floor
	// under ultcp.
	for _, size := range []int{1, tmplLen + 1} {
		name := "fabric"
		if size > 1 {
			name = "fabric-41B"
		}
		b.Run(name, func(b *testing.B) { benchFabricPingPong(b, size) })
	}
	b.Run("kernel", func(b *testing.B) {
		ch, err := proc.Start("pong-kernel")
		if err != nil {
			b.Fatal(err)
		}
		defer func() { ch.Kill(); ch.Wait(5 * time.Second) }()
		var pm portMsg
		if err := ch.Recv(&pm, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(pm.Port))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		pingPong(b, c)
	})
}

// benchFabricPingPong ping-pongs size-byte records over a raw fabric
// connection with a child process.
func benchFabricPingPong(b *testing.B, size int) {
	dir := testDir(b)
	startChild(b, "pong-fabric", dir, addrB, 0)
	f, err := fabric.Open(fabric.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	n, err := f.Join(addrA)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	c, err := n.Dial(context.Background(), addrB, fabric.ConnConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pingPongN(b, fabricRW{c}, size)
}

// BenchmarkBulk streams writes of one block size to a child that reads
// into a 1 MiB buffer; MB/s counts payload.
func BenchmarkBulk(b *testing.B) {
	for _, mode := range []struct {
		name string
		dma  int
	}{{"PIO", -1}, {"DMA", 64 << 10}} {
		for _, block := range []int{4 << 10, 64 << 10, 256 << 10, 1 << 20} {
			if mode.dma > 0 && block < mode.dma {
				continue
			}
			b.Run(mode.name+"/"+strconv.Itoa(block>>10)+"KiB", func(b *testing.B) {
				dir := testDir(b)
				ch := startChild(b, "reader", dir, addrB, 9)
				a := newStack(b, dir, addrA, func(c *Config) { c.DMAThreshold = mode.dma })
				d := Dialer{Stack: a}
				c, err := d.DialTCP(context.Background(), "tcp", "10.77.0.2:9")
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				buf := make([]byte, block)
				b.SetBytes(int64(block))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				c.CloseWrite()
				var res sinkResult
				if err := ch.Recv(&res, 60*time.Second); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if res.Bytes != int64(b.N)*int64(block) {
					b.Fatalf("reader got %d bytes, sent %d", res.Bytes, int64(b.N)*int64(block))
				}
			})
		}
	}
}

// BenchmarkOverheadOneGoroutine runs a 1-byte exchange between two stacks
// of this process in a single goroutine (client Write, server Read,
// server Write, client Read: data is always there when read), so it
// measures the CPU cost of the stack's own code per message, without
// cross-core transfers or waiting, against the raw fabric ring doing the
// same. ns/msg is per one-way message; cpu-ns/msg is the same from this
// thread's CPU time, which a busy machine inflates less (time the thread
// spends preempted does not count).
func BenchmarkOverheadOneGoroutine(b *testing.B) {
	b.Run("ultcp", func(b *testing.B) {
		c, s := pair(b)
		msg, got := []byte{1}, make([]byte, 1)
		b.ReportAllocs()
		cpu := threadCPU(b)
		for b.Loop() {
			c.Write(msg)
			if n, err := s.Read(got); n != 1 || err != nil {
				b.Fatal(n, err)
			}
			s.Write(msg)
			if n, err := c.Read(got); n != 1 || err != nil {
				b.Fatal(n, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2, "ns/msg")
		cpu()
	})
	b.Run("fabric", func(b *testing.B) {
		dir := testDir(b)
		f, err := fabric.Open(fabric.Config{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		na, _ := f.Join(addrA)
		nb, _ := f.Join(addrB)
		defer na.Close()
		defer nb.Close()
		c, err := na.Dial(context.Background(), addrB, fabric.ConnConfig{})
		if err != nil {
			b.Fatal(err)
		}
		s, err := nb.Accept(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		msg, got := []byte{1}, make([]byte, 64)
		b.ReportAllocs()
		cpu := threadCPU(b)
		for b.Loop() {
			c.Send(msg)
			s.Recv(got)
			s.Send(msg)
			c.Recv(got)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2, "ns/msg")
		cpu()
	})
}

// threadCPU locks the benchmark to its thread and returns a function that
// reports the thread's CPU time per one-way message (two per b.N round).
func threadCPU(b *testing.B) func() {
	runtime.LockOSThread()
	t0 := threadTime()
	return func() {
		b.ReportMetric(float64(threadTime()-t0)/float64(b.N)/2, "cpu-ns/msg")
		runtime.UnlockOSThread()
	}
}

// threadTime is the calling thread's CPU time in nanoseconds.
func threadTime() int64 {
	var ts syscall.Timespec
	const clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}
