package ultcp

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var (
	addrA = netip.MustParseAddr("10.77.0.1")
	addrB = netip.MustParseAddr("10.77.0.2")
)

// testDir makes a fresh fabric directory on tmpfs for one test.
func testDir(t testing.TB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join("/dev/shm", "ultcp-stack-test-"+hex.EncodeToString(b[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// newStack starts a stack on dir at addr, closed when the test ends.
func newStack(t testing.TB, dir string, addr netip.Addr, tweak ...func(*Config)) *Stack {
	t.Helper()
	cfg := Config{Addr: addr, FabricDir: dir}
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := NewStack(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// deadline is a generous bound for one test step.
func deadline() time.Time { return time.Now().Add(10 * time.Second) }
