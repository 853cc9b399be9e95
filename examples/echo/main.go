// Command echo is the smallest ultcp server and client: the server sends
// back every byte it receives, on every connection; the client sends its
// standard input line by line and prints what comes back. Copy it as a
// starting point: it is the classic net.Listen / net.Dial echo with the
// listener and the dialler taken from an ultcp.Stack.
//
//	go run ./examples/echo --fabric demo --addr 10.77.0.1 server :7
//	go run ./examples/echo --fabric demo --addr 10.77.0.2 client 10.77.0.1:7
//
// It must never touch the kernel's network: every connection is on the
// fabric.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/ultcp/ultcp"
)

func main() {
	fabricName := flag.String("fabric", "default", "fabric name (directory /dev/shm/ultcp/NAME)")
	addr := flag.String("addr", "", "this node's address on the fabric (e.g. 10.77.0.1)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: echo [--fabric NAME] --addr ADDR server :PORT | client HOST:PORT")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || *addr == "" {
		flag.Usage()
		os.Exit(2)
	}
	a, err := netip.ParseAddr(*addr)
	if err != nil {
		log.Fatalf("--addr: %v", err)
	}
	s, err := ultcp.NewStack(ultcp.Config{Addr: a, Fabric: *fabricName})
	if err != nil {
		log.Fatal(err)
	}
	// Closing the stack leaves the fabric cleanly (peers see resets, not a
	// dead node), so close it on Ctrl-C too.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		s.Close()
		os.Exit(130)
	}()
	defer s.Close()

	switch flag.Arg(0) {
	case "server":
		l, err := s.Listen("tcp", flag.Arg(1))
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("echoing on %v", l.Addr())
		err = serve(l)
		if !errors.Is(err, net.ErrClosed) {
			log.Fatal(err)
		}
	case "client":
		c, err := s.Dial("tcp", flag.Arg(1))
		if err != nil {
			log.Fatal(err)
		}
		if err := client(c, os.Stdin, os.Stdout); err != nil {
			log.Fatal(err)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

// serve echoes every connection l accepts, each in its own goroutine (as
// with package net: the stack itself adds none).
func serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// client sends in line by line on c, printing each echo to out, then
// closes.
func client(c net.Conn, in io.Reader, out io.Writer) error {
	defer c.Close()
	lines := bufio.NewScanner(in)
	echoes := bufio.NewReader(c)
	for lines.Scan() {
		if _, err := fmt.Fprintln(c, lines.Text()); err != nil {
			return err
		}
		echo, err := echoes.ReadString('\n')
		if err != nil {
			return err
		}
		if _, err := io.WriteString(out, echo); err != nil {
			return err
		}
	}
	return lines.Err()
}
