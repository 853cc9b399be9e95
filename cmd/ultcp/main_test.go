package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ultcp/ultcp/internal/proc"
)

func TestMain(m *testing.M) {
	proc.RunChild()
	os.Exit(m.Run())
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestHelpListsEverySubcommand(t *testing.T) {
	code, out, _ := runCLI("help")
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, name := range []string{"bench", "help"} {
		if !strings.Contains(out, "\n  "+name+" ") {
			t.Errorf("help output does not list %q:\n%s", name, out)
		}
	}
}

func TestHelpBenchListsFlagsAndTransports(t *testing.T) {
	_, out, _ := runCLI("help", "bench")
	for _, want := range []string{"-quick", "-json FILE", "-plot FILE", "-transports LIST", "-pin", "-update-doc FILE", "  ultcp-zc ", "  kernel-tcp ", "ultcp bench fabric"} {
		if !strings.Contains(out, want) {
			t.Errorf("ultcp help bench does not mention %q:\n%s", want, out)
		}
	}
}

func TestNoArgumentsIsUsageError(t *testing.T) {
	if code, _, errOut := runCLI(); code != 2 || !strings.Contains(errOut, "usage: ultcp") {
		t.Errorf("exit %d, stderr %q; want 2 and the usage", code, errOut)
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	if code, _, errOut := runCLI("frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q; want 2 and the command named", code, errOut)
	}
}

func TestBenchFabricRejectsUnknownSection(t *testing.T) {
	if code, _, errOut := runCLI("bench", "fabric", "--sections", "fabric,nosuch"); code != 2 || !strings.Contains(errOut, `unknown section "nosuch"`) {
		t.Errorf("exit %d, stderr %q; want 2 and the section named", code, errOut)
	}
}

func TestBenchRejectsUnknownTransport(t *testing.T) {
	if code, _, errOut := runCLI("bench", "--transports", "unix,nosuch"); code != 2 || !strings.Contains(errOut, `unknown transport "nosuch"`) {
		t.Errorf("exit %d, stderr %q; want 2 and the transport named", code, errOut)
	}
}

func TestBenchRejectsPNGPlot(t *testing.T) {
	if code, _, errOut := runCLI("bench", "--plot", "x.png"); code != 2 || !strings.Contains(errOut, "only SVG") {
		t.Errorf("exit %d, stderr %q; want 2 and the reason", code, errOut)
	}
}

func TestBenchRejectsStrayArgument(t *testing.T) {
	if code, _, errOut := runCLI("bench", "quick"); code != 2 || !strings.Contains(errOut, `unexpected argument "quick"`) {
		t.Errorf("exit %d, stderr %q; want 2", code, errOut)
	}
}

func TestReplaceGeneratedKeepsHandWrittenText(t *testing.T) {
	p := filepath.Join(t.TempDir(), "doc.md")
	old := "# Title\nmethod\n" + docBegin + "\nold table\n" + docEnd + "\nafter\n"
	if err := os.WriteFile(p, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceGenerated(p, []byte("new table\n")); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	want := "# Title\nmethod\n" + docBegin + "\nnew table\n" + docEnd + "\nafter\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestReplaceGeneratedWithoutMarkersFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(p, []byte("# no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceGenerated(p, []byte("x")); err == nil {
		t.Fatal("replaceGenerated succeeded on a file without markers")
	}
}
