package main

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"
)

// SplitMix64 seeded with 0 starts e220a8397b1dcdaf, 6e789e6aa1b965f4
// (the reference values of the generator); the body is those words little
// endian.
func TestBytesServesSplitMix64Stream(t *testing.T) {
	rec := httptest.NewRecorder()
	handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/bytes?n=13", nil))
	want, _ := hex.DecodeString("afcd1d7b39a820e2f465b9a16a")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatalf("GET /bytes?n=13 = %d %x, want 200 %x", rec.Code, rec.Body.Bytes(), want)
	}
	if cl := rec.Header().Get("Content-Length"); cl != "13" {
		t.Fatalf("Content-Length %q, want 13", cl)
	}
}

func TestBytesLongBodyIsOneStreamAcrossChunks(t *testing.T) {
	rec := httptest.NewRecorder()
	const n = 256<<10 + 20 // crosses the server's 256 KiB chunk
	handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/bytes?n=262164", nil))
	b := rec.Body.Bytes()
	if len(b) != n {
		t.Fatalf("%d bytes, want %d", len(b), n)
	}
	// Word 32768 (at byte 262144) is SplitMix64's output 32768.
	var word [8]byte
	for i := range word {
		word[i] = byte(splitmix64(32768) >> (8 * i))
	}
	if !bytes.Equal(b[262144:262152], word[:]) {
		t.Fatalf("bytes at 256 KiB = %x, want %x", b[262144:262152], word)
	}
}

func TestBytesRejectsBadN(t *testing.T) {
	for _, q := range []string{"/bytes", "/bytes?n=x", "/bytes?n=-1", "/bytes?n=17179869185"} {
		rec := httptest.NewRecorder()
		handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", q, nil))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", q, rec.Code)
		}
	}
}
