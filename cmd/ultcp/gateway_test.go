package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestGatewayRefusesTheInitNetworkNamespace(t *testing.T) {
	root, err := inInitNetns()
	if err != nil {
		t.Fatal(err)
	}
	if !root {
		t.Skip("the test does not run in the init network namespace")
	}
	var out, errb bytes.Buffer
	code := run([]string{"gateway", "--fabric-dir", t.TempDir(), "--tun", "ultcpT0"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "refusing to run in the init network namespace") {
		t.Fatalf("exit %d, stderr %q; want 1 and the refusal", code, errb.String())
	}
}

func TestGatewayFlagErrorsAreClear(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "10.78.0.1"}, "--addr 10.78.0.1 is not in --subnet 10.77.0.0/16"},
		{[]string{"--addr", "fe80::1"}, `--addr "fe80::1" is not an IPv4 address`},
		{[]string{"--subnet", "10.77.0.1/16"}, `--subnet "10.77.0.1/16" is not an IPv4 prefix`},
		{[]string{"--custody", "lots"}, "--custody"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"gateway", "--allow-root-netns=false"}, tc.args...), &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
