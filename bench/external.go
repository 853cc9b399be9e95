package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// gVisor runs as an external helper because its netstack is a heavy
// dependency the core module must not carry. The helper is the module in
// bench/gvisor; it links this package and speaks the roles' protocol, so
// the harness treats it like any other transport.

// gvisorDir finds the bench/gvisor module: o.GVisorSrc, $ULTCP_GVISOR_SRC,
// or the directory next to this source file (a binary built from a
// checkout on this machine).
func gvisorDir(o Options) (string, error) {
	for _, d := range []string{o.GVisorSrc, os.Getenv("ULTCP_GVISOR_SRC")} {
		if d != "" {
			return d, nil
		}
	}
	_, file, _, ok := runtime.Caller(0)
	if ok {
		d := filepath.Join(filepath.Dir(file), "gvisor")
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("cannot find the bench/gvisor module: set $ULTCP_GVISOR_SRC to its directory")
}

// buildGVisor builds the helper into the user's cache directory (go build
// is itself incremental, so a second run costs a second) and returns its
// path, or an error quoting what go said.
func buildGVisor(o Options) (string, error) {
	src, err := gvisorDir(o)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "ultcp", "bench-gvisor")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("building the gVisor helper needs the go tool in $PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, ".")
	cmd.Dir = src
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cannot build the gVisor helper (go build in %s: %v: %s); it needs the gvisor.dev/gvisor version its go.mod pins from the module proxy", src, err, lastLines(string(msg), 2))
	}
	return out, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// gvisorLink is how the two gVisor stacks reach each other: the fastest
// link two processes can share without privileges — fdbased over a
// socketpair, one packet per datagram.
const gvisorLink = "fdbased over an AF_UNIX SOCK_SEQPACKET socketpair (one end inherited by each process as fd 3; 8 MiB send buffer so no packet is dropped; checksum offload as on loopback)"

func startGVisor(pin string, o Options) (*pair, error) {
	bin, err := buildGVisor(o)
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ends := []*os.File{os.NewFile(uintptr(fds[0]), "gvisor-link-0"), os.NewFile(uintptr(fds[1]), "gvisor-link-1")}
	defer ends[0].Close()
	defer ends[1].Close()
	p := &pair{name: GVisor, link: gvisorLink}
	start := func(side int, args ...string) (*extChild, error) {
		cmd := exec.Command(bin, args...)
		cmd.ExtraFiles = []*os.File{ends[side]}
		cmd.Env = os.Environ()
		if cpu := cpuFor(pin, side); cpu >= 0 {
			cmd.Env = append(cmd.Env, cpuEnv+"="+strconv.Itoa(cpu))
		}
		cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
		return startExt(cmd)
	}
	srv, err := start(0, "server")
	if err != nil {
		return nil, err
	}
	p.server = srv
	var r Ready
	if err := srv.Recv(&r, 20*time.Second); err != nil {
		_ = p.close()
		return nil, err
	}
	cl, err := start(1, "client", r.Addr)
	if err != nil {
		_ = p.close()
		return nil, err
	}
	p.client = cl
	if err := cl.Recv(&r, 20*time.Second); err != nil || r.Error != "" {
		_ = p.close()
		return nil, errors.Join(err, errorIf(r.Error))
	}
	return p, nil
}

func errorIf(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// runNetPIPE runs Debian's NPtcp (package netpipe-tcp) over loopback with
// the sweep's bounds and perturbation, and reads its output file: bytes,
// Mbit/s and the one-way time NetPIPE keeps (the best of its trials'
// averages), which stands in for both minimum and median. NPtcp measures
// no CPU time.
func runNetPIPE(o Options) ([]RunResult, error) {
	np, err := exec.LookPath("NPtcp")
	if err != nil {
		return nil, errors.New("NPtcp not installed (Debian package netpipe-tcp)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ultcp-bench-netpipe-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	upper, perturb := "8388608", "3"
	if o.Quick {
		upper, perturb = "4194304", "0"
	}
	if o.Sizes != nil {
		upper = strconv.Itoa(o.Sizes[len(o.Sizes)-1])
	}
	limit := 2 * time.Minute
	if o.Quick {
		limit = 45 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	command := func(side int, args ...string) *exec.Cmd {
		if cpu := cpuFor(o.Pin, side); cpu >= 0 {
			if ts, err := exec.LookPath("taskset"); err == nil {
				args = append([]string{"-c", strconv.Itoa(cpu), np}, args...)
				return exec.CommandContext(ctx, ts, args...)
			}
		}
		return exec.CommandContext(ctx, np, args...)
	}
	// The receiver must be given the same sweep: it does not learn it
	// from the transmitter, and with different perturbations the two
	// wait for each other forever.
	sweep := []string{"-l", "1", "-u", upper, "-p", perturb}
	recv := command(0, append([]string{"-P", port}, sweep...)...)
	recv.Dir = dir
	recv.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	if err := recv.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = recv.Process.Kill(); _ = recv.Wait() }()
	out := filepath.Join(dir, "np.out")
	var runErr error
	for try := 0; try < 50; try++ { // the receiver needs a moment to listen
		send := command(1, append([]string{"-h", "127.0.0.1", "-P", port, "-o", out}, sweep...)...)
		send.Dir = dir
		send.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
		var msg []byte
		msg, runErr = send.CombinedOutput()
		if runErr == nil {
			break
		}
		runErr = fmt.Errorf("NPtcp: %v: %s", runErr, lastLines(string(msg), 2))
		if ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if runErr != nil {
		return nil, runErr
	}
	return parseNetPIPE(out)
}

func parseNetPIPE(path string) ([]RunResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []RunResult
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		b, err1 := strconv.Atoi(fs[0])
		m, err2 := strconv.ParseFloat(fs[1], 64)
		s, err3 := strconv.ParseFloat(fs[2], 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("NPtcp output %q: %w", sc.Text(), err)
		}
		ns := int64(s * 1e9)
		runs = append(runs, RunResult{Transport: NetPIPE, Bytes: b, HalfMin: ns, HalfMedian: ns, Mbps: m})
	}
	if len(runs) == 0 {
		return nil, errors.New("NPtcp wrote no results")
	}
	return runs, sc.Err()
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}
