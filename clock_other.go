//go:build !amd64

package ultcp

func rdtsc() uint64 { return 0 }

const haveTSC = false
