package interop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stallGap is a pause in a flow's data that counts as a stall: far above
// the path's round trip (< 1 ms here, 20 ms with the gateway's delay),
// about a retransmission timeout.
const stallGap = 100 * time.Millisecond

// stalls is what sendStalls found in a capture.
type stalls struct {
	count   int           // pauses of at least stallGap in one flow's data from the cluster
	longest time.Duration // the longest such pause
}

func (s stalls) String() string {
	return fmt.Sprintf("%d pauses ≥ %v in the cluster's data, longest %v", s.count, stallGap, s.longest.Round(time.Millisecond))
}

// sendStalls reads a capture and measures, per TCP stream, the pauses
// between consecutive data segments sent from the cluster subnet: the
// tail-loss stalls (a lost last segment or ACK waiting for an RTO) that
// make a sender slow under loss. Only a diagnostic: no target is asserted.
func sendStalls(ctx context.Context, file string) (stalls, error) {
	cmd := exec.CommandContext(ctx, "tshark", "-n", "-r", file, "-o", "tcp.desegment_tcp_streams:FALSE",
		"-Y", "ip.src == "+ClusterNet.String()+" && tcp.len > 0",
		"-T", "fields", "-e", "tcp.stream", "-e", "frame.time_relative")
	cmd.WaitDelay = time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return stalls{}, err
	}
	if err := cmd.Start(); err != nil {
		return stalls{}, err
	}
	s, perr := parseStalls(out)
	if err := cmd.Wait(); err != nil {
		return s, fmt.Errorf("tshark -r %s: %w", file, err)
	}
	return s, perr
}

// parseStalls reads "stream<TAB>seconds" lines in time order.
func parseStalls(r io.Reader) (stalls, error) {
	var s stalls
	last := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		stream, ts, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			return s, fmt.Errorf("tshark line %q: want stream and time", sc.Text())
		}
		t, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			return s, fmt.Errorf("tshark line %q: %v", sc.Text(), err)
		}
		if prev, ok := last[stream]; ok {
			if gap := time.Duration((t - prev) * float64(time.Second)); gap >= stallGap {
				s.count++
				s.longest = max(s.longest, gap)
			}
		}
		last[stream] = t
	}
	return s, sc.Err()
}

func TestParseStallsCountsPausesPerStream(t *testing.T) {
	const in = "0\t0.000\n1\t0.010\n0\t0.050\n0\t0.250\n1\t0.260\n1\t0.300\n0\t0.301\n"
	s, err := parseStalls(strings.NewReader(in))
	// stream 0: 0 → 0.05 → 0.25 (200 ms) → 0.301; stream 1: 0.01 → 0.26 (250 ms) → 0.3.
	if err != nil || s.count != 2 || s.longest != 250*time.Millisecond {
		t.Fatalf("parseStalls = %v, %v; want 2 pauses, longest 250ms", s, err)
	}
}
