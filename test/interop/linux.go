package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"time"

	"github.com/ultcp/ultcp/internal/netns"
)

// Gbps is a throughput in Gbit/s (10^9 bits per second).
type Gbps float64

func (g Gbps) String() string { return strconv.FormatFloat(float64(g), 'f', 2, 64) + " Gbit/s" }

// rate is n bytes in d.
func rate(n int64, d time.Duration) Gbps { return Gbps(float64(n) * 8 / d.Seconds() / 1e9) }

// Iperf3 measures TCP throughput from a client in from to an iperf3 server
// at addr (port 5201) in to, for d, and returns what the receiver got.
func Iperf3(from, to *netns.NS, addr netip.Addr, d time.Duration) (Gbps, error) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return 0, fmt.Errorf("iperf3 is missing: %w", err)
	}
	const port = 5201
	srv, err := to.Start(d+30*time.Second, nil, "iperf3", "-s", "-1", "-p", strconv.Itoa(port))
	if err != nil {
		return 0, err
	}
	defer srv.Stop()
	if err := srv.WaitListen(port, 5*time.Second); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+20*time.Second)
	defer cancel()
	out, err := from.Run(ctx, "iperf3", "-c", addr.String(), "-p", strconv.Itoa(port), "-J",
		"-t", strconv.FormatFloat(d.Seconds(), 'f', -1, 64))
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("iperf3 -J output: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	return Gbps(r.End.SumReceived.BitsPerSecond / 1e9), nil
}

// socatBuf is socat's read/write size (its default is 8 KiB).
const socatBuf = "262144"

// SocatSend sends n bytes of /dev/zero from a socat in from to a socat
// listening at addr:port in to (which discards them), and returns the rate
// from the sender's start to the receiver's end.
func SocatSend(from, to *netns.NS, addr netip.Addr, port int, n int64, timeout time.Duration) (Gbps, error) {
	if _, err := exec.LookPath("socat"); err != nil {
		return 0, fmt.Errorf("socat is missing: %w", err)
	}
	recv, err := to.Start(timeout, nil, "socat", "-u", "-b", socatBuf,
		"TCP-LISTEN:"+strconv.Itoa(port)+",reuseaddr", "OPEN:/dev/null,wronly")
	if err != nil {
		return 0, err
	}
	defer recv.Stop()
	if err := recv.WaitListen(port, 5*time.Second); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	if _, err := from.Run(ctx, "socat", "-u", "-b", socatBuf,
		"OPEN:/dev/zero,readbytes="+strconv.FormatInt(n, 10), "TCP:"+addr.String()+":"+strconv.Itoa(port)); err != nil {
		return 0, err
	}
	if err := recv.Wait(); err != nil {
		return 0, err
	}
	return rate(n, time.Since(start)), nil
}
