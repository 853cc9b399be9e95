package fabric

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var svcAB = netip.MustParseAddrPort("10.77.255.1:80")

// Two nodes join a service, one leaves, the other closes: ServiceMembers
// lists exactly the live members each time, with pid and policy.
func TestServiceMembersFollowJoinLeaveAndClose(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	if err := a.JoinService(svcAB, "queue"); err != nil {
		t.Fatal(err)
	}
	if err := b.JoinService(svcAB, ""); err != nil {
		t.Fatal(err)
	}
	got, err := f.ServiceMembers()
	if err != nil {
		t.Fatal(err)
	}
	want := []ServiceEntry{{svcAB, addrA, os.Getpid(), "queue"}, {svcAB, addrB, os.Getpid(), ""}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("members %+v, want %+v", got, want)
	}
	if err := a.LeaveService(svcAB); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.ServiceMembers(); len(got) != 1 || got[0].Member != addrB {
		t.Fatalf("after a left: %+v, want b only", got)
	}
	b.Close()
	// Close removes the entry (in a goroutine woken by the node's end);
	// the member stops counting as soon as the node is gone, a little
	// before its file is removed, so wait for both.
	for range 400 {
		got, _ := f.ServiceMembers()
		ents, _ := os.ReadDir(filepath.Join(f.Dir(), servicesDir))
		if len(got) == 0 && len(ents) == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, _ := f.ServiceMembers(); len(got) != 0 {
		t.Fatalf("after b closed: %+v, want none", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.Dir(), servicesDir)); len(ents) != 0 {
		t.Fatalf("entries left in the directory: %v", ents)
	}
}

// An entry whose node is not live (no pid file) does not count, and a
// malformed one is skipped.
func TestServiceMembersSkipDeadAndMalformedEntries(t *testing.T) {
	f := openFabric(t, testDir(t))
	a := join(t, f, addrA)
	if err := a.JoinService(svcAB, ""); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.Dir(), servicesDir)
	os.WriteFile(filepath.Join(dir, "10.77.255.1_80@10.77.9.9"), []byte("10.77.9.9 1 \n"), 0o644) // no such node
	os.WriteFile(filepath.Join(dir, "10.77.255.1_80@10.77.0.2"), []byte("garbage"), 0o644)
	os.WriteFile(filepath.Join(dir, "nonsense"), []byte("10.77.0.1 1\n"), 0o644)
	got, err := f.ServiceMembers()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Member != addrA {
		t.Fatalf("members %+v, want a only", got)
	}
}

// A service address must be a subnet address with a port that is neither
// the node's own nor a live node's.
func TestJoinServiceRefusesBadAddresses(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, _ := join(t, f, addrA), join(t, f, addrB)
	for _, svc := range []netip.AddrPort{
		netip.AddrPortFrom(addrA, 80),            // its own
		netip.AddrPortFrom(addrB, 80),            // a live node's
		netip.MustParseAddrPort("192.0.2.1:80"),  // outside the subnet
		netip.MustParseAddrPort("10.77.255.1:0"), // no port
	} {
		if err := a.JoinService(svc, ""); !errors.Is(err, ErrServiceAddr) {
			t.Errorf("JoinService(%v) = %v, want ErrServiceAddr", svc, err)
		}
	}
	if err := a.JoinService(svcAB, "two words"); err == nil {
		t.Error("a policy name with a space was accepted")
	}
}

// The producer's view of a ring: RingProduced counts what was committed
// (record headers and padding included), RingConsumed what the consumer
// published; PublishConsumed publishes at once what the consumer took.
func TestRingConsumedFollowsPublishConsumed(t *testing.T) {
	ca, cb := pair(t)
	for range 3 {
		if err := ca.Send(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	produced := ca.RingProduced()
	if produced == 0 || ca.RingConsumed() != 0 || ca.RingOccupancy() != int(produced) {
		t.Fatalf("after 3 sends: produced %d, consumed %d, occupancy %d; want >0, 0, produced",
			produced, ca.RingConsumed(), ca.RingOccupancy())
	}
	if _, err := cb.Peek(); err != nil {
		t.Fatal(err)
	}
	if err := cb.Release(); err != nil {
		t.Fatal(err)
	}
	if got := ca.RingConsumed(); got != 0 {
		t.Fatalf("consumed %d before the consumer published; want 0 (it publishes in batches)", got)
	}
	cb.PublishConsumed()
	if got := ca.RingConsumed(); got == 0 || got >= produced {
		t.Fatalf("consumed %d of %d after one record and PublishConsumed; want one record's worth", got, produced)
	}
	ca.Close()
	if ca.RingProduced() != 0 || ca.RingConsumed() != 0 {
		t.Fatal("RingProduced or RingConsumed not 0 after Close")
	}
}
