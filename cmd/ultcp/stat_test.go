package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp"
	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/proc"
)

func init() {
	proc.Register("stat-node", roleStatNode)
	proc.Register("stat-fabric-node", roleStatFabricNode)
}

// roleStatFabricNode (args: fabric dir, address, the address to dial or
// "accept", a number of connections n) joins the fabric and opens (or
// accepts) n connections. The dialler sends i+1 records of 100 bytes on
// connection i; the acceptor reads none of them and sends two records of
// 10 bytes back on the first. Each says it is ready and holds on until
// its stdin closes.
func roleStatFabricNode(args []string) error {
	if len(args) != 4 {
		return errors.New("need fabric dir, address, peer or accept, connections")
	}
	f, err := fabric.Open(fabric.Config{Dir: args[0]})
	if err != nil {
		return err
	}
	nd, err := f.Join(netip.MustParseAddr(args[1]))
	if err != nil {
		return err
	}
	defer nd.Close()
	n, _ := strconv.Atoi(args[3])
	proc.Send(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		var c *fabric.Conn
		if args[2] == "accept" {
			if c, err = nd.Accept(ctx); err != nil {
				return err
			}
			if i == 0 {
				for range 2 {
					if err := c.Send(make([]byte, 10)); err != nil {
						return err
					}
				}
			}
		} else {
			if c, err = nd.Dial(ctx, netip.MustParseAddr(args[2]), fabric.ConnConfig{RingSize: 64 << 10}); err != nil {
				return err
			}
			for range i + 1 {
				if err := c.Send(make([]byte, 100)); err != nil {
					return err
				}
			}
		}
		defer c.Close()
	}
	proc.Send(true)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// roleStatNode (args: fabric dir, address, and the address to dial or
// "listen") joins the fabric, opens or accepts one connection, says it is
// ready and holds on until its stdin closes.
func roleStatNode(args []string) error {
	if len(args) != 3 {
		return errors.New("need fabric dir, address, and peer or listen")
	}
	s, err := ultcp.NewStack(ultcp.Config{FabricDir: args[0], Addr: netip.MustParseAddr(args[1]), RingSize: 64 << 10})
	if err != nil {
		return err
	}
	defer s.Close()
	var c net.Conn
	if args[2] == "listen" {
		l, err := s.Listen("tcp", ":80")
		if err != nil {
			return err
		}
		defer l.Close()
		proc.Send(true)
		if c, err = l.Accept(); err != nil {
			return err
		}
	} else {
		if c, err = s.Dial("tcp", args[2]+":80"); err != nil {
			return err
		}
	}
	defer c.Close()
	proc.Send(true)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// statNodeProc is a stat-node child; kill stops it at once (proc.Child's
// Wait may be called only once, so the cleanup waits only if kill did not).
type statNodeProc struct {
	*proc.Child
	killed bool
}

func (c *statNodeProc) kill() {
	c.Kill()
	c.Wait(10 * time.Second)
	c.killed = true
}

func startStatNode(t *testing.T, dir, addr, peer string, readies int) *statNodeProc {
	t.Helper()
	pc, err := proc.Start("stat-node", dir, addr, peer)
	if err != nil {
		t.Fatal(err)
	}
	c := &statNodeProc{Child: pc}
	t.Cleanup(func() {
		if !c.killed {
			c.Stdin().Close()
			c.Wait(10 * time.Second)
		}
	})
	for range readies {
		var ok bool
		if err := c.Recv(&ok, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func statJSON(t *testing.T, dir string) statReport {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := runStat([]string{"--fabric-dir", dir, "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("stat exit %d: %s", code, stderr.String())
	}
	var r statReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStatShowsTwoNodesAndTheSegmentTheyShare(t *testing.T) {
	dir := ncTestDir(t)
	a := startStatNode(t, dir, "10.77.0.1", "listen", 1)
	b := startStatNode(t, dir, "10.77.0.2", "10.77.0.1", 1)
	var ok bool
	if err := a.Recv(&ok, 10*time.Second); err != nil { // a accepted
		t.Fatal(err)
	}
	r := statJSON(t, dir)
	if len(r.Nodes) != 2 {
		t.Fatalf("%d nodes, want 2: %+v", len(r.Nodes), r.Nodes)
	}
	for i, want := range []struct {
		addr, peer string
		pid        int
	}{{"10.77.0.1", "10.77.0.2", a.Pid()}, {"10.77.0.2", "10.77.0.1", b.Pid()}} {
		n := r.Nodes[i]
		if n.Addr.String() != want.addr || n.Pid != want.pid || !n.Alive {
			t.Errorf("node %d: %v pid %d alive %v, want %s pid %d alive", i, n.Addr, n.Pid, n.Alive, want.addr, want.pid)
		}
		if len(n.Segments) != 1 || n.Segments[0].Peer.String() != want.peer {
			t.Errorf("node %s: segments %+v, want one shared with %s", n.Addr, n.Segments, want.peer)
		}
	}
	if len(r.Nodes[0].Segments) == 1 && len(r.Nodes[1].Segments) == 1 && r.Nodes[0].Segments[0].Inode != r.Nodes[1].Segments[0].Inode {
		t.Errorf("the two ends map different segments: inodes %d and %d", r.Nodes[0].Segments[0].Inode, r.Nodes[1].Segments[0].Inode)
	}

	var stdout, stderr bytes.Buffer
	if code := runStat([]string{"--fabric-dir", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("stat exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"10.77.0.1 ↔ 10.77.0.2: segment inode", "10.77.0.2 ↔ 10.77.0.1: segment inode", "\nconnections 10.77.0."} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestStatShowsConnectionsAndTheBytesQueuedInEachDirection(t *testing.T) {
	dir := ncTestDir(t)
	acc := startStatFabricNode(t, dir, "10.77.0.1", "accept")
	startStatFabricNode(t, dir, "10.77.0.2", "10.77.0.1")
	var ok bool
	if err := acc.Recv(&ok, 10*time.Second); err != nil { // accepted all
		t.Fatal(err)
	}
	r := statJSON(t, dir)
	if r.InspectErr != "" || len(r.Pairs) != 1 {
		t.Fatalf("pairs %+v, inspect error %q; want one", r.Pairs, r.InspectErr)
	}
	p := r.Pairs[0]
	// The dialler created the segment: it is side 0.
	if p.Err != "" || p.Nodes[0].String() != "10.77.0.2" || p.Nodes[1].String() != "10.77.0.1" || len(p.Conns) != 3 {
		t.Fatalf("pair %+v, want 10.77.0.2 ↔ 10.77.0.1 with 3 connections", p)
	}
	for i, c := range p.Conns {
		// i+1 records of 100 bytes each way out: 8-byte header, body
		// padded to 104. Back: two 10-byte records (8 + 16) on the first.
		want := [2]int{(i + 1) * 112, 0}
		if i == 0 {
			want[1] = 48
		}
		if c.ID != uint32(i) || c.Dialer.String() != "10.77.0.2" || c.RingSize != 64<<10 || c.State != "open" || c.Occupancy != want {
			t.Errorf("connection %d: %+v, want id %d dialled by 10.77.0.2, 64 KiB rings, open, queued %v", i, c, i, want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := runStat([]string{"--fabric-dir", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("stat exit %d: %s", code, stderr.String())
	}
	t.Logf("stat:\n%s", stdout.String())
	for _, want := range []string{"connections 10.77.0.2 ↔ 10.77.0.1 (segment inode", "queued → 10.77.0.1", "336 B (3)", "48 B (2)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, stdout.String())
		}
	}
}

func startStatFabricNode(t *testing.T, dir, addr, peer string) *proc.Child {
	t.Helper()
	c, err := proc.Start("stat-fabric-node", dir, addr, peer, "3")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stdin().Close()
		c.Wait(10 * time.Second)
	})
	var ok bool
	if err := c.Recv(&ok, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if peer != "accept" {
		if err := c.Recv(&ok, 10*time.Second); err != nil { // dialled and sent
			t.Fatal(err)
		}
	}
	return c
}

func TestStatShowsAKilledNodeAsDeadAndLeavesItsEntry(t *testing.T) {
	dir := ncTestDir(t)
	a := startStatNode(t, dir, "10.77.0.1", "listen", 1)
	pid := a.Pid()
	a.kill()
	before, _ := os.ReadDir(dir)
	r := statJSON(t, dir)
	if len(r.Nodes) != 1 || r.Nodes[0].Alive || r.Nodes[0].Pid != pid {
		t.Fatalf("nodes %+v, want 10.77.0.1 with pid %d, not alive", r.Nodes, pid)
	}
	after, _ := os.ReadDir(dir)
	if len(after) != len(before) {
		t.Fatalf("stat changed the fabric directory: %d entries before, %d after", len(before), len(after))
	}
}

func TestStatWithoutAFabricExits1(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runStat([]string{"--fabric-dir", filepath.Join(t.TempDir(), "none")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "no fabric at") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestListeningUnixSocketsNeedsTheAcceptconFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unix")
	os.WriteFile(path, []byte(`Num       RefCount Protocol Flags    Type St Inode Path
00000000bede90c3: 00000002 00000000 00010000 0001 01 141175 /dev/shm/f/10.77.0.1.sock
0000000060f0f837: 00000003 00000000 00000000 0001 03 141191 /dev/shm/f/10.77.0.2.sock
000000005291d3a2: 00000003 00000000 00000000 0001 03  1677
`), 0o644)
	m, err := listeningUnixSockets(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !m["/dev/shm/f/10.77.0.1.sock"] {
		t.Fatalf("listening %v, want only 10.77.0.1.sock (10.77.0.2's is a connected socket)", m)
	}
}

func TestSegmentsOfSumsTheMappingsOfEachMemfd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smaps")
	os.WriteFile(path, []byte(`7f0000000000-7f0000100000 rw-s 00000000 00:01 4430                       /memfd:ultcp-segment (deleted)
Size:               1024 kB
Rss:                  32 kB
7f0000100000-7f0000101000 rw-s 00000000 00:01 4431                       /memfd:ultcp-doorbell (deleted)
Size:                  4 kB
Rss:                   4 kB
7f0000200000-7f0000300000 rw-s 00100000 00:01 4430                       /memfd:ultcp-segment (deleted)
Size:               1024 kB
Rss:                   8 kB
7f0000300000-7f0000301000 rw-p 00000000 00:00 0
Size:                  4 kB
Rss:                   4 kB
`), 0o644)
	segs, err := segmentsOf(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []statSegment{{Inode: 4430, Mapped: 2 << 20, Resident: 40 << 10}}
	if len(segs) != 1 || segs[0] != want[0] {
		t.Fatalf("segments %+v, want %+v", segs, want)
	}
}
