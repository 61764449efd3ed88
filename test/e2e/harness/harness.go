// Package harness runs a real Kubernetes control plane (etcd, kube-apiserver,
// kube-controller-manager) and a real kube-proxy in a node network namespace, with pods as network
// namespaces that answer "pod-name client-ip". Everything it starts it tracks by pid and stops;
// every namespace it makes is named svct-* and removed on Stop.
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Addresses of the harness's own test hosts. They exist only inside the namespaces it creates
// (and on the one veth that lets kube-proxy in the node namespace reach the API server).
const (
	APIHostAddr  = "172.31.250.1" // root-namespace end of the node's uplink veth; the API server binds here
	NodeIP       = "172.31.250.2" // node1's InternalIP
	NodeExtIP    = "198.51.100.1" // node1's address towards the "external" client namespace
	ExternalIP   = "198.51.100.10"
	ClusterCIDR  = "10.244.0.0/16"
	ServiceCIDR  = "10.96.0.0/16"
	Node1PodCIDR = "10.244.1.0/24"
	Node2PodCIDR = "10.244.2.0/24"
	NodeName     = "node1"
	// The cluster is dual-stack (IPv4 first): the IPv6 ranges and node addresses. Services are
	// IPv4-only unless they ask for both families (PreferDualStack), pods unless given an IP6.
	ServiceCIDR6  = "fd00:10:96::/112"
	ClusterCIDR6  = "fd00:10:244::/56"
	Node1PodCIDR6 = "fd00:10:244:1::/64"
	Node2PodCIDR6 = "fd00:10:244:2::/64"
	NodeIP6       = "fd00:172:31:250::2"
	Node2IP6      = "fd00:172:31:250::6"
	NodeExtIP6    = "2001:db8:100::1" // node1's IPv6 address towards the external namespace
	ExternalIP6   = "2001:db8:100::10"
	NodeNS        = "svct-node1"
	ExternalNS    = "svct-ext"
	apiPort       = "6443"
)

// Cluster is a running harness.
type Cluster struct {
	Dir        string
	BinDir     string // kube-apiserver, kube-proxy, kube-controller-manager, kubectl
	Netprobe   string
	Kubeconfig string
	Client     kubernetes.Interface

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	// logFrom is where each process's current run begins in its (appended) log file.
	logFrom map[string]int64
	netns   []string
	links   []string
	pods    map[string]*Pod
	Log     io.Writer
	started time.Time
	// pathPrefix is put first on PATH for processes started from now on; pathFor, for the
	// process of that name.
	pathPrefix string
	pathFor    map[string]string
	// KwokPath is put first on kwok's PATH: the directory of kubectl-svctrace, which the agent
	// pod's exec runs (AddAgentPod).
	KwokPath string
}

// Pod is a pod network namespace.
type Pod struct {
	Namespace, Name string
	IP, IP6         string
	Node            string
	NetNS           string
	hostVeth        string
}

// Phase logs what the harness did and how long it took.
func (c *Cluster) Phase(what string, start time.Time) {
	fmt.Fprintf(c.Log, "harness: %-44s %6.2fs\n", what, time.Since(start).Seconds())
}

// Start brings up etcd, kube-apiserver, kube-controller-manager and the node namespace.
// binDir holds the Kubernetes binaries (hack/k8s-binaries.sh), netprobe the pod program.
func Start(ctx context.Context, binDir, netprobe string, log io.Writer) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "svctrace-e2e-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, BinDir: binDir, Netprobe: netprobe, Log: log, procs: map[string]*exec.Cmd{}, logFrom: map[string]int64{}, pathFor: map[string]string{}, pods: map[string]*Pod{}, started: time.Now()}
	CleanLeftovers(log)
	if err := c.start(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// CleanLeftovers removes svct-* namespaces (and stops the processes in them) that an earlier,
// killed run left behind.
func CleanLeftovers(log io.Writer) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(l), " ")
		if !strings.HasPrefix(name, "svct-") {
			continue
		}
		pids, _ := exec.Command("ip", "netns", "pids", name).Output()
		for _, p := range strings.Fields(string(pids)) {
			_ = exec.Command("kill", "-9", p).Run()
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
		fmt.Fprintf(log, "harness: removed leftover namespace %s\n", name)
	}
	_ = exec.Command("ip", "link", "del", "svct-up").Run()
}

func (c *Cluster) start(ctx context.Context) error {
	t := time.Now()
	if err := c.setupNodeNetwork(); err != nil {
		return fmt.Errorf("node network: %w", err)
	}
	c.Phase("node and external namespaces", t)

	t = time.Now()
	etcdDir := filepath.Join(c.Dir, "etcd")
	if err := c.spawn("etcd", "", "etcd", "--data-dir", etcdDir,
		"--listen-client-urls", "http://127.0.0.1:23790", "--advertise-client-urls", "http://127.0.0.1:23790",
		"--listen-peer-urls", "http://127.0.0.1:23800", "--initial-advertise-peer-urls", "http://127.0.0.1:23800",
		"--initial-cluster", "default=http://127.0.0.1:23800"); err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://127.0.0.1:23790/health", 30*time.Second); err != nil {
		return fmt.Errorf("etcd did not become healthy: %w (log: %s)", err, c.logTail("etcd"))
	}
	c.Phase("etcd", t)

	t = time.Now()
	if err := c.writeCredentials(); err != nil {
		return err
	}
	if err := c.spawn("kube-apiserver", "", filepath.Join(c.BinDir, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:23790",
		"--bind-address="+APIHostAddr, "--advertise-address="+APIHostAddr, "--secure-port="+apiPort,
		"--cert-dir="+filepath.Join(c.Dir, "certs"),
		"--service-cluster-ip-range="+ServiceCIDR+","+ServiceCIDR6,
		"--service-node-port-range=30000-32767",
		"--service-account-key-file="+filepath.Join(c.Dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(c.Dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--token-auth-file="+filepath.Join(c.Dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
		"--v=1"); err != nil {
		return err
	}
	if err := c.waitAPI(ctx); err != nil {
		return fmt.Errorf("kube-apiserver did not become ready: %w (log: %s)", err, c.logTail("kube-apiserver"))
	}
	c.Phase("kube-apiserver", t)

	t = time.Now()
	if err := c.spawn("kube-controller-manager", "", filepath.Join(c.BinDir, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig, "--controllers=endpointslice", "--leader-elect=false",
		"--use-service-account-credentials=false", "--bind-address=127.0.0.1", "--secure-port=0",
		"--concurrent-service-endpoint-syncs=5", "--endpointslice-updates-batch-period=0s", "--v=1"); err != nil {
		return err
	}
	c.Phase("kube-controller-manager (endpointslice controller)", t)
	return c.createNodes(ctx)
}

func (c *Cluster) writeCredentials() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	files := map[string][]byte{
		"sa.key":     priv,
		"sa.pub":     pub,
		"tokens.csv": []byte("svctrace-admin-token,admin,admin,system:masters\nsvctrace-viewer-token,viewer,viewer,\n"),
	}
	kubeconfig := kubeconfigText("admin", "svctrace-admin-token")
	files["kubeconfig"] = []byte(kubeconfig)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return nil
}

func (c *Cluster) waitAPI(ctx context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	c.Client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz: %v %s", err, body)
		}
		if !c.alive("kube-apiserver") {
			return fmt.Errorf("the process exited")
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// spawn starts a process (in netns when given) with its output in DIR/NAME.log.
func (c *Cluster) spawn(name, netns, bin string, args ...string) error {
	logf, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	from, _ := logf.Seek(0, io.SeekEnd)
	argv := append([]string{bin}, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	c.mu.Lock()
	prefix := c.pathPrefix
	if p := c.pathFor[name]; p != "" {
		prefix = strings.Trim(p+":"+prefix, ":")
	}
	c.mu.Unlock()
	if prefix != "" {
		cmd.Env = append(os.Environ(), "PATH="+prefix+":"+os.Getenv("PATH"))
	}
	// Its own process group, so Stop can end it and anything it started, and Ctrl-C on the test
	// does not reach it before the harness has cleaned up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	c.mu.Lock()
	c.procs[name] = cmd
	c.logFrom[name] = from
	c.mu.Unlock()
	go func() { _ = cmd.Wait(); logf.Close() }()
	fmt.Fprintf(c.Log, "harness: started %s (pid %d)\n", name, cmd.Process.Pid)
	return nil
}

func (c *Cluster) alive(name string) bool {
	c.mu.Lock()
	cmd := c.procs[name]
	c.mu.Unlock()
	return cmd != nil && cmd.Process.Signal(syscall.Signal(0)) == nil && cmd.ProcessState == nil
}

// StopProcess stops one process the harness started (by its pid's process group) and waits.
func (c *Cluster) StopProcess(name string) {
	c.mu.Lock()
	cmd := c.procs[name]
	delete(c.procs, name)
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(cmd.Process.Pid, 0) != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	fmt.Fprintf(c.Log, "harness: stopped %s (pid %d)\n", name, cmd.Process.Pid)
}

// LogSinceStart returns what the process has logged since the harness last started it (its
// last 1 MiB at most).
func (c *Cluster) LogSinceStart(name string) string {
	c.mu.Lock()
	from := c.logFrom[name]
	c.mu.Unlock()
	f, err := os.Open(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size()-from > 1<<20 {
		from = st.Size() - 1<<20
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, from, 1<<20))
	return string(b)
}

func (c *Cluster) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop ends every process the harness started and removes its namespaces and links. It is safe
// to call more than once and after a failed Start.
func (c *Cluster) Stop() {
	t := time.Now()
	c.mu.Lock()
	names := make([]string, 0, len(c.procs))
	for n := range c.procs {
		names = append(names, n)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() { defer wg.Done(); c.StopProcess(n) }()
	}
	wg.Wait()
	for i := len(c.netns) - 1; i >= 0; i-- {
		_ = exec.Command("ip", "netns", "del", c.netns[i]).Run()
	}
	c.netns = nil
	for _, l := range c.links {
		_ = exec.Command("ip", "link", "del", l).Run()
	}
	c.links = nil
	if os.Getenv("SVCTRACE_E2E_KEEP") == "" {
		_ = os.RemoveAll(c.Dir)
	}
	c.Phase("teardown", t)
}

func run(argv ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func runAll(cmds [][]string) error {
	for _, a := range cmds {
		if err := run(a...); err != nil {
			return err
		}
	}
	return nil
}

// NS runs argv inside a network namespace and returns its output.
func NS(netns string, argv ...string) ([]byte, error) {
	full := append([]string{"ip", "netns", "exec", netns}, argv...)
	var stderr bytes.Buffer
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// NSInput is NS with stdin.
func NSInput(netns string, stdin []byte, argv ...string) ([]byte, error) {
	full := append([]string{"ip", "netns", "exec", netns}, argv...)
	var stderr bytes.Buffer
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (c *Cluster) setupNodeNetwork() error {
	for _, ns := range []string{NodeNS, ExternalNS} {
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		c.netns = append(c.netns, ns)
	}
	c.links = append(c.links, "svct-up")
	return runAll([][]string{
		// The node's uplink: only the API server listens on the root end.
		{"ip", "link", "add", "svct-up", "type", "veth", "peer", "name", "eth0", "netns", NodeNS},
		{"ip", "addr", "add", APIHostAddr + "/30", "dev", "svct-up"},
		{"ip", "link", "set", "svct-up", "up"},
		{"ip", "netns", "exec", NodeNS, "ip", "addr", "add", NodeIP + "/30", "dev", "eth0"},
		{"ip", "netns", "exec", NodeNS, "ip", "link", "set", "eth0", "up"},
		{"ip", "netns", "exec", NodeNS, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", NodeNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", NodeNS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"},
		// IPv6 addresses without duplicate address detection: usable at once.
		{"ip", "netns", "exec", NodeNS, "ip", "-6", "addr", "add", NodeIP6 + "/64", "dev", "eth0", "nodad"},
		// A node needs a route to Service and load balancer addresses before its OUTPUT rules
		// can DNAT them. Point them at the external namespace, never out of the sandbox: a
		// packet no rule rewrote dies there.
		// The "outside world": one client namespace on its own link.
		{"ip", "link", "add", "eth1", "netns", NodeNS, "type", "veth", "peer", "name", "eth0", "netns", ExternalNS},
		{"ip", "netns", "exec", NodeNS, "ip", "addr", "add", NodeExtIP + "/24", "dev", "eth1"},
		{"ip", "netns", "exec", NodeNS, "ip", "link", "set", "eth1", "up"},
		{"ip", "netns", "exec", ExternalNS, "ip", "addr", "add", ExternalIP + "/24", "dev", "eth0"},
		{"ip", "netns", "exec", ExternalNS, "ip", "link", "set", "eth0", "up"},
		{"ip", "netns", "exec", ExternalNS, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", ExternalNS, "ip", "route", "add", "default", "via", NodeExtIP},
		{"ip", "netns", "exec", NodeNS, "ip", "-6", "addr", "add", NodeExtIP6 + "/64", "dev", "eth1", "nodad"},
		{"ip", "netns", "exec", ExternalNS, "ip", "-6", "addr", "add", ExternalIP6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "netns", "exec", ExternalNS, "ip", "-6", "route", "add", "default", "via", NodeExtIP6},
		{"ip", "netns", "exec", NodeNS, "ip", "-6", "route", "add", ServiceCIDR6, "dev", "eth1"},
		{"ip", "netns", "exec", NodeNS, "ip", "route", "add", ServiceCIDR, "dev", "eth1"},
		{"ip", "netns", "exec", NodeNS, "ip", "route", "add", "203.0.113.0/24", "dev", "eth1"},
		// Pods route via 169.254.1.1, which the node answers for with proxy ARP; Linux only does
		// that for an address it routes out of another interface.
		{"ip", "netns", "exec", NodeNS, "ip", "route", "add", "169.254.1.1/32", "dev", "eth1"},
	})
}

func waitHTTP(ctx context.Context, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", url)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
