package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ultcp/ultcp/link/tun"
)

func TestMetricsShowDropsByReasonAndPackets(t *testing.T) {
	h := newHarness(t, nil)
	addr, err := h.g.ServeMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad := outsideSYN()
	bad.corruptChecksums = true
	h.inject(tun.Packet{Data: bad.bytes()})
	h.waitFor("bad_checksum count", func() bool { return h.g.Stats().Drop("bad_checksum") == 1 })
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`ultcp_gateway_drops_total{reason="bad_checksum"} 1`,
		`ultcp_gateway_drops_total{reason="ring_full"} 0`,
		`ultcp_gateway_packets_total{dir="out"} 0`,
		`ultcp_gateway_custody_held_bytes 0`,
		`ultcp_gateway_connections 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestMetricsOnAnAddressInUseIsAClearError(t *testing.T) {
	h := newHarness(t, nil)
	addr, err := h.g.ServeMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.g.ServeMetrics(addr.String())
	if err == nil || !strings.Contains(err.Error(), "metrics on "+addr.String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second listener: %v; want an error naming the address and EADDRINUSE", err)
	}
}
