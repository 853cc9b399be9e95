package ultcp

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// roleHTTP serves net/http on ultcp: /hello/NAME answers "hello NAME",
// /big answers 1 MiB.
func roleHTTP(args []string) error {
	s, l, err := childStack(args)
	if err != nil {
		return err
	}
	defer s.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.PathValue("name"))
	})
	big := strings.Repeat("0123456789abcdef", 1<<16)
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, big)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	untilStdinCloses()
	srv.Close()
	return nil
}

func httpCounts() (keepAlive, fresh int) {
	if testing.Short() || raceEnabled {
		return 1000, 100
	}
	return 10000, 1000
}

func TestHTTPServerAndClientInTwoProcesses(t *testing.T) {
	dir := testDir(t)
	startChild(t, "http", dir, addrB, 80)
	a := newStack(t, dir, addrA)
	d := &Dialer{Stack: a, Timeout: 5 * time.Second}
	get := func(c *http.Client, path, want string) {
		t.Helper()
		resp, err := c.Get("http://10.77.0.2" + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("GET %s: %d %q (%d bytes), %v", path, resp.StatusCode, body[:min(len(body), 40)], len(body), err)
		}
	}
	keepAlive, fresh := httpCounts()

	kc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
	start := time.Now()
	for i := range keepAlive {
		get(kc, fmt.Sprintf("/hello/%d", i), fmt.Sprintf("hello %d", i))
	}
	t.Logf("%d keep-alive requests in %v (%v each)", keepAlive, time.Since(start), time.Since(start)/time.Duration(keepAlive))
	get(kc, "/big", strings.Repeat("0123456789abcdef", 1<<16))
	opens := a.Stats().ActiveOpens

	fc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	start = time.Now()
	for i := range fresh {
		get(fc, fmt.Sprintf("/hello/f%d", i), fmt.Sprintf("hello f%d", i))
	}
	t.Logf("%d requests on fresh connections in %v (%v each)", fresh, time.Since(start), time.Since(start)/time.Duration(fresh))
	st := a.Stats()
	if opens != 1 {
		t.Fatalf("%d connections for the keep-alive requests, want 1", opens)
	}
	if st.ActiveOpens != uint64(1+fresh) || st.AttemptFails != 0 {
		t.Fatalf("%d connections opened (%d failed), want %d", st.ActiveOpens, st.AttemptFails, 1+fresh)
	}
}
