package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ultcp/ultcp"
)

func TestFetchGetsTheGreetingAndTheStats(t *testing.T) {
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join("/dev/shm", "ultcp-example-httpd-"+hex.EncodeToString(b[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv, err := ultcp.NewStack(ultcp.Config{Addr: netip.MustParseAddr("10.77.0.1"), FabricDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := ultcp.NewStack(ultcp.Config{Addr: netip.MustParseAddr("10.77.0.2"), FabricDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	l, err := srv.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: handler(srv)}
	go hs.Serve(l)
	defer hs.Close()

	var out strings.Builder
	if err := fetch(cli, "http://10.77.0.1/", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "hello from ultcp: you are 10.77.0.2:") || !strings.Contains(out.String(), "this is 10.77.0.1:80") {
		t.Fatalf("greeting %q", out.String())
	}
	out.Reset()
	if err := fetch(cli, "http://10.77.0.1/stats", &out); err != nil {
		t.Fatal(err)
	}
	var st ultcp.StackStats
	if err := json.Unmarshal([]byte(out.String()), &st); err != nil {
		t.Fatalf("stats are not JSON: %v\n%s", err, out.String())
	}
	if st.PassiveOpens < 1 {
		t.Fatalf("stats say %d passive opens after a request", st.PassiveOpens)
	}
	if err := fetch(cli, "http://10.77.0.1/nothing", &out); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("GET /nothing: %v, want a 404 error", err)
	}
}
