// Package proc runs parts of one program in separate processes, for tests
// and benchmarks that need two real processes (shared memory, futexes,
// process_vm_readv and SIGKILL behave differently between goroutines).
//
// A program registers named roles at init time and calls RunChild first
// thing in main (or TestMain). Start re-executes the program's own binary
// with the role's name in the environment; in the child, RunChild runs the
// role and exits instead of returning. The child talks to its parent with
// JSON lines on stdout (Send in the child, Recv in the parent); stderr is
// passed through. A child dies with its parent (PR_SET_PDEATHSIG), so a test
// that fails half-way leaves nothing running.
package proc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

const roleEnv = "ULTCP_PROC_ROLE"

var (
	mu    sync.Mutex
	roles = map[string]func(args []string) error{}
)

// Register makes fn runnable as the child role name. It panics if name is
// registered twice, which is a programming error caught at init.
func Register(name string, fn func(args []string) error) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := roles[name]; dup {
		panic("proc: role registered twice: " + name)
	}
	roles[name] = fn
}

// IsChild reports whether this process was started by Start.
func IsChild() bool { return os.Getenv(roleEnv) != "" }

// RunChild returns at once in a normal process. In a process started by
// Start it runs the requested role with the arguments Start was given and
// exits: status 0 when the role returns nil, 1 (after printing the error on
// stderr) otherwise, 2 for an unknown role.
func RunChild() {
	name := os.Getenv(roleEnv)
	if name == "" {
		return
	}
	mu.Lock()
	fn := roles[name]
	mu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "proc: unknown role %q\n", name)
		os.Exit(2)
	}
	if err := fn(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "proc: role %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

var sendMu sync.Mutex

// Send writes v as one JSON line on stdout, for the parent's Recv. It is
// meant for a child role; it is safe to call from several goroutines.
func Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sendMu.Lock()
	defer sendMu.Unlock()
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// Child is a running child process.
type Child struct {
	Role  string
	cmd   *exec.Cmd
	out   *bufio.Reader
	stdin io.WriteCloser
	wait  sync.Once
	done  chan struct{}
	err   error
}

// Start starts role in a new process running this same binary, with args.
func Start(role string, args ...string) (*Child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("proc: finding own binary: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proc: starting role %s: %w", role, err)
	}
	c := &Child{Role: role, cmd: cmd, out: bufio.NewReader(stdout), stdin: stdin, done: make(chan struct{})}
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Stdin is the child's standard input; closing it tells a child that reads
// it to stop.
func (c *Child) Stdin() io.WriteCloser { return c.stdin }

// ErrTimeout is returned by Recv when nothing arrived in time.
var ErrTimeout = errors.New("proc: timed out waiting for child")

// Recv reads the child's next JSON line into v, waiting at most timeout.
// After a timeout the child is killed, since the stream position is lost.
func (c *Child) Recv(v any, timeout time.Duration) error {
	type result struct {
		line []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := c.out.ReadBytes('\n')
		ch <- result{line, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("proc: reading from role %s: %w", c.Role, r.err)
		}
		if err := json.Unmarshal(r.line, v); err != nil {
			return fmt.Errorf("proc: role %s sent %q: %w", c.Role, r.line, err)
		}
		return nil
	case <-time.After(timeout):
		c.Kill()
		return fmt.Errorf("%w (role %s, %v)", ErrTimeout, c.Role, timeout)
	}
}

// Kill sends SIGKILL to the child; waiting for it is still needed.
func (c *Child) Kill() { _ = c.cmd.Process.Kill() }

// Signal sends sig to the child.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Wait waits at most timeout for the child to exit and returns its error
// (an *exec.ExitError for a non-zero status). A child still running at the
// deadline is killed and ErrTimeout returned. Calling Wait again is safe and
// returns the same exit error.
func (c *Child) Wait(timeout time.Duration) error {
	c.wait.Do(func() {
		go func() {
			c.err = c.cmd.Wait()
			close(c.done)
		}()
	})
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.Kill()
		<-c.done
		return fmt.Errorf("%w (role %s did not exit in %v)", ErrTimeout, c.Role, timeout)
	}
}
