package lb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ultcp/ultcp"
)

// The backend serves an ultcp Stack's listener as it serves kernel TCP:
// two stacks on a private fabric, the load generator dialling through
// the second.
func TestBackendServesOverUltcp(t *testing.T) {
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join("/dev/shm", "ultcp-benchlb-test-"+hex.EncodeToString(b[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	server, err := ultcp.NewStack(ultcp.Config{Addr: netip.MustParseAddr("10.77.1.1"), FabricDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	client, err := ultcp.NewStack(ultcp.Config{Addr: netip.MustParseAddr("10.77.1.2"), FabricDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	l, err := server.Listen("tcp", "10.77.1.1:80")
	if err != nil {
		t.Fatal(err)
	}
	be, err := NewBackend(BackendConfig{Name: "node1", Cost: 20 * time.Microsecond, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- be.Serve(ctx, l) }()
	res, err := RunLoad(context.Background(), LoadConfig{Addr: "10.77.1.1:80", Concurrency: 2, Duration: 300 * time.Millisecond, Dial: client.DialContext})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return 5 s after its context ended")
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Requests == 0 || res.ByServer["node1"] != res.Requests {
		t.Fatalf("%d requests, %d errors (first: %v), by server %v", res.Requests, res.Errors, res.FirstError, res.ByServer)
	}
	t.Logf("%d requests over ultcp in %v, p50 %v", res.Requests, res.Elapsed, res.Latency.Quantile(0.5))
}
