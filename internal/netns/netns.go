// Package netns makes throwaway Linux network namespaces for ultcp's
// interop tests and benchmarks: uniquely named namespaces (ip netns), veth
// pairs between them with addresses and routes, sysctls, commands and
// background peers (socat, iperf3, curl) run inside one with a bounded
// lifetime, kernel-made random loss (nftables or iptables), and tshark
// captures checked for malformed packets and bad checksums.
//
// It must never change the root network namespace: every link, address,
// route, sysctl and rule it makes is made inside a namespace it created
// itself (links are created with `ip -n NS`, never in the caller's
// namespace), and a namespace's links die with it. Every command it runs has
// a deadline. It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the `ip`
// command; Require skips a test that lacks them.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// namePrefix starts the name of every namespace this package makes; the
// process id after it lets New remove namespaces that a killed test left
// behind (their process is gone) without touching anyone else's.
const namePrefix = "ultcp-"

// commandTimeout bounds each configuration command (ip, nft, sysctl).
const commandTimeout = 10 * time.Second

// netnsDir is where `ip netns` keeps its namespace handles.
const netnsDir = "/run/netns"

var seq atomic.Uint64

// NS is a network namespace made by New. Close removes it, after stopping
// every peer started in it.
type NS struct {
	// Name is the namespace's name for `ip netns exec` and `ip -n`.
	Name string

	mu     sync.Mutex
	procs  []*Proc
	closed bool
}

// Available says why this process cannot make namespaces (nil if it can):
// it must run as root and find the `ip` command.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netns: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to make network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("netns: the ip command (iproute2) is missing: %w", err)
	}
	return nil
}

// New makes a network namespace named ultcp-LABEL-PID-N, with its loopback
// up. The label (letters, digits, '-' only) says what it is for, e.g. "ext".
// Namespaces of this package whose process has died are removed first.
func New(label string) (*NS, error) {
	if label == "" || len(label) > 40 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
		return nil, fmt.Errorf("netns: label %q: want 1..40 letters, digits and '-'", label)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	removeStale()
	name := fmt.Sprintf("%s%s-%d-%d", namePrefix, label, os.Getpid(), seq.Add(1))
	if _, err := run(context.Background(), "ip", "netns", "add", name); err != nil {
		return nil, err
	}
	ns := &NS{Name: name}
	if err := ns.IP("link", "set", "lo", "up"); err != nil {
		ns.Close()
		return nil, err
	}
	return ns, nil
}

// removeStale deletes namespaces named by this package whose creating
// process no longer exists (a test killed before its cleanup ran).
func removeStale() {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, ok := ownerPID(e.Name())
		if !ok || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			run(context.Background(), "ip", "netns", "del", e.Name())
		}
	}
}

// ownerPID extracts PID from a name ultcp-LABEL-PID-N.
func ownerPID(name string) (int, bool) {
	if !strings.HasPrefix(name, namePrefix) {
		return 0, false
	}
	f := strings.Split(name, "-")
	if len(f) < 4 {
		return 0, false
	}
	pid, err := strconv.Atoi(f[len(f)-2])
	if err != nil || pid <= 0 {
		return 0, false
	}
	if _, err := strconv.Atoi(f[len(f)-1]); err != nil {
		return 0, false
	}
	return pid, true
}

// Close stops the peers started in the namespace and deletes it; its links
// (and their peers in other namespaces) go with it. Safe to call twice.
func (ns *NS) Close() error {
	ns.mu.Lock()
	if ns.closed {
		ns.mu.Unlock()
		return nil
	}
	ns.closed = true
	procs := ns.procs
	ns.procs = nil
	ns.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
	_, err := run(context.Background(), "ip", "netns", "del", ns.Name)
	return err
}

// Command returns a command that runs name inside the namespace (ip netns
// exec), killed with its whole process group when ctx ends.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		// The negative pid is the process group: children of a shell die too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs name inside the namespace until it exits or ctx ends, and
// returns its standard output. The error carries the standard error.
func (ns *NS) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runCmd(ns.Command(ctx, name, args...))
}

// IP runs `ip -n NS args...` with the configuration timeout.
func (ns *NS) IP(args ...string) error {
	_, err := run(context.Background(), "ip", append([]string{"-n", ns.Name}, args...)...)
	return err
}

// AddAddr gives dev the address p (e.g. 192.168.77.1/24).
func (ns *NS) AddAddr(dev string, p netip.Prefix) error {
	return ns.IP("addr", "add", p.String(), "dev", dev)
}

// AddRoute routes dst via the gateway address via (on-link).
func (ns *NS) AddRoute(dst netip.Prefix, via netip.Addr) error {
	return ns.IP("route", "add", dst.String(), "via", via.String())
}

// SetMTU sets dev's MTU.
func (ns *NS) SetMTU(dev string, mtu int) error {
	return ns.IP("link", "set", "dev", dev, "mtu", strconv.Itoa(mtu))
}

// Sysctl sets a sysctl of the namespace, e.g. Sysctl("net.ipv4.ip_forward",
// "1"). Only the net.* tree is per namespace, so only it is accepted: any
// other key would change the whole machine.
func (ns *NS) Sysctl(key, value string) error {
	if !strings.HasPrefix(key, "net.") || strings.Contains(key, "..") || strings.ContainsAny(key, "/ ") {
		return fmt.Errorf("netns: sysctl %q: only net.* keys are per namespace", key)
	}
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	// $1 and $2 are passed as arguments, never spliced into the script.
	_, err := ns.Run(ctx, "sh", "-c", `printf '%s\n' "$1" > "$2"`, "sh", value, path)
	if err != nil {
		return fmt.Errorf("netns: sysctl %s=%s in %s: %w", key, value, ns.Name, err)
	}
	return nil
}

// ReadSysctl reads a net.* sysctl of the namespace.
func (ns *NS) ReadSysctl(key string) (string, error) {
	if !strings.HasPrefix(key, "net.") || strings.Contains(key, "..") || strings.ContainsAny(key, "/ ") {
		return "", fmt.Errorf("netns: sysctl %q: only net.* keys are per namespace", key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := ns.Run(ctx, "cat", filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
	return strings.TrimSpace(string(out)), err
}

// End is one end of a veth pair: its namespace, interface name (at most 15
// bytes) and address.
type End struct {
	NS   *NS
	Dev  string
	Addr netip.Prefix
}

// Veth joins a.NS and b.NS with a veth pair, gives each end its address and
// brings both up. The pair is created inside a.NS (never in the caller's
// namespace) and disappears when either namespace is deleted.
func Veth(a, b End) error {
	for _, e := range []End{a, b} {
		if e.NS == nil || e.Dev == "" || len(e.Dev) > 15 {
			return fmt.Errorf("netns: veth end %q: want a namespace and a name of 1..15 bytes", e.Dev)
		}
	}
	if err := a.NS.IP("link", "add", a.Dev, "type", "veth", "peer", "name", b.Dev, "netns", b.NS.Name); err != nil {
		return err
	}
	for _, e := range []End{a, b} {
		if e.Addr.IsValid() {
			if err := e.NS.AddAddr(e.Dev, e.Addr); err != nil {
				return err
			}
		}
		if err := e.NS.IP("link", "set", e.Dev, "up"); err != nil {
			return err
		}
	}
	return nil
}

// run runs a command in the caller's namespace (only ip itself, whose -n
// or netns argument names the target) with the configuration timeout.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	return runCmd(cmd)
}

func runCmd(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		return stdout.Bytes(), fmt.Errorf("netns: %s: %w: %s", strings.Join(cmd.Args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}
