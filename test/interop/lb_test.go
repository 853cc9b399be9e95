package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	benchlb "github.com/ultcp/ultcp/bench/lb"
)

// Load balancing through the gateway (issue 8): backend nodes join a
// service by listening on its address; Linux TCP in ext opens a fresh
// connection per request to the service; the load generator (`ultcp
// bench lb --role loadgen`, bench/lb) verifies every answer (status,
// length, body naming the backend and the path).

const (
	lbVIP = "10.77.255.1:80"
	// lbConnsEnv sizes the spread test (default 10,000 connections).
	lbConnsEnv = "ULTCP_INTEROP_LB_CONNS"
)

func lbBackendAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 1, byte(i + 1)}) }

// lbBackends starts n backend nodes serving lbVIP (each answering after
// 200 µs, 4 at once) and waits until each serves; it returns their
// commands (killed, stopped at the test's end).
func (c *ultcpCluster) lbBackends(t *testing.T, n int) []*exec.Cmd {
	t.Helper()
	var cmds []*exec.Cmd
	for i := range n {
		log := &syncBuffer{}
		cmds = append(cmds, c.node(t, log, ultcpBin, "bench", "lb", "--role", "backend", "--fabric", c.fabric,
			"--addr", lbBackendAddr(i).String(), "--vip", lbVIP, "--name", fmt.Sprintf("b%d", i),
			"--cost", "200us", "--workers", "4"))
		if err := waitFor(10*time.Second, nil, func() bool { return strings.Contains(log.String(), "serving ") }); err != nil {
			t.Fatalf("backend %d not serving: %v\n%s", i, err, log.tail(4<<10))
		}
	}
	return cmds
}

// waitMembers waits until the gateway's metrics show n members of lbVIP
// up.
func (c *ultcpCluster) waitMembers(t *testing.T, n int) {
	t.Helper()
	want := fmt.Sprintf(`ultcp_gateway_service_members{policy="queue",service="%s"}`, lbVIP)
	var m string
	if err := waitFor(10*time.Second, c.gateway.Done(), func() bool {
		m = c.metrics()
		return metricValue(m, want) == strconv.Itoa(n)
	}); err != nil {
		t.Fatalf("the gateway does not show %d members up: %v\n%s", n, err, m)
	}
}

// loadgen runs the load generator in ext: requests connections (at most)
// from concurrency clients, within d.
func (c *ultcpCluster) loadgen(ctx context.Context, requests, concurrency int, d time.Duration) *exec.Cmd {
	return c.tp.Ext.Command(ctx, ultcpBin, "bench", "lb", "--role", "loadgen", "--target", lbVIP,
		"--concurrency", strconv.Itoa(concurrency), "--requests", strconv.Itoa(requests),
		"--duration", d.String(), "--warmup", "0s")
}

func parseLoadReport(t *testing.T, out []byte) benchlb.LoadReport {
	t.Helper()
	var rep benchlb.LoadReport
	if err := json.Unmarshal(bytes.TrimSpace(out), &rep); err != nil {
		t.Fatalf("load generator's report %q: %v", out, err)
	}
	return rep
}

// 10,000 fresh connections from Linux TCP to the service are answered,
// every answer verified, and spread over the four members (each serves
// at least 5 %).
func TestLBSpreadsConnectionsOverThePool(t *testing.T) {
	n := 10000
	if v := os.Getenv(lbConnsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			t.Fatalf("%s=%q: want a number ≥ 100", lbConnsEnv, v)
		}
	}
	tp := NewTopology(t, false)
	c := newUltcpCluster(t, tp, "", "--service", lbVIP+"=queue")
	c.lbBackends(t, 4)
	c.waitMembers(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	var stderr bytes.Buffer
	cmd := c.loadgen(ctx, n, 16, 2*time.Minute)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("load generator: %v\n%s", err, stderr.String())
	}
	rep := parseLoadReport(t, out)
	t.Logf("%d connections in %v (%.0f/s), by backend %v, p50 %v, p99 %v", rep.Requests, time.Since(start).Round(time.Millisecond),
		rep.RPS, rep.ByServer, rep.Result().Latency.Quantile(0.5), rep.Result().Latency.Quantile(0.99))
	if rep.Errors != 0 || rep.Requests != uint64(n) {
		t.Fatalf("%d of %d answered and verified, %d errors (first: %s)", rep.Requests, n, rep.Errors, rep.FirstError)
	}
	for i := range 4 {
		if got := rep.ByServer[fmt.Sprintf("b%d", i)]; got*20 < uint64(n) {
			t.Errorf("backend b%d served %d of %d connections, want at least 5 %%", i, got, n)
		}
	}
}

// A member killed (SIGKILL) mid-run loses only the connections it held:
// the others go on being answered, the errors are at most the clients'
// concurrency, and from a second after the kill the gateway assigns it no
// connection.
func TestLBKilledMemberLosesOnlyItsConnections(t *testing.T) {
	const (
		conc     = 16
		killAt   = 2 * time.Second
		duration = 6 * time.Second
	)
	tp := NewTopology(t, false)
	c := newUltcpCluster(t, tp, "", "--service", lbVIP+"=queue")
	cmds := c.lbBackends(t, 4)
	c.waitMembers(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := c.loadgen(ctx, 0, conc, duration)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(killAt)
	if err := cmds[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	assigned := fmt.Sprintf(`ultcp_gateway_service_connections_assigned_total{member="%s",service="%s"}`, lbBackendAddr(0), lbVIP)
	time.Sleep(time.Second)
	atSecond := metricValue(c.metrics(), assigned)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("load generator: %v\n%s", err, stderr.String())
	}
	rep := parseLoadReport(t, out.Bytes())
	final := c.metrics()
	atEnd := metricValue(final, assigned)
	t.Logf("%d answered, %d errors (first: %s), by backend %v; b0 assigned %s a second after the kill, %s at the end (%v after)",
		rep.Requests, rep.Errors, rep.FirstError, rep.ByServer, atSecond, atEnd, time.Since(killed).Round(time.Millisecond))
	if atSecond == "0" {
		t.Fatalf("the gateway shows no connection assigned to b0 at all:\n%s", final)
	}
	if atEnd != atSecond {
		t.Errorf("the gateway assigned b0 connections later than a second after its death: %s then, %s at the end", atSecond, atEnd)
	}
	if rep.Errors > conc {
		t.Errorf("%d connections failed, more than the %d that can be in flight", rep.Errors, conc)
	}
	for i := 1; i < 4; i++ {
		if rep.ByServer[fmt.Sprintf("b%d", i)] == 0 {
			t.Errorf("backend b%d answered nothing", i)
		}
	}
	if rep.Requests == 0 || rep.ByServer["b0"] == 0 {
		t.Fatalf("b0 answered %d of %d before its death: the kill did not hit a member in use", rep.ByServer["b0"], rep.Requests)
	}
}
