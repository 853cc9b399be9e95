package grpctest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ultcp/ultcp"
	"github.com/ultcp/ultcp/internal/proc"
)

// Two services, neither needing protoc: gRPC's own health service
// (unary Check, server-streaming Watch), and a hand-written raw-bytes
// service (unary Reverse, bidirectional Echo) whose messages are []byte
// carried by the "raw" codec below, to move large messages.

func TestMain(m *testing.M) {
	proc.RunChild()
	os.Exit(m.Run())
}

func init() {
	encoding.RegisterCodec(rawCodec{})
	proc.Register("grpc-server", roleServer)
}

// rawCodec marshals *[]byte as itself.
type rawCodec struct{}

func (rawCodec) Name() string { return "raw" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = bytes.Clone(data) // gRPC may reuse data once we return
	return nil
}

// rawService is the handler type of the raw service (it has no methods:
// the handlers below are plain functions).
type rawService interface{}

var rawDesc = grpc.ServiceDesc{
	ServiceName: "ultcp.test.Raw",
	HandlerType: (*rawService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Reverse",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			out := make([]byte, len(in))
			for i, c := range in {
				out[len(in)-1-i] = c
			}
			return &out, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Echo",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			for {
				var m []byte
				if err := s.RecvMsg(&m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if err := s.SendMsg(&m); err != nil {
					return err
				}
			}
		},
	}},
}

// roleServer (args: fabric dir, address, port) serves both services on
// an ultcp listener. Lines on stdin "SERVICE STATUS" change the health
// status of SERVICE (SERVING or NOT_SERVING); end of stdin stops it.
func roleServer(args []string) error {
	if len(args) != 3 {
		return errors.New("need fabric dir, address and port")
	}
	s, err := ultcp.NewStack(ultcp.Config{FabricDir: args[0], Addr: netip.MustParseAddr(args[1])})
	if err != nil {
		return err
	}
	defer s.Close()
	l, err := s.Listen("tcp", ":"+args[2])
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	srv.RegisterService(&rawDesc, struct{}{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	if err := proc.Send(true); err != nil {
		return err
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		svc, st, _ := strings.Cut(sc.Text(), " ")
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_ServingStatus(healthpb.HealthCheckResponse_ServingStatus_value[st]))
		proc.Send(true)
	}
	srv.Stop()
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// setup starts the server child and returns a client connection to it
// made through ultcp.
func setup(t *testing.T) (*grpc.ClientConn, *proc.Child) {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join("/dev/shm", "ultcp-grpc-test-"+hex.EncodeToString(b[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	child, err := proc.Start("grpc-server", dir, "10.77.0.2", "50051")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		child.Stdin().Close()
		if err := child.Wait(10 * time.Second); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	var ready bool
	if err := child.Recv(&ready, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s, err := ultcp.NewStack(ultcp.Config{FabricDir: dir, Addr: netip.MustParseAddr("10.77.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d := ultcp.Dialer{Stack: s, Timeout: 5 * time.Second}
	cc, err := grpc.NewClient("passthrough:///10.77.0.2:50051",
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, child
}

func TestHealthChecksAreUnaryCallsOverUltcp(t *testing.T) {
	cc, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	for _, c := range []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
		code    codes.Code
	}{
		{"", healthpb.HealthCheckResponse_SERVING, codes.OK}, // the server as a whole
		{"svc", healthpb.HealthCheckResponse_SERVING, codes.OK},
		{"unknown", 0, codes.NotFound},
		{"svc", healthpb.HealthCheckResponse_SERVING, codes.OK},
	} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: c.service})
		if status.Code(err) != c.code {
			t.Fatalf("Check(%q): %v, want code %v", c.service, err, c.code)
		}
		if err == nil && resp.GetStatus() != c.want {
			t.Fatalf("Check(%q) = %v, want %v", c.service, resp.GetStatus(), c.want)
		}
	}
}

func TestHealthWatchStreamsStatusChanges(t *testing.T) {
	cc, child := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	next := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := w.Recv()
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		if resp.GetStatus() != want {
			t.Fatalf("Watch sent %v, want %v", resp.GetStatus(), want)
		}
	}
	next(healthpb.HealthCheckResponse_SERVING)
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING,
	} {
		fmt.Fprintf(child.Stdin(), "svc %v\n", st)
		var ok bool
		if err := child.Recv(&ok, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		next(st)
	}
}

func TestRawUnaryReverse(t *testing.T) {
	cc, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, in := range []string{"a", "ultcp", strings.Repeat("0123456789", 100_000)} {
		req, resp := []byte(in), []byte(nil)
		if err := cc.Invoke(ctx, "/ultcp.test.Raw/Reverse", &req, &resp, grpc.CallContentSubtype("raw")); err != nil {
			t.Fatalf("Reverse(%d bytes): %v", len(in), err)
		}
		for i := range req {
			if resp[len(req)-1-i] != req[i] {
				t.Fatalf("Reverse(%d bytes): byte %d differs", len(in), i)
			}
		}
		if len(resp) != len(req) {
			t.Fatalf("Reverse(%d bytes) returned %d bytes", len(in), len(resp))
		}
	}
}

func TestRawBidiStreamEchoesLargeMessages(t *testing.T) {
	cc, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		"/ultcp.test.Raw/Echo", grpc.CallContentSubtype("raw"))
	if err != nil {
		t.Fatal(err)
	}
	// Sizes across the stack's PIO/DMA threshold (256 KiB) and up to just
	// under gRPC's default 4 MiB message limit.
	sizes := []int{1, 1000, 64 << 10, 300 << 10, 1 << 20, 4<<20 - 64}
	for round := range 3 {
		for _, n := range sizes {
			msg := make([]byte, n)
			rand.Read(msg)
			if err := st.SendMsg(&msg); err != nil {
				t.Fatalf("round %d: send %d bytes: %v", round, n, err)
			}
			var got []byte
			if err := st.RecvMsg(&got); err != nil {
				t.Fatalf("round %d: receive %d bytes: %v", round, n, err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("round %d: the echo of %d bytes differs (%d bytes back)", round, n, len(got))
			}
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var extra []byte
	if err := st.RecvMsg(&extra); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want io.EOF", err)
	}
}
