package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig describes a load generator run.
type LoadConfig struct {
	// Addr is the service, host:port.
	Addr string
	// Concurrency > 0: that many clients in a closed loop, each opening a
	// fresh connection for its next request when the previous answer is
	// in. Otherwise an open loop at Rate requests per second: Poisson
	// arrivals (exponential gaps drawn from Seed), as from many clients
	// that do not wait for each other. Evenly spaced requests would be a
	// load no balancer is ever given: at most one arrives per gap, so a
	// pool with room never sees two requests at once.
	Concurrency int
	Rate        float64
	Seed        uint64
	// MaxInFlight bounds the open loop's outstanding requests (default
	// 4096); a request due when the bound is reached counts as an error.
	MaxInFlight int
	// Duration of the run; Timeout of one request (connect to last byte,
	// default 5 s).
	Duration, Timeout time.Duration
	// Path requested (default "/").
	Path string
	// Dial opens a connection (default: net.Dialer over kernel TCP).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxRequests > 0 ends the closed loop once that many requests were
	// started (answered or failed), before Duration if it comes first.
	MaxRequests uint64
}

// LoadResult is what a run measured.
type LoadResult struct {
	// Requests answered and verified, and their latencies (connect to
	// the answer's last byte; in the open loop from the request's
	// scheduled start).
	Requests uint64
	Latency  *Histogram
	// Connect is the part of each answered request's latency spent
	// opening the connection (SYN to the handshake's end as the client
	// sees it): a delay there is the gateway's or the network's, one
	// after it the backend's (its queue and service).
	Connect *Histogram
	// Errors: failed connects, timeouts, wrong answers, overload of the
	// open loop. FirstError says what the first one was.
	Errors     uint64
	FirstError error
	// Elapsed is the run's length (the open loop's: its arrivals'
	// window), RPS = Requests / Elapsed.
	Elapsed time.Duration
	RPS     float64
	// ByServer counts the answers per backend name.
	ByServer map[string]uint64
}

// DefaultTimeout is a request's timeout, connect to last byte, unless
// LoadConfig.Timeout says otherwise; the simulation uses it too.
const DefaultTimeout = 5 * time.Second

// RunLoad runs the load generator until cfg.Duration has passed or ctx
// ends.
func RunLoad(ctx context.Context, cfg LoadConfig) (LoadResult, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	switch {
	case cfg.Addr == "":
		return LoadResult{}, errors.New("lb load: no address")
	case cfg.Duration <= 0 || cfg.Duration > time.Hour:
		return LoadResult{}, fmt.Errorf("lb load: duration %v, want (0, 1h]", cfg.Duration)
	case cfg.Concurrency < 0 || cfg.Concurrency > 100000:
		return LoadResult{}, fmt.Errorf("lb load: concurrency %d", cfg.Concurrency)
	case cfg.Concurrency == 0 && (cfg.Rate <= 0 || cfg.Rate > 1e6 || cfg.Rate != cfg.Rate):
		return LoadResult{}, fmt.Errorf("lb load: rate %v, want (0, 1e6] requests/s or a concurrency", cfg.Rate)
	case cfg.Path[0] != '/' || bytes.ContainsAny([]byte(cfg.Path), " \r\n"):
		return LoadResult{}, fmt.Errorf("lb load: bad path %q", cfg.Path)
	case cfg.Timeout < 0 || cfg.MaxInFlight < 0:
		return LoadResult{}, fmt.Errorf("lb load: timeout %v, max in flight %d", cfg.Timeout, cfg.MaxInFlight)
	}
	outer := ctx
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	g := &loadGen{cfg: cfg, res: LoadResult{Latency: &Histogram{}, Connect: &Histogram{}, ByServer: map[string]uint64{}},
		req: []byte("GET " + cfg.Path + " HTTP/1.1\r\nHost: " + cfg.Addr + "\r\nUser-Agent: ultcp-bench-lb\r\nConnection: close\r\n\r\n")}
	start := time.Now()
	g.deadline, _ = ctx.Deadline() // the earlier of ctx's own and Duration
	var wg sync.WaitGroup
	if cfg.Concurrency > 0 {
		for i := 0; i < cfg.Concurrency; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := g.newClient()
				for ctx.Err() == nil && time.Now().Before(g.deadline) {
					if cfg.MaxRequests > 0 && g.issued.Add(1) > cfg.MaxRequests {
						break
					}
					t0 := time.Now()
					c.do(ctx, t0)
				}
				g.merge(c)
			}()
		}
	} else {
		g.openLoop(ctx, outer, start, &wg)
	}
	wg.Wait()
	g.res.Elapsed = time.Since(start)
	if cfg.Concurrency == 0 {
		// The rate answered of the arrivals; the last ones' answers
		// came after the window.
		g.res.Elapsed = min(g.res.Elapsed, cfg.Duration)
	}
	g.res.RPS = float64(g.res.Requests) / g.res.Elapsed.Seconds()
	return g.res, nil
}

type loadGen struct {
	cfg LoadConfig
	// deadline is when the run ends. Checked by the clock as well as
	// through ctx: a dial past its context's deadline fails at once, and
	// on a busy machine the context's timer can fire well after that.
	deadline time.Time
	req      []byte
	issued   atomic.Uint64 // requests started (MaxRequests)
	mu       sync.Mutex
	res      LoadResult
}

// client is one request-issuing goroutine's state: its own histogram and
// buffer, merged at the end, so requests share no lock.
type client struct {
	g        *loadGen
	buf      []byte
	hist     Histogram
	connect  Histogram
	ok, errs uint64
	firstErr error
	servers  map[string]uint64
}

func (g *loadGen) newClient() *client {
	return &client{g: g, buf: make([]byte, 4096), servers: map[string]uint64{}}
}

func (g *loadGen) merge(c *client) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.res.Latency.Merge(&c.hist)
	g.res.Connect.Merge(&c.connect)
	g.res.Requests += c.ok
	g.res.Errors += c.errs
	if g.res.FirstError == nil {
		g.res.FirstError = c.firstErr
	}
	for k, v := range c.servers {
		g.res.ByServer[k] += v
	}
}

// openLoop starts requests at Poisson arrival times until ctx ends, each
// on its own goroutine, whatever happened to the earlier ones. The
// requests run under reqCtx, so the ones in flight when the arrivals end
// are answered (or time out, an error) and counted: a policy that built
// a backlog must not have it dropped from its latencies at the end.
func (g *loadGen) openLoop(ctx, reqCtx context.Context, start time.Time, wg *sync.WaitGroup) {
	arrivals := newPoisson(g.cfg.Rate, g.cfg.Seed)
	sem := make(chan struct{}, g.cfg.MaxInFlight)
	// Clients are reused through a pool (one goroutine holds one at a
	// time); every client ever made is merged at the end.
	var made []*client
	var madeMu sync.Mutex
	pool := sync.Pool{New: func() any {
		c := g.newClient()
		madeMu.Lock()
		made = append(made, c)
		madeMu.Unlock()
		return c
	}}
	overload := 0
	due := start
	for {
		due = due.Add(arrivals.gap())
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil || !due.Before(g.deadline) {
			break
		}
		select {
		case sem <- struct{}{}:
		default:
			overload++
			continue
		}
		wg.Add(1)
		at := due // due moves on with the loop
		go func() {
			defer wg.Done()
			c := pool.Get().(*client)
			c.do(reqCtx, at)
			pool.Put(c)
			<-sem
		}()
	}
	wg.Wait()
	for _, c := range made {
		g.merge(c)
	}
	if overload > 0 {
		g.mu.Lock()
		g.res.Errors += uint64(overload)
		if g.res.FirstError == nil {
			g.res.FirstError = fmt.Errorf("lb load: %d requests not sent: %d in flight already", overload, g.cfg.MaxInFlight)
		}
		g.mu.Unlock()
	}
}

// poisson draws the gaps between Poisson arrivals at a rate, from a
// seed: the same seed gives every policy the same arrivals.
type poisson struct {
	rng  *rand.Rand
	mean float64 // ns
}

func newPoisson(rate float64, seed uint64) poisson {
	return poisson{rng: rand.New(rand.NewPCG(seed, 0x6c62)), mean: float64(time.Second) / rate}
}

func (p poisson) gap() time.Duration { return time.Duration(p.rng.ExpFloat64() * p.mean) }

// do runs one request: connect, send, read the whole answer, verify it.
// The latency counts from start; a closed-loop run that ends mid-request
// does not count it at all (the open loop waits for its requests).
func (c *client) do(ctx context.Context, start time.Time) {
	connected, err := c.exchange(ctx)
	if err != nil {
		if ctx.Err() != nil || c.g.cfg.Concurrency > 0 && !time.Now().Before(c.g.deadline) {
			return // the run ended under it
		}
		c.errs++
		if c.firstErr == nil {
			c.firstErr = err
		}
		return
	}
	c.ok++
	c.hist.Record(time.Since(start))
	c.connect.Record(connected)
}

// exchange runs one request and returns how long the connect took.
func (c *client) exchange(ctx context.Context) (time.Duration, error) {
	g := c.g
	rctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	t0 := time.Now()
	conn, err := g.cfg.Dial(rctx, "tcp", g.cfg.Addr)
	if err != nil {
		return 0, err
	}
	connected := time.Since(t0)
	defer conn.Close()
	stop := context.AfterFunc(rctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(g.req); err != nil {
		return 0, err
	}
	n := 0
	for {
		if n == len(c.buf) {
			return 0, fmt.Errorf("lb load: answer longer than %d bytes", len(c.buf))
		}
		m, err := conn.Read(c.buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	name, err := verifyAnswer(c.buf[:n], g.cfg.Path)
	if err != nil {
		return 0, err
	}
	c.servers[string(name)]++
	return connected, nil
}

// verifyAnswer checks a Backend's answer to GET path: status 200, a
// Content-Length that matches the body, and the body "ultcp-lb NAME
// PATH\n". It returns NAME.
func verifyAnswer(ans []byte, path string) ([]byte, error) {
	head, body, ok := bytes.Cut(ans, []byte("\r\n\r\n"))
	if !ok {
		return nil, fmt.Errorf("lb load: answer without a complete head (%d bytes)", len(ans))
	}
	status, headers, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return nil, fmt.Errorf("lb load: status %q", status)
	}
	length := -1
	for _, h := range bytes.Split(headers, []byte("\r\n")) {
		k, v, _ := bytes.Cut(h, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			l, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return nil, fmt.Errorf("lb load: Content-Length %q", v)
			}
			length = l
		}
	}
	if length != len(body) {
		return nil, fmt.Errorf("lb load: Content-Length %d, body of %d bytes", length, len(body))
	}
	rest, ok := bytes.CutPrefix(body, []byte("ultcp-lb "))
	name, p, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok || !ok2 || len(name) == 0 || string(p) != path+"\n" {
		return nil, fmt.Errorf("lb load: body %q is not the answer to %s", body, path)
	}
	return name, nil
}
