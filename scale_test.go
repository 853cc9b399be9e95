package ultcp_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ultcp/ultcp"
	"github.com/ultcp/ultcp/internal/proc"
)

// The scale test holds 10,000 idle connections between two processes (this
// test process dials, a child accepts) and checks the two properties the
// design promises for idle connections (DESIGN.md §2, "many TCP timers";
// §7, "many connections"): no goroutine per connection, and no work — so no
// CPU time — while nothing happens. It reports memory per connection.
//
// It uses only the exported API (and internal/proc for the child), so it
// lives in package ultcp_test; the package's TestMain runs proc.RunChild.

const (
	scaleConns = 10_000
	scaleIdle  = 10 * time.Second
	// scaleRing is the smallest ring the fabric offers: the test is about
	// connections, not bandwidth (docs/fabric.md §2 sizes 10,000 of them).
	scaleRing = 4 << 10
	// scaleGoroutineSlack allows for goroutines the runtime or the stack
	// starts and ends on their own (a GC helper, a finishing Close); it
	// does not scale with connections.
	scaleGoroutineSlack = 2
)

func init() {
	proc.Register("scale-server", roleScaleServer)
}

// scaleSample is one process's state at a point of the test.
type scaleSample struct {
	Conns      int    // connections held
	Goroutines int    // runtime.NumGoroutine
	HeapAlloc  uint64 // bytes, after a GC
	RssAnon    uint64 // bytes of private memory resident (/proc/self/status)
	RssShmem   uint64 // bytes of shared memory resident (the fabric's rings)
	CPU        int64  // user+system CPU time so far, ns (getrusage)
	Err        string
}

// sample measures this process; gc runs a collection first so that the
// heap figure counts live objects only (it costs CPU, so the idle window
// is measured without it).
func sample(conns int, gc bool) scaleSample {
	s := scaleSample{Conns: conns, CPU: cpuTime()}
	if gc {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s.HeapAlloc = ms.HeapAlloc
		s.RssAnon, s.RssShmem = rss()
	}
	s.Goroutines = runtime.NumGoroutine()
	return s
}

func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// rss reads RssAnon and RssShmem from /proc/self/status, in bytes.
func rss() (anon, shmem uint64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "RssAnon":
			anon = kb << 10
		case "RssShmem":
			shmem = kb << 10
		}
	}
	return anon, shmem
}

// roleScaleServer (args: fabric dir, address, port) accepts connections
// and holds them. Each line on stdin asks for a sample: "mem" (after a
// GC) or "cpu" (without); end of stdin closes everything.
func roleScaleServer(args []string) error {
	if len(args) != 3 {
		return errors.New("need fabric dir, address and port")
	}
	s, err := ultcp.NewStack(ultcp.Config{FabricDir: args[0], Addr: netip.MustParseAddr(args[1]), RingSize: scaleRing})
	if err != nil {
		return err
	}
	defer s.Close()
	lc := ultcp.ListenConfig{Stack: s, Backlog: 1024}
	l, err := lc.Listen(context.Background(), "tcp", ":"+args[2])
	if err != nil {
		return err
	}
	defer l.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	if err := proc.Send(scaleSample{Goroutines: -1}); err != nil { // ready
		return err
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		mu.Lock()
		n := len(conns)
		mu.Unlock()
		proc.Send(sample(n, sc.Text() == "mem"))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return nil
}

func scaleDir(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join("/dev/shm", "ultcp-scale-test-"+hex.EncodeToString(b[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ask asks the child for a sample (what: "mem" or "cpu") and waits for it.
func ask(t *testing.T, c *proc.Child, what string) scaleSample {
	t.Helper()
	if _, err := fmt.Fprintln(c.Stdin(), what); err != nil {
		t.Fatal(err)
	}
	var s scaleSample
	if err := c.Recv(&s, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// askConns waits until the child holds n connections.
func askConns(t *testing.T, c *proc.Child, n int) scaleSample {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := ask(t, c, "mem")
		if s.Conns == n {
			return s
		}
		if time.Now().After(end) {
			t.Fatalf("the server holds %d connections, want %d", s.Conns, n)
		}
	}
}

func TestTenThousandIdleConnectionsBetweenTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 10,000 connections idle for 10 s; skipped with -short")
	}
	dir := scaleDir(t)
	child, err := proc.Start("scale-server", dir, "10.77.0.2", "80")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		child.Stdin().Close()
		if err := child.Wait(30 * time.Second); err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	var ready scaleSample
	if err := child.Recv(&ready, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s, err := ultcp.NewStack(ultcp.Config{FabricDir: dir, Addr: netip.MustParseAddr("10.77.0.1"), RingSize: scaleRing})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conns := make([]net.Conn, 0, scaleConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func(n int) {
		t.Helper()
		for len(conns) < n {
			c, err := s.Dial("tcp", "10.77.0.2:80")
			if err != nil {
				t.Fatalf("dial %d: %v", len(conns)+1, err)
			}
			conns = append(conns, c)
		}
	}

	// One connection first: first contact starts the per-peer machinery,
	// which is per peer, not per connection.
	dial(1)
	time.Sleep(100 * time.Millisecond)
	here1, there1 := sample(1, true), askConns(t, child, 1)

	start := time.Now()
	dial(scaleConns)
	there := askConns(t, child, scaleConns)
	dialTime := time.Since(start)
	// Let delayed ACKs and the progress engine's grace period pass.
	time.Sleep(time.Second)
	here, there := sample(scaleConns, true), ask(t, child, "mem")

	t.Run("GoroutinesDoNotGrowWithConnections", func(t *testing.T) {
		t.Logf("goroutines with 1 and %d connections: dialler %d → %d, acceptor %d → %d",
			scaleConns, here1.Goroutines, here.Goroutines, there1.Goroutines, there.Goroutines)
		if here.Goroutines > here1.Goroutines+scaleGoroutineSlack || there.Goroutines > there1.Goroutines+scaleGoroutineSlack {
			t.Errorf("goroutines grew with connections: dialler %d → %d, acceptor %d → %d",
				here1.Goroutines, here.Goroutines, there1.Goroutines, there.Goroutines)
		}
	})

	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / (scaleConns - 1) }
	t.Logf("dialled %d connections in %v (%.1f µs each)", scaleConns, dialTime.Round(time.Millisecond), float64(dialTime.Microseconds())/scaleConns)
	t.Logf("memory per idle connection, dialler: heap %.0f B, private RSS %.0f B, shared (ring) RSS %.0f B",
		per(here1.HeapAlloc, here.HeapAlloc), per(here1.RssAnon, here.RssAnon), per(here1.RssShmem, here.RssShmem))
	t.Logf("memory per idle connection, acceptor: heap %.0f B, private RSS %.0f B, shared (ring) RSS %.0f B",
		per(there1.HeapAlloc, there.HeapAlloc), per(there1.RssAnon, there.RssAnon), per(there1.RssShmem, there.RssShmem))

	t.Run("IdleUnderOnePercentOfACore", func(t *testing.T) {
		c0, cc0 := cpuTime(), ask(t, child, "cpu").CPU
		w0 := time.Now()
		time.Sleep(scaleIdle)
		c1, cc1 := cpuTime(), ask(t, child, "cpu").CPU
		wall := time.Since(w0)
		here, there := float64(c1-c0)/float64(wall), float64(cc1-cc0)/float64(wall)
		t.Logf("idle %v with %d connections: dialler %.3f %% of a core (%v CPU), acceptor %.3f %% (%v CPU)",
			wall.Round(time.Millisecond), scaleConns, 100*here, time.Duration(c1-c0), 100*there, time.Duration(cc1-cc0))
		if here+there >= 0.01 {
			t.Errorf("the two processes used %.2f %% of a core while idle, want under 1 %%", 100*(here+there))
		}
	})
}
