package bench

import (
	"bytes"
	"testing"
)

func TestTableTextAlignsNumbersRight(t *testing.T) {
	tb := Table{Title: "T", Header: []string{"size", "GB/s"}, Rows: [][]string{{"64 B", "0.04"}, {"1 MiB", "12.50"}}}
	var b bytes.Buffer
	tb.WriteText(&b)
	want := "T\n" +
		"size   GB/s\n" +
		"-----  -----\n" +
		"64 B    0.04\n" +
		"1 MiB  12.50\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := Table{Title: "T", Header: []string{"size", "GB/s"}, Rows: [][]string{{"64 B", "0.04"}}}
	var b bytes.Buffer
	tb.WriteMarkdown(&b)
	want := "**T**\n\n| size | GB/s |\n|---|---:|\n| 64 B | 0.04 |\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}
