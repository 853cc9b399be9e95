package cc

import (
	"fmt"
	"slices"
	"strings"
)

// constructors maps each algorithm's Name to a function making a fresh
// controller. Adding an algorithm is one line here.
var constructors = map[string]func(Config) Controller{
	"newreno": func(cfg Config) Controller { return &NewReno{cfg: cfg} },
	"cubic":   func(cfg Config) Controller { return &Cubic{cfg: cfg} },
}

// DefaultName is the algorithm New picks for an empty name: CUBIC, as in
// Linux, Windows and Apple's stacks (RFC 9438 §1), with HyStart++.
const DefaultName = "cubic"

// Names returns the names New accepts, sorted.
func Names() []string {
	names := make([]string, 0, len(constructors))
	for n := range constructors {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New returns a fresh controller of the algorithm called name ("" for
// DefaultName), configured
// by cfg, or an error naming the known algorithms when name is unknown or
// cfg is invalid. Each call returns a new controller: they hold one
// connection's state and must not be shared. Call Init before use.
func New(name string, cfg Config) (Controller, error) {
	if name == "" {
		name = DefaultName
	}
	mk, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("cc: unknown congestion control %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return mk(cfg), nil
}
