package fabric

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// The gateway role. A fabric has at most one gateway: the node through
// which every packet between the cluster and the outside world passes
// (DESIGN.md §1, helpers' gateway contract). The role is a file named
// "gateway" in the fabric directory holding "ADDRESS PID\n", written under
// the fabric's lock. A registration is live while the node at ADDRESS is
// registered by process PID (its pid file says so) and that process exists;
// Node.Close removes the node's own registration files, so a gateway that
// leaves the fabric stops being live at once, and a gateway that dies stops
// being live with its process. A dead registration is replaced by the next
// claim.

// ErrGatewayExists: ClaimGateway on a fabric that has a live gateway.
var ErrGatewayExists = &Error{"fabric: a live gateway is registered", syscall.EEXIST}

const gatewayFile = "gateway"

func (f *Fabric) gatewayPath() string { return filepath.Join(f.dir, gatewayFile) }

// ClaimGateway records that n is the fabric's gateway. If another live
// node holds the role it fails with ErrGatewayExists (errors.Is), naming
// that node's address and pid; a dead holder's registration is replaced.
// Claiming again from the holder succeeds. The registration is removed
// when n closes.
func (n *Node) ClaimGateway() error {
	if n.closed.Load() {
		return errors.New("fabric: ClaimGateway on a closed node")
	}
	f := n.f
	unlock, err := f.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if addr, pid, ok := f.readGateway(); ok && (addr != n.addr || pid != os.Getpid()) {
		// The strong check under the lock: the node's socket answers and
		// the process behind it is the one registered.
		if p, live := f.probe(addr); live && p == pid {
			return errf(ErrGatewayExists, "%v (pid %d) is the gateway", addr, pid)
		}
	}
	tmp := f.gatewayPath() + ".tmp"
	body := fmt.Appendf(nil, "%v %d\n", n.addr, os.Getpid())
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return fmt.Errorf("fabric: registering the gateway: %w", err)
	}
	if err := os.Rename(tmp, f.gatewayPath()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fabric: registering the gateway: %w", err)
	}
	go func() {
		// Node.Close already makes the registration dead (it removes the
		// node's socket and pid file); this also removes the file so that
		// the directory shows no gateway.
		<-n.done
		f.dropGateway(n.addr)
	}()
	return nil
}

// dropGateway removes the gateway registration if it names addr and this
// process.
func (f *Fabric) dropGateway(addr netip.Addr) {
	unlock, err := f.lock()
	if err != nil {
		return
	}
	defer unlock()
	if a, pid, ok := f.readGateway(); ok && a == addr && pid == os.Getpid() {
		os.Remove(f.gatewayPath())
	}
}

// Gateway returns the address of the fabric's live gateway, if any. It is
// cheap enough to call per dial (two small file reads and a kill(pid, 0)),
// not per packet: callers that check every record cache the answer per
// connection.
func (f *Fabric) Gateway() (netip.Addr, bool) {
	addr, pid, ok := f.readGateway()
	if !ok {
		return netip.Addr{}, false
	}
	if p, live := f.NodeLive(addr); !live || p != pid {
		return netip.Addr{}, false
	}
	return addr, true
}

// readGateway parses the registration file. A malformed file counts as no
// registration (a claim overwrites it).
func (f *Fabric) readGateway() (netip.Addr, int, bool) {
	b, err := os.ReadFile(f.gatewayPath())
	if err != nil || len(b) > 64 {
		return netip.Addr{}, 0, false
	}
	fields := bytes.Fields(b)
	if len(fields) != 2 {
		return netip.Addr{}, 0, false
	}
	addr, err := netip.ParseAddr(string(fields[0]))
	if err != nil || !addr.Is4() {
		return netip.Addr{}, 0, false
	}
	pid, err := strconv.Atoi(string(fields[1]))
	if err != nil || pid <= 0 {
		return netip.Addr{}, 0, false
	}
	return addr, pid, true
}

// NodeLive reports whether a live node holds addr, and its pid: the node's
// pid file exists (Join writes it, Node.Close removes it) and names a
// process that exists. It reads one small file and calls kill(pid, 0): a
// gateway answering ICMP echo for nodes uses it, caching the answer.
func (f *Fabric) NodeLive(addr netip.Addr) (pid int, ok bool) {
	b, err := os.ReadFile(f.pidPath(addr))
	if err != nil || len(b) > 32 {
		return 0, false
	}
	pid, err = strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := unix.Kill(pid, 0); err != nil && err != unix.EPERM {
		return 0, false
	}
	return pid, true
}
