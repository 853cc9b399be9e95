package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ultcp/ultcp"
)

func TestClientGetsEveryLineBackFromServe(t *testing.T) {
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join("/dev/shm", "ultcp-example-echo-"+hex.EncodeToString(b[:]))
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
	l, err := srv.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go serve(l)
	c, err := cli.Dial("tcp", "10.77.0.1:7")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := client(c, strings.NewReader("one\ntwo\nthree\n"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\nthree\n" {
		t.Fatalf("echoed %q", out.String())
	}
}
