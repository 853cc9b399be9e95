module github.com/ultcp/ultcp/bench/gvisor

go 1.26.0

require github.com/ultcp/ultcp v0.0.0

replace github.com/ultcp/ultcp => ../..

// gVisor itself is added with `go get gvisor.dev/gvisor@go` (the branch that
// builds with the go tool). On the machine where this module was written the
// module proxy refused it (403 Forbidden, "This module version is not
// available") and gvisor.dev was unreachable directly, so no require line is
// recorded yet and `ultcp bench` reports the gvisor transport as skipped.
