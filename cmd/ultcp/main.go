// Command ultcp is the command line of ultcp, the user-level TCP/IP stack.
//
//	ultcp bench [flags]   the NetPIPE comparison of ultcp with the alternatives
//	ultcp bench fabric    the fabric against its bare floors
//	ultcp help [command]  list the commands, or a command's flags
//
// The benchmarks run parts of themselves in child processes of this same
// binary (internal/proc), which is why main hands control to proc.RunChild
// before anything else.
//
// The command must never leave processes or shared memory behind: every
// child dies with it (PR_SET_PDEATHSIG) and every measurement is bounded in
// time, so an interrupted run cleans up after itself.
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/ultcp/ultcp/internal/proc"
)

// subcommand is one verb of the command line.
type subcommand struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
	usage   func(w io.Writer) // prints the flags; nil when there are none
}

// subcommands is filled in by init functions, so that help (which lists
// them) can itself be one.
var subcommands []subcommand

func init() {
	subcommands = append(subcommands,
		subcommand{name: "bench", summary: "the NetPIPE comparison: ultcp against kernel TCP, Unix sockets, gVisor, NPtcp (bench fabric: the fabric against bare floors)", run: runBench, usage: benchUsage},
		subcommand{name: "help", summary: "list the commands, or describe one: ultcp help bench", run: runHelp},
	)
}

func main() {
	proc.RunChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "-help" {
		name = "help"
	}
	c, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "ultcp: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

func lookup(name string) (subcommand, bool) {
	for _, c := range subcommands {
		if c.name == name {
			return c, true
		}
	}
	return subcommand{}, false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ultcp <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	// Files register their subcommands in init order; list them by name.
	sorted := slices.SortedFunc(slices.Values(subcommands), func(a, b subcommand) int { return strings.Compare(a.name, b.name) })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "ultcp help: unknown command %q (commands: %s)\n", args[0], names())
		return 2
	}
	fmt.Fprintf(stdout, "ultcp %s: %s\n", c.name, c.summary)
	if c.usage != nil {
		c.usage(stdout)
	}
	return 0
}

func names() string {
	var n []string
	for _, c := range subcommands {
		n = append(n, c.name)
	}
	return strings.Join(n, ", ")
}
