package bench

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/proc"
)

// Conn is one byte stream between the two processes of a transport, seen
// as NetPIPE sees it: whole messages of a size both sides know.
type Conn interface {
	// Send sends all of p.
	Send(p []byte) error
	// Recv fills all of p.
	Recv(p []byte) error
	Close() error
}

// Listener accepts the server side of Conns.
type Listener interface {
	Accept() (Conn, error)
	Close() error
}

// NetConn adapts a net.Conn (kernel TCP, Unix sockets, ultcp, gonet).
func NetConn(c net.Conn) Conn { return netConn{c} }

type netConn struct{ c net.Conn }

func (n netConn) Send(p []byte) error { _, err := n.c.Write(p); return err }
func (n netConn) Recv(p []byte) error { _, err := io.ReadFull(n.c, p); return err }
func (n netConn) Close() error        { return n.c.Close() }

// NetListener adapts a net.Listener.
func NetListener(l net.Listener) Listener { return netListener{l} }

type netListener struct{ l net.Listener }

func (n netListener) Accept() (Conn, error) {
	c, err := n.l.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // Go's default, said out loud: no Nagle on either side
	}
	return NetConn(c), nil
}
func (n netListener) Close() error { return n.l.Close() }

// The first byte a client sends on a connection says what it is for.
const (
	kindPingPong = 'P'
	kindCRR      = 'C'
)

// cpuNow is this process's user+system CPU time (getrusage RUSAGE_SELF):
// every thread counts, spinning included, and for ultcp the progress
// engine too.
func cpuNow() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Ready is the first line a server or client child sends its parent.
type Ready struct {
	Addr  string `json:"addr,omitempty"`
	Link  string `json:"link,omitempty"` // how the transport's packets travel, when it is not obvious
	Error string `json:"error,omitempty"`
}

// Serve answers clients on l until stdin is closed (the parent's way of
// saying stop): ping-pong connections bounce whole messages of the size
// each batch header announces, connection-rate connections answer one
// byte and close. It reports addr to the parent first.
func Serve(l Listener, addr, link string) error {
	if err := proc.Send(Ready{Addr: addr, Link: link}); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				errc <- err
				return
			}
			// Like netperf's server, answer a connection-rate connection
			// in the accepting goroutine: no hand-off to another one.
			// The client sends its first byte as soon as it is connected.
			if pp := serveFirst(c); pp {
				go func() {
					defer c.Close()
					if err := servePingPong(c); err != nil && !errors.Is(err, io.EOF) {
						fmt.Fprintf(os.Stderr, "bench server: %v\n", err)
					}
				}()
			}
		}
	}()
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	select {
	case <-stop:
		l.Close()
		return nil
	case err := <-errc:
		return fmt.Errorf("accept: %w", err)
	}
}

// serveFirst reads the byte saying what a connection is for. It answers
// and closes a connection-rate connection and reports whether c is a
// ping-pong connection for the caller to serve.
func serveFirst(c Conn) bool {
	var kind [1]byte
	if err := c.Recv(kind[:]); err != nil {
		c.Close()
		return false
	}
	if kind[0] == kindPingPong {
		return true
	}
	if kind[0] == kindCRR {
		_ = c.Send(kind[:])
	}
	c.Close()
	return false
}

// servePingPong runs batches: a 16-byte header (size, round trips), then
// that many receive-whole-message, send-it-back turns, then 8 bytes of
// the CPU time this process spent on the batch. A zero round-trip count
// ends the connection.
func servePingPong(c Conn) error {
	var hdr [16]byte
	var buf []byte
	for {
		if err := c.Recv(hdr[:]); err != nil {
			return err
		}
		n := binary.LittleEndian.Uint64(hdr[:8])
		reps := binary.LittleEndian.Uint64(hdr[8:])
		if reps == 0 {
			return nil
		}
		if n > maxMessage {
			return fmt.Errorf("message size %d above %d", n, maxMessage)
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		cpu0 := cpuNow()
		for range reps {
			if err := c.Recv(buf); err != nil {
				return err
			}
			if err := c.Send(buf); err != nil {
				return err
			}
		}
		binary.LittleEndian.PutUint64(hdr[:8], uint64(cpuNow()-cpu0))
		if err := c.Send(hdr[:8]); err != nil {
			return err
		}
	}
}

// maxMessage bounds what a server allocates for a header it was sent.
const maxMessage = 64 << 20

// Command is what the parent asks a client child to do, one JSON line on
// its stdin.
type Command struct {
	Op string `json:"op"` // "pp" or "crr"
	// Size is the message size of a ping-pong point.
	Size int `json:"size,omitempty"`
	// Budget bounds the time spent on the point (ping-pong) or the test
	// (crr).
	Budget time.Duration `json:"budget,omitempty"`
	// MinTime is the least time a ping-pong point runs, stable or not, so
	// that a quiet moment of a few milliseconds does not stand for the
	// point.
	MinTime time.Duration `json:"min_time,omitempty"`
}

// Point is one ping-pong measurement, as the client child reports it.
type Point struct {
	Size       int           `json:"size"`
	RoundTrips int           `json:"round_trips"`
	Batches    int           `json:"batches"`
	Stable     bool          `json:"stable"`
	HalfMin    time.Duration `json:"half_min"`
	HalfMedian time.Duration `json:"half_median"`
	CPUPerRT   time.Duration `json:"cpu_per_rt"` // client and server together
	Error      string        `json:"error,omitempty"`
}

// CRRResult is one connection-rate measurement.
type CRRResult struct {
	Conns   int           `json:"conns"`
	Elapsed time.Duration `json:"elapsed"`
	// Rates are the connections per second of each crrBatch-long batch:
	// their median is the rate reported, as ping-pong reports median
	// times, so that a few milliseconds during which the host took a CPU
	// away (common on a small shared machine) do not decide the result.
	Rates []float64 `json:"rates,omitempty"`
	Error string    `json:"error,omitempty"`
}

// crrBatch is how long one batch of the connection-rate test lasts.
const crrBatch = 20 * time.Millisecond

// MedianRate is the median batch rate, or the overall rate when there
// were no complete batches.
func (r *CRRResult) MedianRate() float64 {
	if len(r.Rates) == 0 {
		if r.Elapsed <= 0 {
			return 0
		}
		return float64(r.Conns) / r.Elapsed.Seconds()
	}
	return median(r.Rates)
}

// Client runs the client child: it dials the ping-pong connection, says it
// is ready, then obeys commands from stdin until stdin closes, answering
// each with one JSON line (Point or CRRResult). dial's argument says
// whether the connection is for ping-pong (large messages) or for the
// connection-rate test (one byte each way), for transports that size
// their buffers per connection.
func Client(dial func(pingPong bool) (Conn, error), link string) error {
	c, err := dial(true)
	if err != nil {
		_ = proc.Send(Ready{Error: err.Error()})
		return err
	}
	defer c.Close()
	if err := c.Send([]byte{kindPingPong}); err != nil {
		return err
	}
	if err := proc.Send(Ready{Link: link}); err != nil {
		return err
	}
	pp := &pinger{c: c}
	dec := json.NewDecoder(os.Stdin)
	for {
		var cmd Command
		if err := dec.Decode(&cmd); err != nil {
			if errors.Is(err, io.EOF) {
				var hdr [16]byte // reps 0: the server closes its side
				_ = c.Send(hdr[:])
				return nil
			}
			return err
		}
		switch cmd.Op {
		case "pp":
			p, err := pp.point(cmd.Size, cmd.MinTime, cmd.Budget)
			if err != nil {
				p.Error = err.Error()
			}
			if err := proc.Send(p); err != nil {
				return err
			}
			if p.Error != "" {
				return errors.New(p.Error)
			}
		case "crr":
			r := crr(dial, cmd.Budget)
			if err := proc.Send(r); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown command %q", cmd.Op)
		}
	}
}

// pinger measures ping-pong points on one connection.
type pinger struct {
	c       Conn
	buf     []byte
	samples []time.Duration
}

// Batches aim at batchTarget each; a point is stable when two batch
// medians in a row agree within stableWithin, after at least minBatches.
const (
	batchTarget  = 8 * time.Millisecond
	minBatches   = 3
	maxBatches   = 50
	stableWithin = 0.03
	maxSamples   = 1 << 20
)

// point measures one size: batches until the point is stable and minTime
// has passed, or budget is spent.
func (p *pinger) point(size int, minTime, budget time.Duration) (Point, error) {
	pt := Point{Size: size}
	if size <= 0 || size > maxMessage {
		return pt, fmt.Errorf("message size %d out of range", size)
	}
	if cap(p.buf) < size {
		p.buf = make([]byte, size)
		for i := range p.buf {
			p.buf[i] = byte(i)
		}
	}
	buf := p.buf[:size]
	start := time.Now()
	deadline := start.Add(budget)
	p.samples = p.samples[:0]
	// A warm-up batch sizes the real ones and touches every page.
	per, _, err := p.batch(buf, 2, false)
	if err != nil {
		return pt, err
	}
	reps := max(1, int(batchTarget/max(per, time.Nanosecond)))
	reps = min(reps, 20000)
	var cpu time.Duration
	prev := time.Duration(-1)
	for pt.Batches < maxBatches {
		from := len(p.samples)
		mean, c, err := p.batch(buf, reps, true)
		if err != nil {
			return pt, err
		}
		cpu += c
		pt.Batches++
		pt.RoundTrips += reps
		med := median(p.samples[from:])
		pt.Stable = prev >= 0 && pt.Batches >= minBatches && absRel(med, prev) <= stableWithin
		if pt.Stable && time.Since(start) >= minTime {
			break
		}
		prev = med
		// The warm-up's estimate includes first touches and a wake-up;
		// size the next batch from this one, so that per-batch costs
		// (header, getrusage) stay negligible next to batchTarget.
		reps = min(max(1, int(batchTarget/max(mean, time.Nanosecond))), 20000)
		if time.Now().After(deadline) || len(p.samples)+reps > maxSamples {
			break
		}
	}
	sort.Slice(p.samples, func(i, j int) bool { return p.samples[i] < p.samples[j] })
	pt.HalfMin = p.samples[0] / 2
	pt.HalfMedian = p.samples[len(p.samples)/2] / 2
	pt.CPUPerRT = cpu / time.Duration(pt.RoundTrips)
	return pt, nil
}

// batch runs reps round trips and returns the mean round trip and the CPU
// time of both processes; with keep it records every round trip in
// p.samples.
func (p *pinger) batch(buf []byte, reps int, keep bool) (time.Duration, time.Duration, error) {
	var hdr [16]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(buf)))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(reps))
	if err := p.c.Send(hdr[:]); err != nil {
		return 0, 0, err
	}
	cpu0 := cpuNow()
	t0 := time.Now()
	last := t0
	for range reps {
		if err := p.c.Send(buf); err != nil {
			return 0, 0, err
		}
		if err := p.c.Recv(buf); err != nil {
			return 0, 0, err
		}
		if keep {
			now := time.Now()
			p.samples = append(p.samples, now.Sub(last))
			last = now
		}
	}
	elapsed := time.Since(t0)
	cpu := cpuNow() - cpu0
	if err := p.c.Recv(hdr[:8]); err != nil {
		return 0, 0, err
	}
	cpu += time.Duration(binary.LittleEndian.Uint64(hdr[:8]))
	return elapsed / time.Duration(reps), cpu, nil
}

// median is the middle of s (the upper of the two middles when len(s) is
// even), which it does not reorder.
func median[T cmp.Ordered](s []T) T {
	c := slices.Clone(s)
	slices.Sort(c)
	return c[len(c)/2]
}

func absRel(a, b time.Duration) float64 {
	d := float64(a - b)
	if d < 0 {
		d = -d
	}
	return d / float64(max(b, 1))
}

// crr opens, uses and closes connections for budget: connect, one byte
// each way, close (netperf's TCP_CRR).
func crr(dial func(pingPong bool) (Conn, error), budget time.Duration) CRRResult {
	var r CRRResult
	start := time.Now()
	deadline := start.Add(budget)
	b := []byte{kindCRR}
	batchStart, batchConns := start, 0
	for {
		now := time.Now()
		if d := now.Sub(batchStart); d >= crrBatch {
			r.Rates = append(r.Rates, float64(batchConns)/d.Seconds())
			batchStart, batchConns = now, 0
		}
		if !now.Before(deadline) {
			break
		}
		c, err := dial(false)
		if err == nil {
			err = c.Send(b)
			if err == nil {
				err = c.Recv(b)
			}
			if cerr := c.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			r.Error = err.Error()
			break
		}
		b[0] = kindCRR
		r.Conns++
		batchConns++
	}
	r.Elapsed = time.Since(start)
	return r
}

var pinOnce sync.Once

// PinFromEnv pins every thread of this process to the CPU named by
// ULTCP_BENCH_CPU, if set. Threads started later inherit the affinity of
// the thread that starts them, so pinning all existing ones pins the
// process for good.
func PinFromEnv() error {
	var err error
	pinOnce.Do(func() { err = pinFromEnv() })
	return err
}
