//go:build race

package ultcp

const raceEnabled = true
