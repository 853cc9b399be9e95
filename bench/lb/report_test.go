package lb

import (
	"encoding/json"
	"testing"
	"time"
)

// A histogram survives JSON: same count, quantiles, min and max.
func TestHistogramJSONRoundTrip(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{50, 900 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, 250 * time.Millisecond} {
		h.Record(d)
	}
	b, err := json.Marshal(LoadResult{Requests: 5, Latency: &h, ByServer: map[string]uint64{"a": 5}}.Report())
	if err != nil {
		t.Fatal(err)
	}
	var rep LoadReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	g := rep.Result().Latency
	if g.Count() != 5 || g.Quantile(0.5) != h.Quantile(0.5) || g.Quantile(0.99) != h.Quantile(0.99) || g.Max() != h.Max() || g.Mean() != h.Mean() {
		t.Fatalf("after JSON: n %d p50 %v p99 %v max %v; want 5 %v %v %v", g.Count(), g.Quantile(0.5), g.Quantile(0.99), g.Max(), h.Quantile(0.5), h.Quantile(0.99), h.Max())
	}
}

// A histogram whose buckets do not add up to its count is refused.
func TestHistogramJSONInconsistentCountRefused(t *testing.T) {
	var h Histogram
	if err := json.Unmarshal([]byte(`{"buckets":[[3,2]],"n":5,"sum":6,"min_ns":3,"max_ns":3}`), &h); err == nil {
		t.Fatal("accepted buckets summing to 2 with n 5")
	}
	if err := json.Unmarshal([]byte(`{"buckets":[[99999999,1]],"n":1,"sum":1,"min_ns":1,"max_ns":1}`), &h); err == nil {
		t.Fatal("accepted a bucket index out of range")
	}
}

// The connect times travel with the report, so the measured run can
// tell a slow handshake (the gateway's path) from a slow answer.
func TestLoadReportKeepsConnectTimes(t *testing.T) {
	var lat, conn Histogram
	lat.Record(6 * time.Millisecond)
	conn.Record(400 * time.Microsecond)
	b, err := json.Marshal(LoadResult{Requests: 1, Latency: &lat, Connect: &conn, ByServer: map[string]uint64{"b0": 1}}.Report())
	if err != nil {
		t.Fatal(err)
	}
	var rep LoadReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if got := rep.Result().Connect; got.Count() != 1 || got.Max() != conn.Max() {
		t.Fatalf("connect histogram after JSON: n %d max %v, want 1 and %v", got.Count(), got.Max(), conn.Max())
	}
}

// A report from an older load generator (no connect times) reads as an
// empty connect histogram, not a nil one.
func TestLoadReportWithoutConnectTimes(t *testing.T) {
	var rep LoadReport
	if err := json.Unmarshal([]byte(`{"requests":0,"errors":0,"elapsed_ns":1,"rps":0,"by_server":{},"latency":{"buckets":[],"n":0,"sum":0,"min_ns":0,"max_ns":0}}`), &rep); err != nil {
		t.Fatal(err)
	}
	if c := rep.Result().Connect; c == nil || c.Count() != 0 {
		t.Fatalf("connect histogram %v, want empty", c)
	}
}
