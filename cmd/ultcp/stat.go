package main

// ultcp stat: what a running fabric looks like from outside, read-only.
//
// What it can see today without the fabric's help:
//
//   - the nodes, from the fabric directory (<addr>.sock and <addr>.pid);
//   - whether each is alive: its Unix socket is listening, as the kernel
//     lists it in /proc/net/unix (no connection is made: connecting would
//     be seen by the node);
//   - the peer segments each node maps, from /proc/<pid>/smaps: a segment
//     is one memfd ("ultcp-segment"), so the two processes that map the
//     same inode are the two ends of a peer pair, and the resident size of
//     the mapping is the ring memory the pair has touched.
//
//   - the connections of every segment, their close state and the bytes
//     waiting in each direction's ring, from fabric.Inspect, which reads
//     the segments through a read-only descriptor of its own (pread, no
//     mapping, the fabric's own checked parsing); this needs the same uid
//     as the nodes, or root.
//
// stat must never change the fabric: it does not call fabric.Open (which
// creates the directory and removes stale entries), connect to node
// sockets, or write anything.

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ultcp/ultcp/bench"
	"github.com/ultcp/ultcp/fabric"
)

func init() {
	subcommands = append(subcommands, subcommand{
		name:    "stat",
		summary: "show a running fabric's nodes, connections and ring occupancy, read-only: ultcp stat --fabric NAME",
		run:     runStat,
		usage:   statUsage,
	})
}

type statOptions struct {
	fabric    string
	fabricDir string
	json      bool
}

func statFlags(o *statOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("stat", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.fabric, "fabric", fabric.DefaultName, "fabric name (directory "+fabric.DefaultRoot+"/NAME)")
	fs.StringVar(&o.fabricDir, "fabric-dir", "", "fabric directory (overrides --fabric)")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of tables")
	return fs
}

func statUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ultcp stat [--fabric NAME | --fabric-dir DIR] [--json]")
	fs := statFlags(&statOptions{})
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// statNode is one registered node.
type statNode struct {
	Addr    netip.Addr
	Pid     int    // from <addr>.pid; 0 if unreadable
	Alive   bool   // its socket is listening
	Command string `json:",omitempty"` // /proc/<pid>/comm, for a live node
	// Segments are the peer segments the node's process maps (by inode);
	// nil when /proc/<pid>/smaps cannot be read (another user's process).
	Segments []statSegment `json:",omitempty"`
	Note     string        `json:",omitempty"` // why something is missing
}

// statSegment is one peer segment as one process maps it.
type statSegment struct {
	Inode    uint64
	Mapped   uint64     // bytes of address space
	Resident uint64     // bytes resident (pages touched: rings in use)
	Peer     netip.Addr `json:",omitzero"` // the node at the other end, when found
}

// statReport is what stat prints.
type statReport struct {
	Dir   string
	Nodes []statNode
	// Pairs are the peer segments with their connections, from
	// fabric.Inspect; InspectErr says why they are missing.
	Pairs      []statPair
	InspectErr string `json:",omitempty"`
}

// statPair is one peer segment: the two nodes (side 0 dialled first) and
// the connections whose ring pairs are allocated.
type statPair struct {
	Inode uint64
	Nodes [2]netip.Addr
	Conns []statConn
	Err   string `json:",omitempty"` // read in part: why
}

// statConn is one connection. Per-direction fields are indexed by the
// sending side: [0] is Nodes[0] → Nodes[1].
type statConn struct {
	ID       uint32
	Dialer   netip.Addr
	RingSize int
	State    string
	// Occupancy is the bytes sent and not yet reported consumed (the
	// consumer reports in batches of a quarter ring); -1: unreadable.
	Occupancy [2]int
	Records   [2]int
	DMA       [2]bool // a DMA record waits for the receiver's pull
	Asleep    [2]bool // the receiver sleeps, waiting for the next record
}

func runStat(args []string, stdout, stderr io.Writer) int {
	var o statOptions
	fs := statFlags(&o)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		fmt.Fprintf(stderr, "ultcp stat: %v\n", err)
		statUsage(stderr)
		return 2
	}
	dir := o.fabricDir
	if dir == "" {
		dir = filepath.Join(fabric.DefaultRoot, o.fabric)
	}
	r, err := inspectFabric(dir, "/proc")
	if err != nil {
		fmt.Fprintf(stderr, "ultcp stat: %v\n", err)
		return 1
	}
	if o.json {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		if err := e.Encode(r); err != nil {
			fmt.Fprintf(stderr, "ultcp stat: %v\n", err)
			return 1
		}
		return 0
	}
	printStat(stdout, r)
	return 0
}

// inspectFabric reads the fabric directory dir and, under procRoot, what
// the kernel says of the node processes.
func inspectFabric(dir, procRoot string) (*statReport, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no fabric at %s", dir)
		}
		return nil, err
	}
	listening, lerr := listeningUnixSockets(filepath.Join(procRoot, "net/unix"))
	r := &statReport{Dir: dir, Nodes: []statNode{}, Pairs: []statPair{}}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".sock")
		if !ok {
			continue
		}
		a, err := netip.ParseAddr(name)
		if err != nil {
			continue // not a node entry
		}
		n := statNode{Addr: a}
		if b, err := os.ReadFile(filepath.Join(dir, name+".pid")); err == nil {
			n.Pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		switch {
		case lerr != nil:
			n.Note = "liveness unknown: " + lerr.Error()
		default:
			n.Alive = listening[filepath.Join(dir, e.Name())]
		}
		if n.Alive && n.Pid > 0 {
			pdir := filepath.Join(procRoot, strconv.Itoa(n.Pid))
			if b, err := os.ReadFile(filepath.Join(pdir, "comm")); err == nil {
				n.Command = strings.TrimSpace(string(b))
			}
			segs, err := segmentsOf(filepath.Join(pdir, "smaps"))
			if err != nil {
				n.Note = "segments unknown: " + err.Error()
			}
			n.Segments = segs
		}
		r.Nodes = append(r.Nodes, n)
	}
	slices.SortFunc(r.Nodes, func(a, b statNode) int { return a.Addr.Compare(b.Addr) })
	pairPeers(r.Nodes)
	addConnections(r)
	return r, nil
}

// addConnections fills r.Pairs from fabric.Inspect.
func addConnections(r *statReport) {
	snap, err := fabric.Inspect(fabric.Config{Dir: r.Dir})
	if err != nil {
		r.InspectErr = err.Error()
		return
	}
	for _, ni := range snap.Nodes {
		i := slices.IndexFunc(r.Nodes, func(n statNode) bool { return n.Addr == ni.Addr })
		if ni.Err == nil || i < 0 || !r.Nodes[i].Alive {
			continue
		}
		note := "connections unknown: " + ni.Err.Error()
		if r.Nodes[i].Note != "" {
			note = r.Nodes[i].Note + "; " + note
		}
		r.Nodes[i].Note = note
	}
	for _, seg := range snap.Segments {
		p := statPair{Inode: seg.Inode, Nodes: seg.Addr, Conns: []statConn{}}
		if seg.Err != nil {
			p.Err = seg.Err.Error()
		}
		for _, c := range seg.Conns {
			p.Conns = append(p.Conns, statConn{
				ID: c.ID, Dialer: seg.Addr[c.Dialer], RingSize: c.RingSize, State: c.State(),
				Occupancy: c.Occupancy, Records: c.Records, DMA: c.DMA, Asleep: c.Asleep,
			})
		}
		r.Pairs = append(r.Pairs, p)
	}
}

// pairPeers names the peer of each segment: the other live node whose
// process maps the same inode. Two nodes in one process both map every
// segment between them; such a segment is attributed to the other node
// of that process.
func pairPeers(nodes []statNode) {
	for i := range nodes {
		for j := range nodes[i].Segments {
			s := &nodes[i].Segments[j]
			for k := range nodes {
				if k == i {
					continue
				}
				if slices.ContainsFunc(nodes[k].Segments, func(o statSegment) bool { return o.Inode == s.Inode }) {
					s.Peer = nodes[k].Addr
					break
				}
			}
		}
	}
}

// listeningUnixSockets returns the paths of the listening Unix sockets in
// /proc/net/unix (columns: Num RefCount Protocol Flags Type St Inode Path;
// Flags has __SO_ACCEPTCON, 0x10000, on a listening socket).
func listeningUnixSockets(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 {
			continue
		}
		flags, err := strconv.ParseUint(fs[3], 16, 32)
		if err != nil || flags&0x10000 == 0 {
			continue
		}
		m[fs[7]] = true
	}
	return m, sc.Err()
}

// segmentsOf lists the peer segments mapped in a process, from its smaps:
// a mapping header ("start-end perms offset dev inode path") whose path is
// the memfd of a segment, followed by its "Size:" and "Rss:" lines.
func segmentsOf(smaps string) ([]statSegment, error) {
	f, err := os.Open(smaps)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	byInode := map[uint64]*statSegment{}
	var order []uint64
	var cur *statSegment
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fs := strings.Fields(line)
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			cur = nil
			if len(fs) >= 6 && strings.HasPrefix(fs[5], "/memfd:ultcp-segment") {
				ino, err := strconv.ParseUint(fs[4], 10, 64)
				if err != nil {
					continue
				}
				if byInode[ino] == nil {
					byInode[ino] = &statSegment{Inode: ino}
					order = append(order, ino)
				}
				cur = byInode[ino]
			}
			continue
		}
		if cur == nil || len(fs) < 2 {
			continue
		}
		kb, err := strconv.ParseUint(fs[1], 10, 64)
		if err != nil {
			continue
		}
		switch fs[0] {
		case "Size:":
			cur.Mapped += kb << 10
		case "Rss:":
			cur.Resident += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	segs := make([]statSegment, 0, len(order))
	for _, ino := range order {
		segs = append(segs, *byInode[ino])
	}
	return segs, nil
}

func printStat(w io.Writer, r *statReport) {
	t := bench.Table{Title: fmt.Sprintf("fabric %s: %d nodes", r.Dir, len(r.Nodes)), Header: []string{"node", "pid", "alive", "command", "peer segments", "resident"}}
	for _, n := range r.Nodes {
		alive := "no"
		if n.Alive {
			alive = "yes"
		}
		segs, res := "—", "—"
		if n.Segments != nil {
			var sum uint64
			for _, s := range n.Segments {
				sum += s.Resident
			}
			segs, res = strconv.Itoa(len(n.Segments)), bytesText(sum)
		}
		cmd := n.Command
		if cmd == "" {
			cmd = "—"
		}
		t.Rows = append(t.Rows, []string{n.Addr.String(), strconv.Itoa(n.Pid), alive, cmd, segs, res})
	}
	t.WriteText(w)
	var pairs []string
	for _, n := range r.Nodes {
		for _, s := range n.Segments {
			peer := "?"
			if s.Peer.IsValid() {
				peer = s.Peer.String()
			}
			pairs = append(pairs, fmt.Sprintf("  %s ↔ %s: segment inode %d, %s mapped, %s resident in pid %d",
				n.Addr, peer, s.Inode, bytesText(s.Mapped), bytesText(s.Resident), n.Pid))
		}
	}
	if len(pairs) > 0 {
		fmt.Fprintln(w, "\npeer segments (one memfd per pair of nodes; resident = ring memory touched):")
		for _, p := range pairs {
			fmt.Fprintln(w, p)
		}
	}
	for _, n := range r.Nodes {
		if n.Note != "" {
			fmt.Fprintf(w, "\nnote on %s: %s", n.Addr, n.Note)
		}
	}
	printConnections(w, r)
}

// printConnections prints one table per peer segment: a row per
// connection, with the bytes waiting in each direction's ring.
func printConnections(w io.Writer, r *statReport) {
	if r.InspectErr != "" {
		fmt.Fprintf(w, "\nconnections: not readable: %s\n", r.InspectErr)
		return
	}
	for _, p := range r.Pairs {
		a, b := p.Nodes[0].String(), p.Nodes[1].String()
		t := bench.Table{
			Title:  fmt.Sprintf("\nconnections %s ↔ %s (segment inode %d): %d", a, b, p.Inode, len(p.Conns)),
			Note:   "queued = bytes sent, not yet reported consumed (records); asleep = the receiver waits",
			Header: []string{"id", "dialler", "ring", "state", "queued → " + b, "queued → " + a, "asleep"},
		}
		for _, c := range p.Conns {
			var asleep []string
			for s, on := range c.Asleep {
				if on {
					asleep = append(asleep, p.Nodes[1-s].String())
				}
			}
			if asleep == nil {
				asleep = []string{"—"}
			}
			t.Rows = append(t.Rows, []string{strconv.FormatUint(uint64(c.ID), 10), c.Dialer.String(),
				bytesText(uint64(c.RingSize)), c.State, queuedText(c, 0), queuedText(c, 1), strings.Join(asleep, ", ")})
		}
		t.WriteText(w)
		if p.Err != "" {
			fmt.Fprintf(w, "  (read in part: %s)\n", p.Err)
		}
	}
}

func queuedText(c statConn, s int) string {
	if c.Occupancy[s] < 0 {
		return "unreadable"
	}
	q := fmt.Sprintf("%s (%d)", bytesText(uint64(c.Occupancy[s])), c.Records[s])
	if c.DMA[s] {
		q += " DMA"
	}
	return q
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
