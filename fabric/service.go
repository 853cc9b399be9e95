package fabric

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Services (issue 8). A service is a virtual address and port (a VIP) on
// the cluster subnet that no node holds; the nodes that serve it are its
// pool, and the gateway spreads connections from outside over them. A node
// joins a pool by writing a membership entry in the fabric directory,
// services/VIP_PORT@ADDR, holding "ADDR PID POLICY\n"; it leaves by
// removing it, and Node.Close removes every entry of the node. An entry
// counts only while its node is live (NodeLive: the node's pid file names
// PID and that process exists), so a member that dies leaves the pool
// with its process, whatever its file says. The gateway reads the
// directory (ServiceMembers) a few times a second, off its data path.
//
// Why a directory and not a message to the gateway: membership outlives
// the gateway (a gateway restarted, or started after the members, finds
// the pool as it is), it needs no connection to the gateway, and the
// liveness rule is the one the fabric already has for nodes and for the
// gateway role. Every entry is the node's own file, written whole
// (write, then rename), so no lock is needed.

const servicesDir = "services"

// ServiceEntry is one live member of one service.
type ServiceEntry struct {
	Service netip.AddrPort
	Member  netip.Addr
	Pid     int
	// Policy is the scheduling policy the member asked for ("" if none):
	// the gateway uses it when it was not told one for the service.
	Policy string
}

// ErrServiceAddr: a service address that is not a unicast IPv4 address of
// the subnet with a non-zero port, or that a live node holds.
var ErrServiceAddr = errors.New("fabric: not a service address")

func (f *Fabric) servicePath(svc netip.AddrPort, member netip.Addr) string {
	return filepath.Join(f.dir, servicesDir, fmt.Sprintf("%v_%d@%v", svc.Addr(), svc.Port(), member))
}

// JoinService records that n serves svc, asking for policy ("" for the
// gateway's default; at most 32 printable bytes, no space). Joining again
// rewrites the entry. It fails if svc is not in the fabric's subnet, is
// n's own address or a live node's, or has port 0.
func (n *Node) JoinService(svc netip.AddrPort, policy string) error {
	if n.closed.Load() {
		return errors.New("fabric: JoinService on a closed node")
	}
	f := n.f
	a := svc.Addr().Unmap()
	svc = netip.AddrPortFrom(a, svc.Port())
	if !a.Is4() || !f.cfg.Subnet.Contains(a) || svc.Port() == 0 {
		return fmt.Errorf("%w: %v (want an address of %v and a port)", ErrServiceAddr, svc, f.cfg.Subnet)
	}
	if a == n.addr {
		return fmt.Errorf("%w: %v is the node's own address", ErrServiceAddr, a)
	}
	if pid, live := f.NodeLive(a); live {
		return fmt.Errorf("%w: %v is held by a live node (pid %d)", ErrServiceAddr, a, pid)
	}
	if len(policy) > 32 || strings.ContainsAny(policy, " \t\r\n") {
		return fmt.Errorf("fabric: JoinService %v: bad policy name %q", svc, policy)
	}
	if err := os.MkdirAll(filepath.Join(f.dir, servicesDir), 0o755); err != nil {
		return fmt.Errorf("fabric: JoinService %v: %w", svc, err)
	}
	p := f.servicePath(svc, n.addr)
	body := fmt.Appendf(nil, "%v %d %s\n", n.addr, os.Getpid(), policy)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return fmt.Errorf("fabric: JoinService %v: %w", svc, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fabric: JoinService %v: %w", svc, err)
	}
	svcMu.Lock()
	m := nodeServices[n]
	first := m == nil
	if first {
		m = map[netip.AddrPort]bool{}
		nodeServices[n] = m
	}
	m[svc] = true
	svcMu.Unlock()
	if first {
		go func() {
			// The node's end is the end of its memberships: an entry
			// of a closed node would be dead anyway (its pid file is
			// gone), this also clears the directory.
			<-n.done
			svcMu.Lock()
			defer svcMu.Unlock()
			for s := range nodeServices[n] {
				os.Remove(f.servicePath(s, n.addr))
			}
			delete(nodeServices, n)
		}()
	}
	return nil
}

// The services each node of this process joined (the Node type is not
// this file's).
var (
	svcMu        sync.Mutex
	nodeServices = map[*Node]map[netip.AddrPort]bool{}
)

// LeaveService removes n's membership of svc (nothing if it had none).
func (n *Node) LeaveService(svc netip.AddrPort) error {
	svc = netip.AddrPortFrom(svc.Addr().Unmap(), svc.Port())
	svcMu.Lock()
	delete(nodeServices[n], svc)
	svcMu.Unlock()
	err := os.Remove(n.f.servicePath(svc, n.addr))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("fabric: LeaveService %v: %w", svc, err)
	}
	return nil
}

// ServiceMembers lists the live members of every service, in directory
// order. It reads one small file per entry and calls kill(pid, 0) per
// member: call it a few times a second, never per packet. Malformed
// entries and entries of dead or closed nodes are skipped (left for their
// node to rewrite: a reader does not delete another process's files).
func (f *Fabric) ServiceMembers() ([]ServiceEntry, error) {
	ents, err := os.ReadDir(filepath.Join(f.dir, servicesDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fabric: reading services: %w", err)
	}
	var out []ServiceEntry
	for _, e := range ents {
		se, ok := parseServiceName(e.Name())
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(f.dir, servicesDir, e.Name()))
		if err != nil || len(b) > 128 {
			continue
		}
		fields := bytes.Fields(b)
		if len(fields) < 2 || len(fields) > 3 || string(fields[0]) != se.Member.String() {
			continue
		}
		pid, err := strconv.Atoi(string(fields[1]))
		if err != nil || pid <= 0 {
			continue
		}
		if len(fields) == 3 {
			se.Policy = string(fields[2])
		}
		if p, live := f.NodeLive(se.Member); !live || p != pid {
			continue
		}
		se.Pid = pid
		out = append(out, se)
	}
	return out, nil
}

// parseServiceName parses "VIP_PORT@MEMBER".
func parseServiceName(name string) (ServiceEntry, bool) {
	svc, member, ok := strings.Cut(name, "@")
	if !ok {
		return ServiceEntry{}, false
	}
	vip, port, ok := strings.Cut(svc, "_")
	if !ok {
		return ServiceEntry{}, false
	}
	a, err1 := netip.ParseAddr(vip)
	p, err2 := strconv.ParseUint(port, 10, 16)
	m, err3 := netip.ParseAddr(member)
	if err1 != nil || err2 != nil || err3 != nil || !a.Is4() || !m.Is4() || p == 0 {
		return ServiceEntry{}, false
	}
	return ServiceEntry{Service: netip.AddrPortFrom(a, uint16(p)), Member: m}, true
}

// RingConsumed is the number of bytes the peer has consumed from the
// connection's sending ring since it opened (the consumer's tail pointer,
// as far as the peer has published it: it publishes in batches and when it
// goes idle). It never exceeds what was committed: a hostile peer's tail
// beyond the head counts as the head. A load balancer reads it from any
// goroutine, with RingOccupancy (gateway/lb.Ring). Zero after Close or a
// failure.
func (c *Conn) RingConsumed() uint64 {
	if c.state.Load()&(stClosed|stReset) != 0 {
		return 0
	}
	t := atomic.LoadUint64(c.tx.ctl64(offTail))
	if h := c.tx.pubHead.Load(); t > h {
		return h
	}
	return t
}

// RingProduced is the number of bytes committed to the connection's
// sending ring since it opened (the producer's head as of the last
// Commit), from any goroutine: what the peer will have consumed once it
// has read everything. Zero after Close or a failure.
func (c *Conn) RingProduced() uint64 {
	if c.state.Load()&(stClosed|stReset) != 0 {
		return 0
	}
	return c.tx.pubHead.Load()
}

// PublishConsumed makes the receiving ring's consumer position visible to
// the peer now, instead of at the next batch or when the consumer goes
// idle. A service member calls it after it consumed records, so that the
// gateway's load balancer, which reads that position as the member's
// progress (gateway/lb), sees a request taken when it is taken. Only the
// goroutine consuming the ring may call it (as Peek and Release).
func (c *Conn) PublishConsumed() {
	if c.rx.tail != c.rx.pubTail {
		c.rx.publish()
	}
}
