//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svctrace/svctrace/dataplane/ipvsadm"
	"github.com/svctrace/svctrace/test/e2e/harness"
)

// nsRunner runs commands in a network namespace.
type nsRunner string

func (ns nsRunner) Run(_ context.Context, argv ...string) ([]byte, error) {
	return harness.NS(string(ns), argv...)
}

// inNetNS runs fn on an OS thread that joined the named network namespace, then returns the
// thread to this process's namespace before letting it go.
//
// The thread must not end: the harness starts its pods and kube-proxy with Pdeathsig, which the
// kernel sends when the thread that forked the process ends, not the process, and any thread may
// have forked one (a thread that ended with its goroutine killed a pod now and then, failing every
// later test that used it). Nor may it run other goroutines while in another namespace.
func inNetNS(t *testing.T, name string, fn func()) (tid int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid = unix.Gettid()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer home.Close()
		f, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("returning the thread to the test's network namespace: %w", err)
			select {} // neither hand the thread back nor let it end (see above)
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return tid
}

// TestIPSetMembersAsTheKernelSays: a live IPVS-mode trace asks the kernel about its packet's
// ipset lookups over netlink (ipvsadm.TestMember) instead of reading `ipset save`. In a network
// namespace of its own, with sets of each type kube-proxy's IPVS mode creates, each answer must be
// the one written here and the one `ipset save`'s members give; ReadIPSetHeaders must list every
// set with its type and family and no members.
func TestIPSetMembersAsTheKernelSays(t *testing.T) {
	const ns = "svctrace-ipset"
	_ = exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	restore := `create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-CLUSTER-IP 10.96.0.10,tcp:53
add KUBE-CLUSTER-IP 10.96.0.10,udp:53
add KUBE-CLUSTER-IP 10.96.30.10,tcp:80
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536
add KUBE-LOOP-BACK 10.244.3.11,tcp:8080,10.244.3.11
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536
add KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.10,tcp:80,198.51.100.0/24
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
add KUBE-NODE-PORT-TCP 30080
create KUBE-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536
add KUBE-IPVS-IPS 10.96.0.10
create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536
add KUBE-6-CLUSTER-IP fd00:10:96::a,tcp:80
`
	if _, err := harness.NSInput(ns, []byte(restore), "ipset", "restore"); err != nil {
		t.Fatal(err)
	}
	save, err := harness.NS(ns, "ipset", "save")
	if err != nil {
		t.Fatal(err)
	}
	whole, err := ipvsadm.ParseIPSet(save)
	if err != nil {
		t.Fatal(err)
	}
	headers, err := ipvsadm.ReadIPSetHeaders(context.Background(), nsRunner(ns))
	if err != nil {
		t.Fatal(err)
	}
	if len(headers) != 6 {
		t.Fatalf("ipset list -t gave %d sets, want 6: %v", len(headers), headers)
	}
	for name, h := range headers {
		w := whole[name]
		if w == nil || h.Type != w.Type || h.Family != w.Family || !h.Partial || len(h.Members) != 0 {
			t.Errorf("%s: header %+v, ipset save %+v", name, h, w)
		}
	}
	if headers["KUBE-6-CLUSTER-IP"].Family != "inet6" || headers["KUBE-NODE-PORT-TCP"].Family != "" {
		t.Errorf("families: %q %q", headers["KUBE-6-CLUSTER-IP"].Family, headers["KUBE-NODE-PORT-TCP"].Family)
	}
	cases := []struct {
		set, values string
		want        bool
	}{
		{"KUBE-CLUSTER-IP", "10.96.0.10,tcp:53", true},
		{"KUBE-CLUSTER-IP", "10.96.0.10,udp:53", true},
		{"KUBE-CLUSTER-IP", "10.96.0.10,tcp:54", false},
		{"KUBE-CLUSTER-IP", "10.96.0.11,tcp:53", false},
		{"KUBE-CLUSTER-IP", "10.96.30.10,sctp:80", false},
		{"KUBE-CLUSTER-IP", "fd00:10:96::a,tcp:80", false},
		{"KUBE-LOOP-BACK", "10.244.3.11,tcp:8080,10.244.3.11", true},
		{"KUBE-LOOP-BACK", "10.244.3.12,tcp:8080,10.244.3.11", false},
		{"KUBE-LOOP-BACK", "10.244.3.11,tcp:8080,10.244.3.99", false},
		{"KUBE-LOAD-BALANCER-SOURCE-CIDR", "203.0.113.10,tcp:80,198.51.100.77", true},
		{"KUBE-LOAD-BALANCER-SOURCE-CIDR", "203.0.113.10,tcp:80,198.51.101.1", false},
		{"KUBE-LOAD-BALANCER-SOURCE-CIDR", "203.0.113.10,udp:80,198.51.100.77", false},
		{"KUBE-NODE-PORT-TCP", "30080", true},
		{"KUBE-NODE-PORT-TCP", "30081", false},
		{"KUBE-IPVS-IPS", "10.96.0.10", true},
		{"KUBE-IPVS-IPS", "10.96.0.11", false},
		{"KUBE-6-CLUSTER-IP", "fd00:10:96::a,tcp:80", true},
		{"KUBE-6-CLUSTER-IP", "fd00:10:96::b,tcp:80", false},
		{"KUBE-6-CLUSTER-IP", "10.96.0.10,tcp:53", false},
	}
	tid := inNetNS(t, ns, func() {
		for _, c := range cases {
			vals := strings.Split(c.values, ",")
			got, err := ipvsadm.TestMember(headers[c.set], vals)
			if err != nil {
				t.Errorf("%s %s: %v", c.set, c.values, err)
				continue
			}
			if saved := whole[c.set].Contains(vals); got != c.want || saved != c.want {
				t.Errorf("%s %s: the kernel says %v, ipset save's members %v, want %v", c.set, c.values, got, saved, c.want)
			}
		}
		if _, err := ipvsadm.TestMember(headers["KUBE-CLUSTER-IP"], []string{"10.96.0.10"}); err == nil {
			t.Error("one value for a set of two dimensions: no error")
		}
	})
	// The thread lives on, back in the test's namespace: a thread that ended would take the
	// harness's processes it forked with it (inNetNS).
	time.Sleep(200 * time.Millisecond)
	home, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if its, err := os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", tid)); err != nil || its != home {
		t.Errorf("the thread that joined %s: %q, %v; want it alive, in %s", ns, its, err, home)
	}
}
