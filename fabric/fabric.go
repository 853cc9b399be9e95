package fabric

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for Config and ConnConfig fields left zero.
const (
	DefaultName            = "default"
	DefaultRoot            = "/dev/shm/ultcp"
	DefaultSpinBudget      = 50 * time.Microsecond
	DefaultSlabSize        = 4 << 30
	DefaultMaxConns        = 1 << 16
	DefaultControlRingSize = 64 << 10
	DefaultRingSize        = 256 << 10
)

// DefaultSubnet is the cluster subnet node addresses must belong to.
var DefaultSubnet = netip.MustParsePrefix("10.77.0.0/16")

// Config describes a fabric and how its nodes behave.
type Config struct {
	// Name selects the directory DefaultRoot/Name. Default DefaultName.
	Name string
	// Dir, if set, is the fabric directory itself and Name is ignored.
	Dir string
	// Subnet holds every node address. Default DefaultSubnet.
	Subnet netip.Prefix
	// SpinBudget is how long a blocked call busy-polls before it arms the
	// tripwire and sleeps on a futex. Default DefaultSpinBudget; negative
	// means sleep at once.
	SpinBudget time.Duration
	// SlabSize is the address space, per side, of a peer segment for ring
	// data. Rounded up to 64 KiB. Default DefaultSlabSize.
	SlabSize int64
	// MaxConns bounds the connections each side of a peer segment opens.
	// Default DefaultMaxConns.
	MaxConns int
	// ControlRingSize is the size of each control ring (a power of two).
	// Default DefaultControlRingSize.
	ControlRingSize int
	// NoDMA makes this process's nodes tell their peers, at first contact,
	// that they cannot pull with process_vm_readv (as if the kernel refused
	// it), so the peers' SendDMA falls back to PIO. For tests and for
	// measuring the fallback.
	NoDMA bool
	// Logger receives the few things worth logging (DMA falling back to
	// PIO, stale entries removed). Default slog.Default().
	Logger *slog.Logger
}

// Fabric is an open fabric directory.
type Fabric struct {
	dir string
	cfg Config
	log *slog.Logger
}

// Open opens (creating if needed) the fabric directory and removes the
// registrations that dead nodes left behind.
func Open(cfg Config) (*Fabric, error) {
	dir, err := cfg.dir()
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.SpinBudget == 0 {
		cfg.SpinBudget = DefaultSpinBudget
	}
	if cfg.SlabSize == 0 {
		cfg.SlabSize = DefaultSlabSize
	}
	cfg.SlabSize = int64(roundUp(uint64(cfg.SlabSize), slabAlign))
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ControlRingSize == 0 {
		cfg.ControlRingSize = DefaultControlRingSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, err := makeLayout(params{uint64(cfg.ControlRingSize), uint64(cfg.MaxConns), uint64(cfg.SlabSize)}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("fabric: %w", err)
	}
	f := &Fabric{dir: cfg.Dir, cfg: cfg, log: cfg.Logger}
	unlock, err := f.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, fmt.Errorf("fabric: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".sock")
		if !ok {
			continue
		}
		if addr, err := netip.ParseAddr(name); err == nil {
			if _, live := f.probe(addr); !live {
				f.removeEntry(addr)
				f.log.Info("fabric: removed the entry of a dead node", "fabric", f.dir, "addr", addr)
			}
		}
	}
	return f, nil
}

// Dir is the fabric directory.
func (f *Fabric) Dir() string { return f.dir }

func (f *Fabric) sockPath(a netip.Addr) string { return filepath.Join(f.dir, a.String()+".sock") }
func (f *Fabric) pidPath(a netip.Addr) string  { return filepath.Join(f.dir, a.String()+".pid") }

// lock serialises registration changes between processes (flock on a
// lock file in the directory; the kernel drops it if we die).
func (f *Fabric) lock() (func(), error) {
	fd, err := unix.Open(filepath.Join(f.dir, "lock"), unix.O_CREAT|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("fabric: lock file: %w", err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fabric: lock: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}

// probe connects to a registered node's socket: a live node accepts (and
// sees an empty hello, which it ignores), a dead one's socket refuses.
func (f *Fabric) probe(a netip.Addr) (pid int, live bool) {
	c, err := net.DialTimeout("unix", f.sockPath(a), time.Second)
	if err != nil {
		return 0, false
	}
	defer c.Close()
	pid, _ = peerPid(c.(*net.UnixConn))
	return pid, true
}

func (f *Fabric) removeEntry(a netip.Addr) {
	os.Remove(f.sockPath(a))
	os.Remove(f.pidPath(a))
}

// Join registers a node with address addr and returns it. A live node with
// the same address makes it fail with ErrAddrInUse; a dead node's entry is
// replaced.
func (f *Fabric) Join(addr netip.Addr) (*Node, error) {
	addr = addr.Unmap()
	if !addr.Is4() || !f.cfg.Subnet.Contains(addr) {
		return nil, fmt.Errorf("fabric: address %v is not an IPv4 address in %v", addr, f.cfg.Subnet)
	}
	unlock, err := f.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if pid, live := f.probe(addr); live {
		return nil, errf(ErrAddrInUse, "%v is held by pid %d", addr, pid)
	}
	f.removeEntry(addr)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.sockPath(addr), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("fabric: registering %v: %w", addr, err)
	}
	ln.SetUnlinkOnClose(false) // we remove it ourselves, with the pid file
	if err := os.WriteFile(f.pidPath(addr), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		ln.Close()
		f.removeEntry(addr)
		return nil, fmt.Errorf("fabric: %w", err)
	}
	n, err := newNode(f, addr, ln)
	if err != nil {
		ln.Close()
		f.removeEntry(addr)
		return nil, err
	}
	return n, nil
}

// peerPid asks the kernel which process is at the other end of c.
func peerPid(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Pid), nil
}

// isNoNode tells whether dialling a node's socket failed because nobody is
// there.
func isNoNode(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// dir is the fabric directory cfg names.
func (cfg *Config) dir() (string, error) {
	if cfg.Dir != "" {
		return cfg.Dir, nil
	}
	name := cfg.Name
	if name == "" {
		name = DefaultName
	}
	if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("fabric: bad fabric name %q", name)
	}
	return filepath.Join(DefaultRoot, name), nil
}
