package fabric

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/proc"
)

func init() {
	proc.Register("claim-gateway", roleClaimGateway)
}

// roleClaimGateway joins, claims the gateway role and waits to be killed.
func roleClaimGateway(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	if err := n.ClaimGateway(); err != nil {
		return err
	}
	proc.Send(ready{Ready: true})
	time.Sleep(time.Minute)
	return nil
}

func TestClaimGatewayOnEmptyFabricRegistersTheNode(t *testing.T) {
	f := openFabric(t, testDir(t))
	a := join(t, f, addrA)
	if err := a.ClaimGateway(); err != nil {
		t.Fatal(err)
	}
	if got, ok := f.Gateway(); !ok || got != addrA {
		t.Fatalf("Gateway() = %v, %v; want %v, true", got, ok, addrA)
	}
}

func TestSecondGatewayIsRefusedNamingTheFirst(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	if err := a.ClaimGateway(); err != nil {
		t.Fatal(err)
	}
	err := b.ClaimGateway()
	if !errors.Is(err, ErrGatewayExists) {
		t.Fatalf("second claim: %v; want ErrGatewayExists", err)
	}
	want := fmt.Sprintf("10.77.0.1 (pid %d) is the gateway", os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if got, _ := f.Gateway(); got != addrA {
		t.Fatalf("Gateway() = %v after refused claim; want %v", got, addrA)
	}
}

func TestClaimGatewayAgainFromTheHolderSucceeds(t *testing.T) {
	f := openFabric(t, testDir(t))
	a := join(t, f, addrA)
	if err := a.ClaimGateway(); err != nil {
		t.Fatal(err)
	}
	if err := a.ClaimGateway(); err != nil {
		t.Fatalf("second claim by the holder: %v", err)
	}
}

func TestGatewayRegistrationIsRemovedOnNodeClose(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, err := f.Join(addrA)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ClaimGateway(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if got, ok := f.Gateway(); ok {
		t.Fatalf("Gateway() = %v, true after the gateway node closed", got)
	}
	// The file itself goes shortly after (Close's watcher).
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(f.gatewayPath()); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway file still there 5 s after Node.Close")
		}
		time.Sleep(time.Millisecond)
	}
	b := join(t, f, addrB)
	if err := b.ClaimGateway(); err != nil {
		t.Fatalf("claim after the first gateway closed: %v", err)
	}
}

func TestDeadGatewayProcessIsReplaced(t *testing.T) {
	dir := testDir(t)
	ch := startChild(t, "claim-gateway", dir, addrB)
	f := openFabric(t, dir)
	if got, ok := f.Gateway(); !ok || got != addrB {
		t.Fatalf("Gateway() = %v, %v with the child holding it; want %v, true", got, ok, addrB)
	}
	a := join(t, f, addrA)
	if err := a.ClaimGateway(); !errors.Is(err, ErrGatewayExists) {
		t.Fatalf("claim while the child's gateway lives: %v; want ErrGatewayExists", err)
	}
	ch.Kill()
	ch.Wait(10 * time.Second)
	if got, ok := f.Gateway(); ok {
		t.Fatalf("Gateway() = %v, true after its process was killed", got)
	}
	if err := a.ClaimGateway(); err != nil {
		t.Fatalf("claim after the gateway died: %v", err)
	}
	if got, ok := f.Gateway(); !ok || got != addrA {
		t.Fatalf("Gateway() = %v, %v; want %v, true", got, ok, addrA)
	}
}

func TestRegistrationOfAnotherProcessAtALiveAddressIsDead(t *testing.T) {
	// A gateway died and an ordinary node took its address: the
	// registration names a pid that no longer holds the address.
	f := openFabric(t, testDir(t))
	join(t, f, addrB)
	if err := os.WriteFile(f.gatewayPath(), []byte("10.77.0.2 999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := f.Gateway(); ok {
		t.Fatalf("Gateway() = %v, true for a registration whose pid does not hold the address", got)
	}
	a := join(t, f, addrA)
	if err := a.ClaimGateway(); err != nil {
		t.Fatalf("claim over a stale registration: %v", err)
	}
}

func TestMalformedRegistrationCountsAsNone(t *testing.T) {
	f := openFabric(t, testDir(t))
	for _, body := range []string{"", "10.77.0.1\n", "garbage 12\n", "10.77.0.1 -5\n", "::1 12\n", strings.Repeat("x", 100)} {
		if err := os.WriteFile(f.gatewayPath(), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, ok := f.Gateway(); ok {
			t.Fatalf("Gateway() = %v, true for registration %q", got, body)
		}
	}
}

func TestNodeLiveFollowsJoinAndClose(t *testing.T) {
	f := openFabric(t, testDir(t))
	if _, ok := f.NodeLive(addrA); ok {
		t.Fatal("NodeLive before Join")
	}
	a, err := f.Join(addrA)
	if err != nil {
		t.Fatal(err)
	}
	if pid, ok := f.NodeLive(addrA); !ok || pid != os.Getpid() {
		t.Fatalf("NodeLive after Join = %d, %v; want %d, true", pid, ok, os.Getpid())
	}
	a.Close()
	if _, ok := f.NodeLive(addrA); ok {
		t.Fatal("NodeLive after Close")
	}
}
