package main

import (
	"encoding/binary"
	"net/http"
	"strconv"
)

// maxBytesBody bounds /bytes?n= (16 GiB): a larger request is a mistake.
const maxBytesBody = 1 << 34

// serveBytes answers GET /bytes?n=N with N deterministic bytes: word k
// (bytes 8k..8k+7) is SplitMix64's output k, little endian, cut at N bytes
// (the same stream as test/interop's Pattern), so a client can check the
// body's SHA-256 without the server sending it. The interop tests download
// 64 MiB of it with curl through the gateway.
func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 || n > maxBytesBody {
		http.Error(w, "want /bytes?n=N with 0 ≤ N ≤ 17179869184", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	buf := make([]byte, 256<<10)
	for off := int64(0); off < n; {
		chunk := buf
		if r := n - off; r < int64(len(chunk)) {
			chunk = chunk[:r]
		}
		// off is a multiple of 8 here: only the stream's end is cut.
		for i := 0; i < len(chunk); i += 8 {
			var word [8]byte
			binary.LittleEndian.PutUint64(word[:], splitmix64(uint64(off+int64(i))/8))
			copy(chunk[i:], word[:])
		}
		if _, err := w.Write(chunk); err != nil {
			return // the client went away
		}
		off += int64(len(chunk))
	}
}

// splitmix64 is Steele, Lea and Flood's SplitMix64 output function; output
// k is the (k+1)th of the generator seeded with 0.
func splitmix64(k uint64) uint64 {
	z := k*0x9e3779b97f4a7c15 + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
