package interop

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/netns"
)

// linuxHTTPEnv makes the test binary, started with it in the Linux
// stand-in cluster, an HTTP server of /bytes at that address (TestMain).
const linuxHTTPEnv = "ULTCP_INTEROP_LINUX_HTTPD"

func TestMain(m *testing.M) {
	if addr := os.Getenv(linuxHTTPEnv); addr != "" {
		serveLinuxHTTP(addr)
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// serveLinuxHTTP serves /bytes?n=N (the Pattern, as examples/httpd does)
// on Linux's TCP until killed.
func serveLinuxHTTP(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "want /bytes?n=N", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.CopyBuffer(w, &Pattern{N: n}, make([]byte, 256<<10))
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

// cluster is what sits behind gw: the Linux stand-in, or ultcp nodes on a
// fabric with the gateway in gw.
type cluster interface {
	// startHTTP serves /bytes?n=N at ServerAddr:80; it returns once the
	// server accepts connections.
	startHTTP(t *testing.T)
	// nc returns a command that connects from ClientAddr to ExtAddr:port,
	// copies its standard input to the connection (half-closing it at the
	// end) and the connection to its standard output.
	nc(ctx context.Context, port int, timeout time.Duration) *exec.Cmd
}

// linuxCluster is the stand-in: Linux's TCP in the third namespace.
type linuxCluster struct{ tp *Topology }

func (c linuxCluster) startHTTP(t *testing.T) {
	t.Helper()
	p, err := c.tp.Cluster.Start(time.Hour, func(cmd *exec.Cmd) {
		cmd.Env = append(os.Environ(), linuxHTTPEnv+"="+ServerAddr.String()+":80")
	}, os.Args[0], "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitListen(80, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func (c linuxCluster) nc(ctx context.Context, port int, timeout time.Duration) *exec.Cmd {
	// -t: after its input ends socat still waits this long for the rest of
	// the other direction (the default, 0.5 s, cuts it short under loss).
	return c.tp.Cluster.Command(ctx, "socat", "-b", socatBuf, "-t", strconv.Itoa(int(timeout.Seconds())),
		"STDIO", "TCP:"+ExtAddr.Addr().String()+":"+strconv.Itoa(port)+",bind="+ClientAddr.String())
}

// Binaries of the ultcp cluster, built once per test binary.
var (
	buildOnce  sync.Once
	binDir     string
	buildErr   error
	ultcpBin   string
	httpdBin   string
	fabricSeq  atomic.Uint64
	gatewayErr error
)

// buildBinaries builds cmd/ultcp and examples/httpd into a temporary
// directory, and checks that the ultcp command has a gateway.
func buildBinaries(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "ultcp-interop-bin-")
		if buildErr != nil {
			return
		}
		ultcpBin, httpdBin = filepath.Join(binDir, "ultcp"), filepath.Join(binDir, "httpd")
		for _, b := range []struct{ out, pkg string }{{ultcpBin, "../../cmd/ultcp"}, {httpdBin, "../../examples/httpd"}} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			out, err := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg).CombinedOutput()
			cancel()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
		var help bytes.Buffer
		cmd := exec.Command(ultcpBin, "help", "gateway")
		cmd.Stdout, cmd.Stderr = &help, &help
		if err := cmd.Run(); err != nil {
			gatewayErr = fmt.Errorf("this build of ultcp has no gateway command: %v: %s", err, help.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if gatewayErr != nil {
		t.Skipf("skipping: %v", gatewayErr)
	}
}

// ultcpCluster is ultcp: the gateway in gw, nodes as processes of this
// (root) namespace on a fabric of the test's own.
type ultcpCluster struct {
	tp      *Topology
	fabric  string // fabric name: directory fabric.DefaultRoot/NAME
	gateway *netns.Proc
	gwLog   *syncBuffer
}

// newUltcpCluster starts the gateway, with an impairment spec or "".
func newUltcpCluster(t *testing.T, tp *Topology, impair string, extra ...string) *ultcpCluster {
	t.Helper()
	return newUltcpClusterTB(t, tp, impair, extra...)
}

func newUltcpClusterTB(t testing.TB, tp *Topology, impair string, extra ...string) *ultcpCluster {
	t.Helper()
	buildBinaries(t)
	c := &ultcpCluster{tp: tp, fabric: fmt.Sprintf("interop-%d-%d", os.Getpid(), fabricSeq.Add(1)), gwLog: &syncBuffer{}}
	t.Cleanup(func() { os.RemoveAll(filepath.Join(fabric.DefaultRoot, c.fabric)) })
	args := []string{"gateway", "--fabric", c.fabric, "--addr", GatewayAddr.String(), "--subnet", ClusterNet.String(), "--tun", "ultcp0",
		"--metrics", metricsAddr}
	if impair != "" {
		args = append(args, "--impair", impair)
	}
	args = append(args, extra...)
	var err error
	c.gateway, err = tp.GW.Start(time.Hour, func(cmd *exec.Cmd) { cmd.Stdout, cmd.Stderr = c.gwLog, c.gwLog }, ultcpBin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway's metrics (non-zero):\n%s", c.metrics())
		}
		c.gateway.Stop()
		if t.Failed() {
			t.Logf("gateway's log:\n%s", c.gwLog.tail(8<<10))
		}
	})
	// The gateway logs "gateway: forwarding" once its device, address and
	// route are configured and it has claimed the fabric.
	if err := waitFor(10*time.Second, c.gateway.Done(), func() bool { return strings.Contains(c.gwLog.String(), "gateway: forwarding") }); err != nil {
		t.Fatalf("gateway not forwarding: %v\n%s", err, c.gwLog.tail(8<<10))
	}
	return c
}

// metricsAddr is where the gateway serves its metrics, inside gw.
const metricsAddr = "127.0.0.1:9477"

// metrics returns the gateway's non-zero metrics (for a failed test's log).
func (c *ultcpCluster) metrics() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := c.tp.GW.Run(ctx, "curl", "--silent", "--show-error", "http://"+metricsAddr+"/metrics")
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "#") || strings.HasSuffix(line, " 0\n") || strings.HasPrefix(line, "go_") || strings.HasPrefix(line, "process_") || strings.HasPrefix(line, "promhttp_") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// grepMetrics returns the lines of metrics that contain word, on one line.
func grepMetrics(metrics, word string) string {
	var b []string
	for line := range strings.Lines(metrics) {
		if strings.Contains(line, word) {
			b = append(b, strings.TrimSpace(line))
		}
	}
	return strings.Join(b, "; ")
}

// metricValue finds a sample (name with labels, as printed) in metrics's
// non-zero lines; absent means 0.
func metricValue(metrics, sample string) string {
	for line := range strings.Lines(metrics) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			return v
		}
	}
	return "0"
}

// node starts a node process (root namespace: it touches no network) and
// stops it when the test ends.
func (c *ultcpCluster) node(t *testing.T, log *syncBuffer, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s's log:\n%s", filepath.Base(bin), log.tail(8<<10))
		}
	})
	return cmd
}

func (c *ultcpCluster) startHTTP(t *testing.T) {
	t.Helper()
	log := &syncBuffer{}
	c.node(t, log, httpdBin, "--fabric", c.fabric, "--addr", ServerAddr.String(), "--port", "80")
	if err := waitFor(10*time.Second, nil, func() bool { return strings.Contains(log.String(), "serving http://") }); err != nil {
		t.Fatalf("httpd not serving: %v\n%s", err, log.tail(4<<10))
	}
}

func (c *ultcpCluster) nc(ctx context.Context, port int, timeout time.Duration) *exec.Cmd {
	cmd := exec.CommandContext(ctx, ultcpBin, "nc", "--fabric", c.fabric, "--addr", ClientAddr.String(),
		"--timeout", "10s", ExtAddr.Addr().String(), strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// waitFor polls cond every 10 ms until it holds, timeout passes (an
// error), or dead is closed (an error: the process it watches exited).
func waitFor(timeout time.Duration, dead <-chan struct{}, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-dead:
			return fmt.Errorf("the process exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// syncBuffer is a log written by a process and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4<<20 { // a runaway log: keep the start
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) tail(n int) string {
	str := s.String()
	if len(str) > n {
		return "..." + str[len(str)-n:]
	}
	return str
}
