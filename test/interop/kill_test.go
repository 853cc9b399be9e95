package interop

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGatewaySIGKILLResetsNodeConnections is issue #7's gateway death:
// while a node sends through the gateway to socat in ext, the gateway is
// killed with SIGKILL; the node's connection must fail with ECONNRESET
// within a second (the fabric's peer-death detection), and the node's
// stack must still serve a connection inside the fabric afterwards.
func TestGatewaySIGKILLResetsNodeConnections(t *testing.T) {
	for _, tool := range []string{"socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	tp := NewTopology(t, false)
	cl := newUltcpCluster(t, tp, "")
	cl.startHTTP(t)

	const port = 7200
	extSink := NewSink()
	peer, err := tp.Ext.Start(time.Minute, func(c *exec.Cmd) { c.Stdout = extSink },
		"socat", "-u", "-b", socatBuf, "TCP-LISTEN:"+strconv.Itoa(port)+",reuseaddr", "STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.WaitListen(port, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr syncBuffer
	nc := cl.nc(ctx, port, time.Minute)
	nc.Stdin, nc.Stdout, nc.Stderr = &Pattern{N: 1 << 40}, &syncBuffer{}, &stderr
	if err := nc.Start(); err != nil {
		t.Fatal(err)
	}
	ncDone := make(chan time.Time, 1)
	go func() { nc.Wait(); ncDone <- time.Now() }()

	// Mid-transfer: socat has received at least 128 KiB.
	if err := waitFor(30*time.Second, nil, func() bool { return extSink.Count() >= 128<<10 }); err != nil {
		t.Fatalf("the transfer never reached 128 KiB (%d bytes): %v; nc: %s", extSink.Count(), err, stderr.String())
	}
	killed := time.Now()
	cl.gateway.Kill()
	var exited time.Time
	select {
	case exited = <-ncDone:
	case <-time.After(10 * time.Second):
		t.Fatalf("ultcp nc still running 10 s after the gateway's SIGKILL (socat had %d bytes)", extSink.Count())
	}
	d := exited.Sub(killed)
	msg := strings.TrimSpace(stderr.String())
	t.Logf("gateway killed after %d bytes; ultcp nc exited %v later: %s", extSink.Count(), d.Round(time.Millisecond), msg)
	if !strings.Contains(msg, "connection reset by peer") {
		t.Errorf("ultcp nc said %q, want ECONNRESET (connection reset by peer)", msg)
	}
	if d > time.Second {
		t.Errorf("ultcp nc failed %v after the SIGKILL, want within a second", d.Round(time.Millisecond))
	}

	// The HTTP node keeps serving inside the fabric: another node fetches
	// from it.
	const n = 1 << 20
	sink := NewSink()
	var getLog syncBuffer
	get := exec.CommandContext(ctx, httpdBin, "--fabric", cl.fabric, "--addr", "10.77.0.9",
		"--get", "http://"+ServerAddr.String()+"/bytes?n="+strconv.Itoa(n))
	get.Stdout, get.Stderr = sink, &getLog
	if err := get.Run(); err != nil {
		t.Fatalf("fabric-internal GET after the gateway died: %v: %s", err, getLog.String())
	}
	if !sink.Matches(n) {
		t.Fatalf("fabric-internal GET: %d bytes, sha256 %x; want %d bytes of the pattern", sink.N, sink.Sum(), n)
	}
}
