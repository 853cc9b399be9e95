package lb

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"
)

// serve starts a backend on a kernel TCP listener on loopback and stops
// it when the test ends.
func serve(t *testing.T, cfg BackendConfig) (*Backend, string) {
	t.Helper()
	b, err := NewBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return 5 s after its context ended")
		}
	})
	return b, l.Addr().String()
}

// ask sends raw bytes and returns the whole answer.
func ask(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	ans, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(ans)
}

func TestBackendAnswersGETWithItsName(t *testing.T) {
	b, addr := serve(t, BackendConfig{Name: "b1", Cost: 50 * time.Microsecond})
	got := ask(t, addr, "GET /x/7 HTTP/1.1\r\nHost: a\r\n\r\n")
	want := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 17\r\n\r\nultcp-lb b1 /x/7\n"
	if got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
	if name, err := verifyAnswer([]byte(got), "/x/7"); err != nil || string(name) != "b1" {
		t.Fatalf("verifyAnswer: %q, %v", name, err)
	}
	if b.Served() != 1 {
		t.Fatalf("served %d, want 1", b.Served())
	}
}

func TestBackendRejectsOtherMethods(t *testing.T) {
	_, addr := serve(t, BackendConfig{Name: "b1"})
	if got := ask(t, addr, "POST / HTTP/1.1\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 405 ") {
		t.Fatalf("POST answered %q, want 405", got)
	}
}

func TestBackendRejectsMalformedRequestLine(t *testing.T) {
	_, addr := serve(t, BackendConfig{Name: "b1"})
	if got := ask(t, addr, "GET nopath\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Fatalf("malformed request answered %q, want 400", got)
	}
}

func TestReadHeadStopsAtTheBufferSize(t *testing.T) {
	// A request head that does not end within the buffer is refused
	// (the backend answers 431), never read without bound.
	buf := make([]byte, 16)
	if _, err := readHead(strings.NewReader("GET / HTTP/1.1\r\nX: aaaaaaaaaaaa\r\n\r\n"), buf); !errors.Is(err, errHeadTooLarge) {
		t.Fatalf("readHead: %v, want errHeadTooLarge", err)
	}
}

func TestReadHeadFindsTheEndAcrossReads(t *testing.T) {
	// The blank line split over two reads: "\r\n\r" then "\n".
	r := io.MultiReader(strings.NewReader("GET / HTTP/1.1\r\n\r"), strings.NewReader("\n"))
	buf := make([]byte, 64)
	n, err := readHead(r, buf)
	if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("readHead: %q, %v", buf[:n], err)
	}
}

func TestReadHeadReportsATruncatedHead(t *testing.T) {
	if _, err := readHead(strings.NewReader("GET / HTTP/1.1\r\n"), make([]byte, 64)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("readHead: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestNewBackendRejectsBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  BackendConfig
		want string
	}{
		{BackendConfig{Name: "a b"}, "one word"},
		{BackendConfig{Name: "a", Slowdown: 0.5}, "slowdown"},
		{BackendConfig{Name: "a", StallEvery: time.Second, StallFor: time.Second}, "shorter than its period"},
		{BackendConfig{Name: "a", Cost: -1}, "cost"},
	} {
		if _, err := NewBackend(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

func TestBackendStallWindowIsAtTheEndOfEachPeriod(t *testing.T) {
	b, err := NewBackend(BackendConfig{Name: "s", StallEvery: 500 * time.Millisecond, StallFor: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b.start = time.Unix(1000, 0)
	for _, c := range []struct {
		at   time.Duration
		left time.Duration
	}{
		{0, 0}, {449 * time.Millisecond, 0}, {450 * time.Millisecond, 50 * time.Millisecond},
		{480 * time.Millisecond, 20 * time.Millisecond}, {500 * time.Millisecond, 0},
		{960 * time.Millisecond, 40 * time.Millisecond},
	} {
		if got := b.stallLeft(b.start.Add(c.at)); got != c.left {
			t.Errorf("at %v: stall left %v, want %v", c.at, got, c.left)
		}
	}
}

// With an Epoch the stalls run on its clock, from Serve on; a run that
// starts at NextPeriod meets the first stall every-for after its start.
func TestBackendStallClockFromEpoch(t *testing.T) {
	epoch := time.Unix(1000, 0)
	b, err := NewBackend(BackendConfig{Name: "s", StallEvery: 500 * time.Millisecond, StallFor: 50 * time.Millisecond, Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(ctx, l); err != nil {
		t.Fatal(err)
	}
	if !b.start.Equal(epoch) {
		t.Fatalf("stall clock from %v, want the epoch %v", b.start, epoch)
	}
	start := NextPeriod(epoch, epoch.Add(7*time.Second+130*time.Millisecond), 500*time.Millisecond)
	if want := epoch.Add(7500 * time.Millisecond); !start.Equal(want) {
		t.Fatalf("next period after 7.13 s: %v, want %v", start.Sub(epoch), want.Sub(epoch))
	}
	if got := b.stallLeft(start.Add(449 * time.Millisecond)); got != 0 {
		t.Errorf("449 ms into the run: stall left %v, want none", got)
	}
	if got := b.stallLeft(start.Add(450 * time.Millisecond)); got != 50*time.Millisecond {
		t.Errorf("450 ms into the run: stall left %v, want 50ms", got)
	}
	for _, c := range []struct{ t, want time.Duration }{{0, 0}, {500 * time.Millisecond, 500 * time.Millisecond}, {-100 * time.Millisecond, 0}} {
		if got := NextPeriod(epoch, epoch.Add(c.t), 500*time.Millisecond).Sub(epoch); got != c.want {
			t.Errorf("NextPeriod at %v: %v, want %v", c.t, got, c.want)
		}
	}
	if now := time.Now(); !NextPeriod(epoch, now, 0).Equal(now) {
		t.Error("NextPeriod with no period moved the time")
	}
}

func TestLoadClosedLoopVerifiesEveryAnswer(t *testing.T) {
	b1, a1 := serve(t, BackendConfig{Name: "one", Cost: 20 * time.Microsecond})
	res, err := RunLoad(context.Background(), LoadConfig{Addr: a1, Concurrency: 2, Duration: 300 * time.Millisecond, Path: "/p"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Fatalf("%d errors, first: %v", res.Errors, res.FirstError)
	}
	if res.Requests == 0 || res.Requests != res.ByServer["one"] || res.Latency.Count() != res.Requests {
		t.Fatalf("requests %d, by server %v, histogram %d", res.Requests, res.ByServer, res.Latency.Count())
	}
	// Every verified answer was served; the backend may have served one
	// more whose answer the end of the run cut off.
	if s := b1.Served(); s < res.Requests || s > res.Requests+2 {
		t.Fatalf("backend served %d, client verified %d", s, res.Requests)
	}
}

func TestLoadOpenLoopSendsAtItsRate(t *testing.T) {
	const cost = 2 * time.Millisecond
	_, a := serve(t, BackendConfig{Name: "one", Workers: 4, Cost: cost, Sleep: true})
	res, err := RunLoad(context.Background(), LoadConfig{Addr: a, Rate: 200, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Fatalf("%d errors, first: %v", res.Errors, res.FirstError)
	}
	// Each latency counts from that request's own arrival time: none can
	// be shorter than the backend's sleep.
	if low := res.Latency.Quantile(0); low < cost {
		t.Fatalf("shortest latency %v, below the backend's %v sleep", low, cost)
	}
	// 200/s for 0.3 s: 60 arrivals expected, 7.7 their standard deviation.
	if res.Requests == 0 || res.Requests > 120 {
		t.Fatalf("%d requests answered, want 1 to 120", res.Requests)
	}
}

// An open loop that outruns its backend still counts every request it
// started: the backlog left when the arrivals end is answered and
// measured, not dropped (400/s for 0.2 s is about 80 arrivals, sd 9; a
// backend that sleeps 10 ms per request answers 20 of them in the window).
func TestLoadOpenLoopCountsItsBacklog(t *testing.T) {
	_, a := serve(t, BackendConfig{Name: "slow", Workers: 1, Cost: 10 * time.Millisecond, Sleep: true})
	const window = 200 * time.Millisecond
	res, err := RunLoad(context.Background(), LoadConfig{Addr: a, Rate: 400, Duration: window, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Fatalf("%d errors, first: %v", res.Errors, res.FirstError)
	}
	if res.Requests < 40 || res.Latency.Quantile(1) < window {
		t.Fatalf("%d requests answered, the slowest in %v: want the backlog's too (at least 40, one after the %v window)",
			res.Requests, res.Latency.Quantile(1), window)
	}
	if res.Elapsed != window {
		t.Fatalf("elapsed %v, want the arrivals' window %v", res.Elapsed, window)
	}
}

// The open loop's gaps are exponential: their mean is 1/rate, their
// standard deviation the same, and about 9.5 % of them are shorter than
// a tenth of the mean (requests that arrive nearly together, which an
// evenly spaced loop never has). One seed gives one sequence.
func TestOpenLoopArrivalsArePoisson(t *testing.T) {
	const n, rate = 100000, 1000.0
	p, q := newPoisson(rate, 7), newPoisson(rate, 7)
	var sum, sq float64
	short := 0
	for i := 0; i < n; i++ {
		g := p.gap()
		if q.gap() != g {
			t.Fatalf("gap %d differs between two draws from seed 7", i)
		}
		ms := g.Seconds() * 1e3
		sum += ms
		sq += ms * ms
		if ms < 0.1 {
			short++
		}
	}
	mean := sum / n
	sd := math.Sqrt(sq/n - mean*mean)
	if math.Abs(mean-1) > 0.02 || math.Abs(sd-1) > 0.03 {
		t.Fatalf("gaps: mean %.4f ms, sd %.4f ms; want 1 and 1", mean, sd)
	}
	if f := float64(short) / n; math.Abs(f-(1-math.Exp(-0.1))) > 0.005 {
		t.Fatalf("%.4f of gaps under 0.1 ms, want %.4f", f, 1-math.Exp(-0.1))
	}
	if newPoisson(rate, 8).gap() == newPoisson(rate, 7).gap() {
		t.Fatal("seeds 7 and 8 gave the same first gap")
	}
}

func TestLoadCountsRefusedConnectionsAsErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	res, err := RunLoad(context.Background(), LoadConfig{Addr: addr, Concurrency: 1, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.FirstError == nil || res.Requests != 0 {
		t.Fatalf("against a closed port: %d requests, %d errors (%v)", res.Requests, res.Errors, res.FirstError)
	}
}

func TestVerifyAnswerRejectsWrongBodies(t *testing.T) {
	for _, c := range []struct{ ans, want string }{
		{"HTTP/1.1 500 Oops\r\n\r\n", "status"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nultcp-lb a /\n", "Content-Length 5"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nultcp-lb a /y\n", "not the answer"},
		{"HTTP/1.1 200 OK\r\n", "complete head"},
	} {
		if _, err := verifyAnswer([]byte(c.ans), "/"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error containing %q", c.ans, err, c.want)
		}
	}
}

func TestBackendSleepModeAnswers(t *testing.T) {
	b, addr := serve(t, BackendConfig{Name: "s", Cost: 100 * time.Microsecond, Sleep: true})
	if got := ask(t, addr, "GET / HTTP/1.1\r\n\r\n"); !strings.HasSuffix(got, "\r\n\r\nultcp-lb s /\n") {
		t.Fatalf("answer %q", got)
	}
	if b.Served() != 1 {
		t.Fatalf("served %d, want 1", b.Served())
	}
}
