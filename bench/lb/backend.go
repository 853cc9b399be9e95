package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// BackendConfig describes one backend of the benchmark's pool.
type BackendConfig struct {
	// Name is sent in every answer, so the load generator can tell which
	// backend served it.
	Name string
	// Cost is the CPU time one request spins for; Slowdown (≥ 1, 0 means
	// 1) multiplies it.
	Cost     time.Duration
	Slowdown float64
	// Sleep makes the cost waited instead of computed. On a machine with
	// fewer cores than backends, spinning backends share the CPU, so one
	// backend's speed depends on how busy the others are; sleeping keeps
	// them independent (each worker is then a server of fixed speed, as
	// in the simulation), at the price of not loading the CPU.
	Sleep bool
	// StallEvery and StallFor: every StallEvery (from Serve's start) the
	// backend stops for StallFor: it accepts, reads and computes nothing,
	// like a process descheduled or paused by a collector. Zero: never.
	StallEvery, StallFor time.Duration
	// Epoch, if set, is the zero of the stall clock instead of Serve's
	// start: a load generator told the same epoch can start its run at a
	// fixed phase of the stalls, so that every policy meets them at the
	// same points of the same arrivals.
	Epoch time.Time
	// Workers is how many requests it serves at once (default 1). A
	// worker accepts a connection and reads its request only when it is
	// free, so waiting requests stay in the transport.
	Workers int
	// Timeout bounds reading one request and writing its answer
	// (default 5 s).
	Timeout time.Duration
}

// Backend is the benchmark's HTTP/1.1 service: GET of any path answers
// 200 with the body "ultcp-lb <name> <path>\n" after spinning for the
// request's cost, then closes the connection.
type Backend struct {
	cfg    BackendConfig
	start  time.Time
	served atomic.Uint64
	failed atomic.Uint64
}

// maxRequest bounds the request head a worker reads.
const maxRequest = 8 << 10

// NewBackend checks cfg and makes a backend.
func NewBackend(cfg BackendConfig) (*Backend, error) {
	if cfg.Slowdown == 0 {
		cfg.Slowdown = 1
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	switch {
	case cfg.Name == "" || bytes.ContainsAny([]byte(cfg.Name), " \r\n"):
		return nil, fmt.Errorf("lb backend: name %q must be one word", cfg.Name)
	case cfg.Cost < 0 || cfg.Cost > time.Second:
		return nil, fmt.Errorf("lb backend: cost %v, want 0 to 1s", cfg.Cost)
	case cfg.Slowdown < 1 || cfg.Slowdown > 1000:
		return nil, fmt.Errorf("lb backend: slowdown %v, want 1 to 1000", cfg.Slowdown)
	case cfg.StallFor < 0 || cfg.StallEvery < 0 || cfg.StallFor > 0 && cfg.StallFor >= cfg.StallEvery:
		return nil, fmt.Errorf("lb backend: stall %v every %v: want a stall shorter than its period", cfg.StallFor, cfg.StallEvery)
	case cfg.Workers < 1 || cfg.Workers > 4096:
		return nil, fmt.Errorf("lb backend: %d workers, want 1 to 4096", cfg.Workers)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("lb backend: negative timeout %v", cfg.Timeout)
	}
	return &Backend{cfg: cfg}, nil
}

// Served is the number of requests answered with 200; Failed those
// answered with an error status or dropped.
func (b *Backend) Served() uint64 { return b.served.Load() }
func (b *Backend) Failed() uint64 { return b.failed.Load() }

// Serve runs the workers on l until ctx ends (it then closes l) or l
// fails; it returns when every worker has stopped. A context ending is
// not an error.
func (b *Backend) Serve(ctx context.Context, l net.Listener) error {
	b.start = time.Now()
	if !b.cfg.Epoch.IsZero() {
		b.start = b.cfg.Epoch
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	errs := make([]error, b.cfg.Workers)
	for w := 0; w < b.cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = b.worker(ctx, l)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

func (b *Backend) worker(ctx context.Context, l net.Listener) error {
	buf := make([]byte, maxRequest)
	out := make([]byte, 0, 256)
	for {
		b.waitStall(ctx)
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.Close() // one worker's listener error stops the others
			return fmt.Errorf("lb backend %s: accept: %w", b.cfg.Name, err)
		}
		out = b.handle(ctx, c, buf, out)
	}
}

// handle serves one connection: read the request head, spin, answer,
// close. Every failure closes the connection; none stops the worker.
func (b *Backend) handle(ctx context.Context, c net.Conn, buf, out []byte) []byte {
	defer c.Close()
	c.SetDeadline(time.Now().Add(b.cfg.Timeout))
	n, err := readHead(c, buf)
	if err != nil {
		b.failed.Add(1)
		if errors.Is(err, errHeadTooLarge) {
			c.Write([]byte("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		}
		return out
	}
	method, path, ok := parseRequestLine(buf[:n])
	if !ok {
		b.failed.Add(1)
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		return out
	}
	if string(method) != "GET" {
		b.failed.Add(1)
		c.Write([]byte("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		return out
	}
	if b.cfg.Sleep {
		b.sleep(ctx, time.Duration(float64(b.cfg.Cost)*b.cfg.Slowdown))
	} else {
		b.spin(ctx, time.Duration(float64(b.cfg.Cost)*b.cfg.Slowdown))
	}
	body := len("ultcp-lb ") + len(b.cfg.Name) + 1 + len(path) + 1
	out = append(out[:0], "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(body), 10)
	out = append(out, "\r\n\r\nultcp-lb "...)
	out = append(out, b.cfg.Name...)
	out = append(out, ' ')
	out = append(out, path...)
	out = append(out, '\n')
	if _, err := c.Write(out); err != nil {
		b.failed.Add(1)
		return out
	}
	b.served.Add(1)
	return out
}

var errHeadTooLarge = errors.New("request head too large")

// readHead reads until the blank line that ends an HTTP request head.
func readHead(r io.Reader, buf []byte) (int, error) {
	n := 0
	for {
		if n == len(buf) {
			return n, errHeadTooLarge
		}
		m, err := r.Read(buf[n:])
		n += m
		if i := bytes.Index(buf[max(0, n-m-3):n], []byte("\r\n\r\n")); i >= 0 {
			return n, nil
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
}

// parseRequestLine splits "METHOD PATH HTTP/1.x".
func parseRequestLine(head []byte) (method, path []byte, ok bool) {
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	path, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || len(path) == 0 || path[0] != '/' || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		return nil, nil, false
	}
	return method, path, true
}

// spin burns CPU for d of running time, standing still during stalls
// (a stalled process makes no progress on the request it holds).
func (b *Backend) spin(ctx context.Context, d time.Duration) {
	for d > 0 && ctx.Err() == nil {
		if b.waitStall(ctx) {
			continue
		}
		t0 := time.Now()
		step := min(d, 100*time.Microsecond)
		for time.Since(t0) < step {
		}
		d -= step
	}
}

// sleep waits for d of running time, standing still during stalls.
func (b *Backend) sleep(ctx context.Context, d time.Duration) {
	for d > 0 && ctx.Err() == nil {
		if b.waitStall(ctx) {
			continue
		}
		// Up to the next stall at most, so that a stall stops the clock.
		step := d
		if b.cfg.StallFor > 0 {
			into := time.Since(b.start) % b.cfg.StallEvery
			step = min(d, b.cfg.StallEvery-b.cfg.StallFor-into)
		}
		t := time.NewTimer(step)
		t0 := time.Now()
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		d -= time.Since(t0)
	}
}

// NextPeriod is the first instant at or after t that is a whole number
// of periods after epoch: where a run aligned with a Backend's stalls
// (BackendConfig.Epoch) starts. The period's stall begins StallEvery -
// StallFor after that instant.
func NextPeriod(epoch, t time.Time, every time.Duration) time.Time {
	if every <= 0 {
		return t
	}
	into := t.Sub(epoch) % every
	if into < 0 {
		into += every
	}
	if into == 0 {
		return t
	}
	return t.Add(every - into)
}

// stallLeft is how long the stall in progress at t lasts (0: none).
func (b *Backend) stallLeft(t time.Time) time.Duration {
	if b.cfg.StallFor == 0 {
		return 0
	}
	into := t.Sub(b.start) % b.cfg.StallEvery
	// The first stall starts one period in, not at once.
	if into >= b.cfg.StallEvery-b.cfg.StallFor {
		return b.cfg.StallEvery - into
	}
	return 0
}

// waitStall sleeps through a stall in progress; it reports whether it
// slept.
func (b *Backend) waitStall(ctx context.Context) bool {
	left := b.stallLeft(time.Now())
	if left == 0 {
		return false
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}
