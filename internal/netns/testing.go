package netns

import "testing"

// Require skips the test, saying why, when this process cannot make
// network namespaces (not root, or no `ip` command).
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// ForTest makes a namespace for a test (skipping the test if it cannot) and
// removes it when the test ends, failed or not.
func ForTest(t testing.TB, label string) *NS {
	t.Helper()
	Require(t)
	ns, err := New(label)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("removing namespace: %v", err)
		}
	})
	return ns
}
