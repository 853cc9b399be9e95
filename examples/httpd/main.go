// Command httpd is a net/http server running on ultcp instead of the
// kernel's TCP: the only change from an ordinary Go web server is where
// the listener comes from (and, for the client mode, where the
// connections come from). Copy it as a starting point.
//
//	go run ./examples/httpd --fabric demo --addr 10.77.0.1 --port 80
//	go run ./examples/httpd --fabric demo --addr 10.77.0.2 --get http://10.77.0.1/
//
// It must never touch the kernel's network: every connection it makes or
// accepts is on the fabric.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/ultcp/ultcp"
)

func main() {
	fabricName := flag.String("fabric", "default", "fabric name (directory /dev/shm/ultcp/NAME)")
	addr := flag.String("addr", "10.77.0.1", "this node's address on the fabric")
	port := flag.Int("port", 80, "port to serve on")
	get := flag.String("get", "", "instead of serving, fetch this URL over ultcp and print the body")
	flag.Parse()

	a, err := netip.ParseAddr(*addr)
	if err != nil {
		log.Fatalf("--addr: %v", err)
	}
	// One stack per process: it joins the fabric with this address.
	s, err := ultcp.NewStack(ultcp.Config{Addr: a, Fabric: *fabricName})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if *get != "" {
		if err := fetch(s, *get, os.Stdout); err != nil {
			log.Fatal(err)
		}
		return
	}

	l, err := s.Listen("tcp", ":"+strconv.Itoa(*port))
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: handler(s), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("serving http://%v/ on fabric %q", l.Addr(), *fabricName)
	if err := srv.Serve(l); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// handler serves / (a greeting with the addresses of the connection),
// /stats (the stack's counters as JSON) and /bytes?n=N (N deterministic
// bytes, bytes.go).
func handler(s *ultcp.Stack) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from ultcp: you are %s, this is %s\n", r.RemoteAddr, r.Context().Value(http.LocalAddrContextKey))
	})
	mux.HandleFunc("GET /bytes", serveBytes)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Stats())
	})
	return mux
}

// fetch GETs url with an http.Client whose connections are ultcp's.
func fetch(s *ultcp.Stack, url string, out io.Writer) error {
	d := ultcp.Dialer{Stack: s, Timeout: 5 * time.Second}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		},
		Timeout: 10 * time.Second,
	}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	_, err = io.Copy(out, resp.Body)
	return err
}
