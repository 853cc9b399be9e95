package main

import (
	"net/netip"
	"strings"

	"github.com/ultcp/ultcp/gateway"
	"github.com/ultcp/ultcp/gateway/lb"
)

// serviceFlags is `ultcp gateway --service VIP:PORT[=POLICY]`, repeatable:
// the policy of a load-balanced service (issue 8; gateway/service.go).
// Members join by listening on VIP:PORT; a service named nowhere here gets
// the default policy (queue) when its first member joins.
type serviceFlags struct {
	specs []string
	m     map[netip.AddrPort]lb.Policy
}

func (s *serviceFlags) String() string { return strings.Join(s.specs, ",") }

func (s *serviceFlags) Set(v string) error {
	m, err := gateway.ParseServices([]string{v})
	if err != nil {
		return err
	}
	if s.m == nil {
		s.m = map[netip.AddrPort]lb.Policy{}
	}
	for k, p := range m {
		s.m[k] = p
	}
	s.specs = append(s.specs, v)
	return nil
}

// apply sets the services' policies on g.
func (s *serviceFlags) apply(g *gateway.Gateway) error {
	for vip, p := range s.m {
		if err := g.SetServicePolicy(vip, p); err != nil {
			return err
		}
	}
	return nil
}
