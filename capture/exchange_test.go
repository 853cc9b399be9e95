package capture

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/ultcp/ultcp"
)

// captureExchange runs a short exchange between two stacks in this process,
// capturing on the dialling one into a file, and returns the file's path
// and the payload sent each way. The exchange: a handshake; "hello" and
// 1 MiB from A; all of it back from B in one Write; a FIN each way. The
// 1 MiB goes by DMA both ways, so the capture sees a BIG TCP record sent
// and one pulled, each split when written.
func captureExchange(t *testing.T) (path string, sent int) {
	// A Write goes by DMA when the bytes the window lets go at once reach
	// the threshold; a low one makes that certain whatever the window.
	const dmaThreshold = 4 << 10
	t.Helper()
	var rnd [6]byte
	rand.Read(rnd[:])
	dir := filepath.Join("/dev/shm", "ultcp-capture-test-"+hex.EncodeToString(rnd[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	path = filepath.Join(t.TempDir(), "exchange.pcap")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ultcp.NewStack(ultcp.Config{Addr: netip.MustParseAddr("10.77.0.1"), FabricDir: dir, DMAThreshold: dmaThreshold, Capture: w.Capture})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ultcp.NewStack(ultcp.Config{Addr: netip.MustParseAddr("10.77.0.2"), FabricDir: dir, DMAThreshold: dmaThreshold})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l, err := b.Listen("tcp", ":7")
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
		// Everything back in one Write once A has finished: 1 MiB goes
		// by DMA, so A's capture sees a pulled DMA record come in too.
		b, err := io.ReadAll(c)
		if err == nil {
			c.Write(b)
		}
	}()
	c, err := a.Dial("tcp", "10.77.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	big := make([]byte, 1<<20)
	rand.Read(big)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	msgs := [][]byte{[]byte("hello"), big}
	for _, m := range msgs {
		if _, err := c.Write(m); err != nil {
			t.Fatal(err)
		}
		sent += len(m)
	}
	if err := c.(*ultcp.Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	echo := <-got
	if !bytes.Equal(echo, bytes.Join(msgs, nil)) {
		t.Fatalf("echo of %d bytes differs from the %d sent", len(echo), sent)
	}
	c.Close()
	if a.Stats().DMARecords == 0 || b.Stats().DMARecords == 0 {
		t.Fatalf("DMA records sent: A %d, B %d; the exchange should use DMA both ways", a.Stats().DMARecords, b.Stats().DMARecords)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, sent
}

func TestCaptureOfAnExchangeDecodesWithValidChecksums(t *testing.T) {
	path, sent := captureExchange(t)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pkts := readAll(t, file) // every record decodes, checksums valid
	a, b := net.IPv4(10, 77, 0, 1), net.IPv4(10, 77, 0, 2)
	var syn, synack, finA, finB int
	var bytesAB, bytesBA int
	for _, p := range pkts {
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		fromA := ip.SrcIP.Equal(a) && ip.DstIP.Equal(b)
		if !fromA && !(ip.SrcIP.Equal(b) && ip.DstIP.Equal(a)) {
			t.Fatalf("packet between %v and %v", ip.SrcIP, ip.DstIP)
		}
		switch {
		case tcp.SYN && !tcp.ACK && fromA:
			syn++
		case tcp.SYN && tcp.ACK && !fromA:
			synack++
		}
		if tcp.FIN && fromA {
			finA++
		}
		if tcp.FIN && !fromA {
			finB++
		}
		if fromA {
			bytesAB += len(tcp.Payload)
		} else {
			bytesBA += len(tcp.Payload)
		}
	}
	if syn != 1 || synack != 1 || finA != 1 || finB != 1 {
		t.Errorf("SYN %d, SYN-ACK %d, FIN from A %d, FIN from B %d; want one each", syn, synack, finA, finB)
	}
	if bytesAB != sent || bytesBA != sent {
		t.Errorf("payload %d bytes A→B and %d B→A, want %d each way", bytesAB, bytesBA, sent)
	}
}

// TestTsharkReadsTheCapture runs Wireshark's reader over a capture and
// asks it for any packet with a bad checksum or a malformed field.
func TestTsharkReadsTheCapture(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not installed (apt-get install -y tshark); the format is still checked by TestCaptureOfAnExchangeDecodesWithValidChecksums")
	}
	path, _ := captureExchange(t)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, _, recs := readPcap(t, file)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(tshark, append([]string{"-n", "-r", path}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		// As root tshark warns that it runs as root; anything else on
		// stderr is a complaint about the file.
		var complaints []string
		for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if l != "" && !strings.HasPrefix(l, "Running as user") {
				complaints = append(complaints, l)
			}
		}
		if err != nil || len(complaints) > 0 {
			t.Fatalf("tshark %v: %v\n%s", args, err, strings.Join(complaints, "\n"))
		}
		return stdout.String()
	}
	lines := strings.Count(run(), "\n")
	if lines != len(recs) {
		t.Fatalf("tshark shows %d packets, the file has %d", lines, len(recs))
	}
	bad := run("-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
		"-Y", `ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || _ws.malformed || ip.len == 0`)
	if bad != "" {
		t.Fatalf("tshark finds bad packets:\n%s", bad)
	}
	good := run("-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
		"-Y", `ip.checksum.status == "Good" && tcp.checksum.status == "Good"`)
	if n := strings.Count(good, "\n"); n != len(recs) {
		t.Fatalf("tshark verifies %d packets' checksums as good, want all %s", n, strconv.Itoa(len(recs)))
	}
}
