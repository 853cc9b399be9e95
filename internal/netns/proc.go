package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a background process (a peer such as `socat` or `iperf3 -s`)
// started in a namespace by Start. It is killed when its lifetime ends,
// when Stop is called, or when its namespace is closed, whichever is first.
type Proc struct {
	Cmd *exec.Cmd

	cancel context.CancelFunc
	done   chan struct{}
	err    error

	mu     sync.Mutex
	stderr bytes.Buffer // the last stderrKeep bytes are kept
}

const stderrKeep = 64 << 10

// Start starts name in the namespace with a lifetime: after it the process
// group is killed. Standard input, output and error are those the caller
// set on the returned command's configuration through setup (may be nil);
// unset standard error is kept (its tail) for Err's message.
func (ns *NS) Start(lifetime time.Duration, setup func(*exec.Cmd), name string, args ...string) (*Proc, error) {
	ns.mu.Lock()
	closed := ns.closed
	ns.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("netns: start %s in %s: namespace closed", name, ns.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lifetime)
	p := &Proc{Cmd: ns.Command(ctx, name, args...), cancel: cancel, done: make(chan struct{})}
	if setup != nil {
		setup(p.Cmd)
	}
	if p.Cmd.Stderr == nil {
		p.Cmd.Stderr = (*tailWriter)(p)
	}
	if err := p.Cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("netns: start %s in %s: %w", name, ns.Name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		cancel()
		close(p.done)
	}()
	ns.mu.Lock()
	ns.procs = append(ns.procs, p)
	ns.mu.Unlock()
	return p, nil
}

type tailWriter Proc

func (w *tailWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stderr.Write(b)
	if n := w.stderr.Len(); n > 2*stderrKeep {
		tail := append([]byte(nil), w.stderr.Bytes()[n-stderrKeep:]...)
		w.stderr.Reset()
		w.stderr.Write(tail)
	}
	return len(b), nil
}

// Stderr returns the tail of the process's standard error (when Start kept it).
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit (at most until its lifetime ends) and
// returns its exit error, with the tail of its standard error.
func (p *Proc) Wait() error {
	<-p.done
	if p.err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(p.Cmd.Args, " "), p.err, strings.TrimSpace(p.Stderr()))
	}
	return nil
}

// Stop sends SIGTERM to the process group, and SIGKILL if it is still
// there a second later; it returns when the process has exited.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Second):
		p.cancel() // SIGKILL to the group (Command's Cancel)
		<-p.done
	}
}

// Kill sends SIGKILL to the process alone (not its group) and waits for it
// to exit: a crash, as a test of what its peers do.
func (p *Proc) Kill() {
	p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// WaitListen waits until the process (or, through `ip netns exec`, the
// program it became) has a TCP socket listening on port in its namespace,
// by reading /proc/PID/net/tcp and tcp6 — which shows the sockets of the process's
// own namespace — so no tool or connection attempt is needed.
func (p *Proc) WaitListen(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("netns: %s exited before listening on %d: %v", p.Cmd.Args, port, p.Wait())
		default:
		}
		// A dual-stack listener (iperf3's) is in tcp6 only.
		for _, file := range []string{"tcp", "tcp6"} {
			f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", p.Cmd.Process.Pid, file))
			if err != nil {
				continue
			}
			ok, err := hasListener(f, port)
			f.Close()
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: %s not listening on port %d after %v", p.Cmd.Args, port, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tcpListen is the state column's value for LISTEN in /proc/net/tcp.
const tcpListen = "0A"

// hasListener reads /proc/net/tcp's format: "sl local_address rem_address
// st ...", addresses as HEX_IP:HEX_PORT.
func hasListener(r io.Reader, port int) (bool, error) {
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			return false, errors.New("netns: short line in /proc/net/tcp")
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			return false, fmt.Errorf("netns: bad local address %q in /proc/net/tcp", f[1])
		}
		lp, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err != nil {
			return false, fmt.Errorf("netns: bad port in %q: %w", f[1], err)
		}
		if int(lp) == port && f[3] == tcpListen {
			return true, nil
		}
	}
	return false, sc.Err()
}
