package main

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp"
)

// The two-process tests run this test binary as the ultcp command: with
// ULTCP_TEST_RUN_CLI=1 in its environment it runs run(os.Args[1:]) and
// exits, before the testing package looks at the arguments.
func init() {
	if os.Getenv("ULTCP_TEST_RUN_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
}

func ncTestDir(t *testing.T) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join("/dev/shm", "ultcp-nc-test-"+hex.EncodeToString(b[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ncProc is one `ultcp nc` process fed by a generator and drained into a
// hash.
type ncProc struct {
	cmd      *exec.Cmd
	stderr   *bytes.Buffer
	lines    chan string // stderr lines, as they come
	sentSum  chan []byte // SHA-256 of what was written to its stdin
	recvSum  chan []byte // SHA-256 of its stdout, and
	recvLen  chan int64  // how many bytes it wrote there
	errs     chan error
	exitCode chan int
}

// startNC starts `ultcp nc args...` with n bytes of a keyed pseudo-random
// stream (AES-CTR under key) on its stdin.
func startNC(t *testing.T, n int64, key byte, args ...string) *ncProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"nc"}, args...)...)
	cmd.Env = append(os.Environ(), "ULTCP_TEST_RUN_CLI=1")
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	errW.Close()
	p := &ncProc{cmd: cmd, stderr: new(bytes.Buffer), lines: make(chan string, 16),
		sentSum: make(chan []byte, 1), recvSum: make(chan []byte, 1), recvLen: make(chan int64, 1),
		errs: make(chan error, 2), exitCode: make(chan int, 1)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		inW.Close()
	})
	go func() { // stdin: the generator
		defer inW.Close()
		block, _ := aes.NewCipher(bytes.Repeat([]byte{key}, 16))
		ctr := cipher.NewCTR(block, make([]byte, 16))
		h := sha256.New()
		buf := make([]byte, 1<<20)
		zero := make([]byte, len(buf))
		for left := n; left > 0; {
			k := min(int64(len(buf)), left)
			ctr.XORKeyStream(buf[:k], zero[:k])
			h.Write(buf[:k])
			if _, err := inW.Write(buf[:k]); err != nil {
				p.errs <- fmt.Errorf("writing stdin: %w", err)
				return
			}
			left -= k
		}
		p.sentSum <- h.Sum(nil)
	}()
	go func() { // stdout: the hash
		h := sha256.New()
		n, err := io.CopyBuffer(h, outR, make([]byte, 1<<20))
		outR.Close()
		if err != nil {
			p.errs <- err
		}
		p.recvSum <- h.Sum(nil)
		p.recvLen <- n
	}()
	go func() {
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			p.stderr.WriteString(sc.Text() + "\n")
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
		err := cmd.Wait()
		code := 0
		if err != nil {
			code = -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
		}
		p.exitCode <- code
	}()
	return p
}

// waitLine waits for a stderr line containing s.
func (p *ncProc) waitLine(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	tm := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("nc ended before saying %q", s)
			}
			if strings.Contains(l, s) {
				return
			}
		case <-tm:
			t.Fatalf("nc did not say %q within %v", s, timeout)
		}
	}
}

var dmaRecords = regexp.MustCompile(`DMA records (\d+)`)

// finish waits for the process and returns the DMA record count it
// reported.
func (p *ncProc) finish(t *testing.T, name string, timeout time.Duration) int {
	t.Helper()
	select {
	case code := <-p.exitCode:
		if code != 0 {
			t.Fatalf("%s exited with %d:\n%s", name, code, p.stderr.String())
		}
	case err := <-p.errs:
		t.Fatalf("%s: %v", name, err)
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		t.Fatalf("%s did not finish within %v", name, timeout)
	}
	m := dmaRecords.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("%s did not report its counters:\n%s", name, p.stderr.String())
	}
	k, _ := strconv.Atoi(m[1])
	return k
}

func TestNCMovesOneGiBEachWayWithSHA256(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 4 GiB in all; skipped with -short")
	}
	const n = 1 << 30
	for _, mode := range []string{"off", "on"} {
		t.Run("zerocopy="+mode, func(t *testing.T) {
			dir := ncTestDir(t)
			start := time.Now()
			srv := startNC(t, n, 1, "-v", "--fabric-dir", dir, "--zerocopy", mode, "-l", "9000")
			srv.waitLine(t, "listening on 10.77.0.1:9000", 10*time.Second)
			cli := startNC(t, n, 2, "-v", "--fabric-dir", dir, "--zerocopy", mode, "10.77.0.1", "9000")
			dmaCli := cli.finish(t, "client", 50*time.Second)
			dmaSrv := srv.finish(t, "server", 10*time.Second)
			for _, c := range []struct {
				name     string
				from, to *ncProc
			}{{"client to server", cli, srv}, {"server to client", srv, cli}} {
				sent, got, gotLen := <-c.from.sentSum, <-c.to.recvSum, <-c.to.recvLen
				if gotLen != n {
					t.Errorf("%s: %d bytes arrived, want %d", c.name, gotLen, n)
				} else if !bytes.Equal(sent, got) {
					t.Errorf("%s: SHA-256 of what arrived %x, of what was sent %x", c.name, got, sent)
				}
			}
			if mode == "off" && (dmaCli != 0 || dmaSrv != 0) {
				t.Errorf("--zerocopy=off sent DMA records: client %d, server %d", dmaCli, dmaSrv)
			}
			if mode == "on" && (dmaCli == 0 || dmaSrv == 0) {
				t.Errorf("--zerocopy=on sent no DMA records: client %d, server %d", dmaCli, dmaSrv)
			}
			t.Logf("1 GiB each way in %v; DMA records: client %d, server %d", time.Since(start).Round(time.Millisecond), dmaCli, dmaSrv)
		})
	}
}

// In-process tests: a stack in this process plays the peer, runNC the
// command.

func peerStack(t *testing.T, dir string) *ultcp.Stack {
	t.Helper()
	s, err := ultcp.NewStack(ultcp.Config{Addr: netip.MustParseAddr("10.77.0.1"), FabricDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestNCHalfClosesOnStdinEOFAndPrintsTheReply(t *testing.T) {
	dir := ncTestDir(t)
	s := peerStack(t, dir)
	l, err := s.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c) // ends at the FIN from nc's CloseWrite
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
		c.Write([]byte("you said: " + string(b)))
	}()
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--fabric-dir", dir, "10.77.0.1", "7"}, strings.NewReader("hello"), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if g := <-got; g != "hello" {
		t.Fatalf("server read %q, want %q", g, "hello")
	}
	if stdout.String() != "you said: hello" {
		t.Fatalf("stdout %q", stdout.String())
	}
}

func TestNCConnectionRefusedExits1(t *testing.T) {
	dir := ncTestDir(t)
	peerStack(t, dir) // a node, but no listener on port 7
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--fabric-dir", dir, "10.77.0.1", "7"}, strings.NewReader(""), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "connection refused") {
		t.Fatalf("exit %d, stderr %q; want 1 and connection refused", code, stderr.String())
	}
}

func TestNCNoNodeExits1(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--fabric-dir", ncTestDir(t), "10.77.0.9", "7"}, strings.NewReader(""), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "no route to host") {
		t.Fatalf("exit %d, stderr %q; want 1 and no route to host", code, stderr.String())
	}
}

func TestNCResetByPeerExits1(t *testing.T) {
	dir := ncTestDir(t)
	s := peerStack(t, dir)
	l, err := s.ListenTCP("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.(*ultcp.Conn).SetLinger(0) // Close sends a RST
		c.Close()
	}()
	stdinR, stdinW := io.Pipe() // never ends: only the reset can end nc
	defer stdinW.Close()
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--fabric-dir", dir, "10.77.0.1", "7"}, stdinR, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "connection reset") {
		t.Fatalf("exit %d, stderr %q; want 1 and connection reset", code, stderr.String())
	}
}

func TestNCUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"-l"},
		{"10.77.0.1"},
		{"-l", "70000"},
		{"--zerocopy", "maybe", "-l", "80"},
		{"example.com", "80"},
		{"--no-such-flag", "-l", "80"},
	} {
		var stdout, stderr bytes.Buffer
		if code := runNC(args, strings.NewReader(""), &stdout, &stderr); code != 2 {
			t.Errorf("nc %v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}

func TestNCCaptureWritesAPcapOfTheConnection(t *testing.T) {
	dir := ncTestDir(t)
	s := peerStack(t, dir)
	l, err := s.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	path := filepath.Join(t.TempDir(), "nc.pcap")
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--fabric-dir", dir, "--capture", path, "-v", "10.77.0.1", "7"}, strings.NewReader("hello"), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// pcap magic, then at least SYN, SYN-ACK, ACK, data, FIN, FIN.
	if len(b) < 24 || !bytes.Equal(b[:4], []byte{0xd4, 0xc3, 0xb2, 0xa1}) {
		t.Fatalf("not a pcap file: % x", b[:min(len(b), 24)])
	}
	m := regexp.MustCompile(`captured (\d+) packets`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no capture count on stderr: %s", stderr.String())
	}
	if k, _ := strconv.Atoi(m[1]); k < 6 {
		t.Fatalf("captured %d packets, want at least 6 (handshake, data, FINs)", k)
	}
	if !bytes.Contains(b, []byte("hello")) {
		t.Fatal("the capture does not hold the payload")
	}
}
