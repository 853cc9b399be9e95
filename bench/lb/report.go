package lb

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// LoadReport is a LoadResult as JSON, for a load generator that runs in
// another process (`ultcp bench lb` starts it inside the ext network
// namespace and reads its report from standard output).
type LoadReport struct {
	Requests   uint64            `json:"requests"`
	Errors     uint64            `json:"errors"`
	FirstError string            `json:"first_error,omitempty"`
	ElapsedNs  int64             `json:"elapsed_ns"`
	RPS        float64           `json:"rps"`
	ByServer   map[string]uint64 `json:"by_server"`
	Latency    *Histogram        `json:"latency"`
	Connect    *Histogram        `json:"connect,omitempty"`
}

// Report converts r for JSON.
func (r LoadResult) Report() LoadReport {
	rep := LoadReport{Requests: r.Requests, Errors: r.Errors, ElapsedNs: int64(r.Elapsed), RPS: r.RPS,
		ByServer: r.ByServer, Latency: r.Latency, Connect: r.Connect}
	if r.FirstError != nil {
		rep.FirstError = r.FirstError.Error()
	}
	return rep
}

// Result converts a report back.
func (rep LoadReport) Result() LoadResult {
	r := LoadResult{Requests: rep.Requests, Errors: rep.Errors, Elapsed: time.Duration(rep.ElapsedNs), RPS: rep.RPS,
		ByServer: rep.ByServer, Latency: rep.Latency, Connect: rep.Connect}
	if rep.FirstError != "" {
		r.FirstError = errors.New(rep.FirstError)
	}
	if r.Latency == nil {
		r.Latency = &Histogram{}
	}
	if r.Connect == nil {
		r.Connect = &Histogram{}
	}
	return r
}

// histJSON is a Histogram on the wire: the non-empty buckets only.
type histJSON struct {
	Buckets [][2]uint64 `json:"buckets"` // [index, count]
	N       uint64      `json:"n"`
	Sum     float64     `json:"sum"`
	Min     int64       `json:"min_ns"`
	Max     int64       `json:"max_ns"`
}

// MarshalJSON writes the histogram's non-empty buckets.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	j := histJSON{N: h.n, Sum: h.sum, Min: int64(h.min), Max: int64(h.max), Buckets: [][2]uint64{}}
	for i, c := range h.counts {
		if c != 0 {
			j.Buckets = append(j.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote; bucket indexes out of range
// or counts that do not add up to n are an error.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var nh Histogram
	var total uint64
	for _, bc := range j.Buckets {
		if bc[0] >= histBuckets {
			return fmt.Errorf("lb: histogram bucket %d out of range", bc[0])
		}
		nh.counts[bc[0]] += bc[1]
		total += bc[1]
	}
	if total != j.N || j.Min < 0 || j.Max < j.Min {
		return errors.New("lb: inconsistent histogram")
	}
	nh.n, nh.sum, nh.min, nh.max = j.N, j.Sum, time.Duration(j.Min), time.Duration(j.Max)
	*h = nh
	return nil
}
