package fabric

import (
	"errors"
	"testing"
	"time"
)

// A connection that moved little keeps its ring pages when it is freed
// (peer.freeLocked): the next connection on the same block must see none
// of the old records, though the old bytes are still in the pages. Every
// connection here leaves records unread in both rings when it closes.
func TestReusedBlockShowsNoRecordOfItsLastConnection(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	used := map[uint64]bool{}
	for i := 0; i < 400; i++ {
		ca, cb := connect(t, a, b, ConnConfig{RingSize: MinRingSize})
		if used[ca.block] {
			if _, err := cb.PeekNoWait(); !errors.Is(err, ErrWouldBlock) {
				t.Fatalf("reused block %#x: the acceptor reads %v, want an empty ring", ca.block, err)
			}
			if _, err := ca.PeekNoWait(); !errors.Is(err, ErrWouldBlock) {
				t.Fatalf("reused block %#x: the dialler reads %v, want an empty ring", ca.block, err)
			}
			if err := ca.Send([]byte("new")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			if n, err := cb.Recv(buf); err != nil || string(buf[:n]) != "new" {
				t.Fatalf("reused block: Recv = %q, %v; want \"new\"", buf[:n], err)
			}
			return
		}
		used[ca.block] = true
		for _, m := range []string{"one", "two", "three"} {
			if err := ca.Send([]byte(m)); err != nil {
				t.Fatal(err)
			}
			if err := cb.Send([]byte(m + m)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cb.Recv(make([]byte, 16)); err != nil { // two left unread
			t.Fatal(err)
		}
		ca.Close()
		cb.Close()
		time.Sleep(200 * time.Microsecond) // let the CLOSEs free the pair
	}
	t.Fatal("no block was reused in 400 connections")
}
