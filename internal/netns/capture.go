package netns

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Capture is a tshark capture running on an interface of a namespace,
// writing every packet whole (no snap length: the TCP checksum needs the
// payload) to a file, up to a number of packets.
type Capture struct {
	File string
	proc *Proc
}

// StartCapture starts tshark on dev, writing at most maxPackets packets to
// file, for at most lifetime; it returns once tshark says it is capturing.
//
// Turn dev's offloads off first (SetOffloads) when the checksums matter: a
// veth with TX checksum offload carries packets whose TCP checksum is only
// the pseudo-header's, and tshark rightly calls every one bad.
func (ns *NS) StartCapture(dev, file string, maxPackets int, lifetime time.Duration) (*Capture, error) {
	if _, err := exec.LookPath("tshark"); err != nil {
		return nil, fmt.Errorf("netns: tshark is missing (Debian package tshark): %w", err)
	}
	// -B: a 64 MiB kernel buffer (the default 2 MiB overflows at the
	// start of a fast transfer and the capture misses packets).
	p, err := ns.Start(lifetime, nil, "tshark", "-n", "-q", "-i", dev, "-B", "64", "-w", file, "-c", fmt.Sprint(maxPackets))
	if err != nil {
		return nil, err
	}
	ifindex, err := ns.ifindex(dev)
	if err != nil {
		p.Stop()
		return nil, err
	}
	// tshark writes "Capturing on 'DEV'" before dumpcap has bound its
	// packet socket (a capture started then was seen to miss the first
	// second of traffic). Live means: a packet socket bound to dev and
	// running, in /proc/PID/net/packet (the namespace's packet sockets),
	// twice in a row, so that dumpcap's short-lived capability probe does
	// not count.
	deadline := time.Now().Add(10 * time.Second)
	seen := 0
	for seen < 2 || !strings.Contains(p.Stderr(), "Capturing on") {
		if packetSocketRunning(p.Cmd.Process.Pid, ifindex) {
			seen++
		} else {
			seen = 0
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("netns: tshark on %s exited before capturing: %v", dev, p.Wait())
		default:
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("netns: tshark on %s not capturing after 10s: %s", dev, p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &Capture{File: file, proc: p}, nil
}

// ifindex returns dev's interface index in the namespace.
func (ns *NS) ifindex(dev string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := ns.Run(ctx, "ip", "-o", "link", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	i, _, ok := strings.Cut(string(out), ":")
	n, err := strconv.Atoi(i)
	if !ok || err != nil {
		return 0, fmt.Errorf("netns: no interface index in %q", out)
	}
	return n, nil
}

// packetSocketRunning says whether /proc/PID/net/packet lists a running
// packet socket on interface ifindex. Its columns: sk RefCnt Type Proto
// Iface R Rmem User Inode.
func packetSocketRunning(pid, ifindex int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/packet", pid))
	if err != nil {
		return false
	}
	return hasRunningPacketSocket(string(b), ifindex)
}

func hasRunningPacketSocket(table string, ifindex int) bool {
	for line := range strings.Lines(table) {
		f := strings.Fields(line)
		if len(f) >= 6 && f[4] == strconv.Itoa(ifindex) && f[5] == "1" {
			return true
		}
	}
	return false
}

// Stop ends the capture (tshark closes its file cleanly on SIGTERM) and
// returns how many packets tshark captured and how many the kernel
// dropped before tshark could read them (a capture with drops is
// incomplete, not wrong).
func (c *Capture) Stop() (captured, dropped int) {
	c.proc.Stop()
	return parseCaptureCounts(c.proc.Stderr())
}

var (
	capturedRE = regexp.MustCompile(`(?m)^(\d+) packets? captured`)
	droppedRE  = regexp.MustCompile(`(?m)(\d+) packets? dropped`)
)

// parseCaptureCounts reads tshark's closing lines: "N packets captured"
// and, when there were drops, "M packets dropped from DEV".
func parseCaptureCounts(stderr string) (captured, dropped int) {
	if m := capturedRE.FindStringSubmatch(stderr); m != nil {
		captured, _ = strconv.Atoi(m[1])
	}
	for _, m := range droppedRE.FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.Atoi(m[1])
		dropped += n
	}
	return captured, dropped
}

// Report is what tshark found in a capture file. Checksums are checked
// (tcp.check_checksum, ip.check_checksum); a packet whose checksum was not
// verified (for example a truncated one) is neither good nor bad.
type Report struct {
	Packets        int // packets in the file
	IPChecksumOK   int // IPv4 header checksums verified good
	TCPChecksumOK  int // TCP checksums verified good
	BadIPChecksum  int
	BadTCPChecksum int
	// TCPChecksumFFFF counts TCP checksums of 0xFFFF where the sum makes
	// 0x0000 canonical: both are zero in ones' complement and verify (RFC
	// 1624 §3), so they are not bad, but tshark flags them; Linux's own
	// forwarding path was seen to write one.
	TCPChecksumFFFF int
	Malformed       int // packets tshark could not dissect (_ws.malformed)
	ExpertErrors    int // packets with an expert item of severity error (includes the above)
	Examples        []string
}

// Clean says whether the capture has no malformed packet and no bad
// checksum.
func (r Report) Clean() bool {
	return r.BadIPChecksum == 0 && r.BadTCPChecksum == 0 && r.Malformed == 0 && r.ExpertErrors == 0
}

func (r Report) String() string {
	return fmt.Sprintf("%d packets: IP checksum good %d bad %d, TCP checksum good %d bad %d (0xffff for 0 %d), malformed %d, expert errors %d",
		r.Packets, r.IPChecksumOK, r.BadIPChecksum, r.TCPChecksumOK, r.BadTCPChecksum, r.TCPChecksumFFFF, r.Malformed, r.ExpertErrors)
}

// expertError is wireshark's PI_ERROR severity as tshark prints
// _ws.expert.severity.
const expertError = "8388608"

// maxExamples bounds Report.Examples.
const maxExamples = 5

// Analyze reads a capture file with tshark (in the caller's namespace: it
// only reads a file) and counts bad checksums and malformed packets.
func Analyze(ctx context.Context, file string) (Report, error) {
	cmd := exec.CommandContext(ctx, "tshark", "-n", "-r", file,
		"-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
		// Without this, a retransmission overlapping data tshark already
		// reassembled for HTTP is reported malformed ("New fragment
		// overlaps old data"): an artefact of its reassembly, not a
		// property of the packet. Each packet is checked on its own.
		"-o", "tcp.desegment_tcp_streams:FALSE",
		// Payloads are random bytes: left to its heuristics, tshark takes
		// some for Thrift or others and reports their "errors". Only the
		// IP and TCP layers are checked; payloads are data.
		"-d", "tcp.port==1-65535,data",
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=;",
		"-e", "frame.number", "-e", "ip.checksum.status", "-e", "tcp.checksum.status", "-e", "tcp.checksum",
		"-e", "_ws.malformed", "-e", "_ws.expert.severity", "-e", "_ws.col.Info")
	cmd.WaitDelay = time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Report{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return Report{}, fmt.Errorf("netns: tshark -r %s: %w", file, err)
	}
	r, perr := parseFields(bufio.NewReader(out))
	if err := cmd.Wait(); err != nil {
		return r, fmt.Errorf("netns: tshark -r %s: %w: %s", file, err, strings.TrimSpace(stderr.String()))
	}
	return r, perr
}

// parseFields reads tshark's tab-separated fields: frame number, IP
// checksum status(es), TCP checksum status(es), TCP checksum(s),
// malformed, expert severities, info. Status values: 0 bad, 1 good, 2 unverified. Several
// occurrences (an ICMP error quotes an IP header) are ';'-separated.
func parseFields(rd *bufio.Reader) (Report, error) {
	var r Report
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 7 {
			return r, fmt.Errorf("netns: tshark line with %d fields, want 7: %q", len(f), sc.Text())
		}
		ffff := f[3] == "0xffff"
		r.Packets++
		bad := false
		for _, s := range strings.Split(f[1], ";") {
			switch s {
			case "0":
				r.BadIPChecksum++
				bad = true
			case "1":
				r.IPChecksumOK++
			}
		}
		for _, s := range strings.Split(f[2], ";") {
			switch {
			case s == "0" && ffff:
				r.TCPChecksumFFFF++
			case s == "0":
				r.BadTCPChecksum++
				bad = true
			case s == "1":
				r.TCPChecksumOK++
			}
		}
		if f[4] != "" {
			r.Malformed++
			bad = true
		}
		for _, s := range strings.Split(f[5], ";") {
			if s == expertError {
				r.ExpertErrors++
				bad = true
				break
			}
		}
		if bad && len(r.Examples) < maxExamples {
			r.Examples = append(r.Examples, "frame "+f[0]+": "+f[6])
		}
	}
	return r, sc.Err()
}
