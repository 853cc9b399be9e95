package proc

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	Register("echo-args", func(args []string) error {
		return Send(map[string]any{"args": args, "pid": os.Getpid()})
	})
	Register("fail", func(args []string) error { return errors.New("asked to fail") })
	Register("sleep", func(args []string) error {
		time.Sleep(time.Hour)
		return nil
	})
}

func TestMain(m *testing.M) {
	RunChild()
	os.Exit(m.Run())
}

func TestChildRunsRoleInAnotherProcess(t *testing.T) {
	c, err := Start("echo-args", "a", "b c")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Args []string
		Pid  int
	}
	if err := c.Recv(&got, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Args, "|") != "a|b c" {
		t.Errorf("args = %q, want [a, b c]", got.Args)
	}
	if got.Pid == os.Getpid() || got.Pid != c.Pid() {
		t.Errorf("child pid %d, parent %d, Start said %d", got.Pid, os.Getpid(), c.Pid())
	}
	if err := c.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestFailingRoleExitsNonZero(t *testing.T) {
	c, err := Start("fail")
	if err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := c.Wait(10 * time.Second); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("Wait = %v, want exit status 1", err)
	}
}

func TestWaitKillsChildAtDeadline(t *testing.T) {
	c, err := Start("sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	if err := syscall.Kill(c.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("child still exists after timeout: kill(0) = %v", err)
	}
}

func TestWaitTwiceReturnsSameResult(t *testing.T) {
	c, err := Start("fail")
	if err != nil {
		t.Fatal(err)
	}
	first := c.Wait(10 * time.Second)
	second := c.Wait(10 * time.Second)
	if first == nil || second == nil || first.Error() != second.Error() {
		t.Fatalf("Wait twice = %v, %v; want the same exit error", first, second)
	}
}
