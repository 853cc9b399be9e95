module github.com/ultcp/ultcp/bench/gvisor

go 1.26.0

require github.com/ultcp/ultcp v0.0.0

require (
	github.com/google/btree v1.1.2 // indirect
	golang.org/x/sys v0.50.0
	golang.org/x/time v0.7.0 // indirect
	gvisor.dev/gvisor v0.0.0-20250503011706-39ed1f5ac29c
)

replace github.com/ultcp/ultcp => ../..

// gVisor is pinned to the pseudo-version wireguard-go also pins: the
// module proxy refuses `go get gvisor.dev/gvisor@go` (403, "This module
// version is not available") but serves this commit of the go branch.
