package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VMNodeName is the node the IPVS VM joins the cluster as; VMNodeIP is its address on QEMU's
// user network (also how it appears in its Node object).
const (
	VMNodeName = "vm1"
	VMNodeIP   = "10.0.2.15"
	VMPodCIDR  = "10.244.3.0/24"
	// vmAPIAddr is where the guest reaches the API server: QEMU forwards it (guestfwd) to
	// APIHostAddr, and the guest can reach nothing else.
	vmAPIAddr = "10.0.2.100"
)

// VM is a QEMU guest running Debian's cloud kernel (this machine's kernel has no IPVS).
type VM struct {
	// KernelDir is the unpacked linux-image package (hack/ipvs-vm/kernel.sh).
	KernelDir string
	// BinDir holds the static binaries copied into the guest (kube-proxy, netprobe, svctrace).
	BinDir string
	// Hack is the hack/ipvs-vm directory.
	Hack string
}

// CreateVMNode creates the Node object of the VM.
func (c *Cluster) CreateVMNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: VMNodeName, Labels: map[string]string{"kubernetes.io/hostname": VMNodeName}},
		Spec:       corev1.NodeSpec{PodCIDR: VMPodCIDR, PodCIDRs: []string{VMPodCIDR}},
	}
	created, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: VMNodeIP}, {Type: corev1.NodeHostName, Address: VMNodeName}}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	_, err = c.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// AddAPIPod creates only the Pod object (running, with its IP): the pod's network lives elsewhere
// (inside the VM).
func (c *Cluster) AddAPIPod(ctx context.Context, s PodSpec) error {
	if err := c.ensureNamespace(ctx, s.Namespace); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels},
		Spec:       corev1.PodSpec{NodeName: s.Node, Containers: []corev1.Container{{Name: "netprobe", Image: "svctrace.local/netprobe"}}},
	}
	created, err := c.Client.CoreV1().Pods(s.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	return c.setPodStatus(ctx, created, podIPs(s.IP), !s.NotReady)
}

// Run boots the VM with the scenario script and returns what the guest printed on its console.
// The guest powers itself off when the script ends. files are extra "HOSTPATH:GUESTPATH" copies.
func (vm *VM) Run(ctx context.Context, c *Cluster, script string, timeout time.Duration, files ...string) (string, error) {
	dir, err := os.MkdirTemp(c.Dir, "vm-")
	if err != nil {
		return "", err
	}
	scenario := filepath.Join(dir, "scenario.sh")
	if err := os.WriteFile(scenario, []byte(script), 0o755); err != nil {
		return "", err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		return "", err
	}
	guest := strings.Replace(string(kc), "https://"+APIHostAddr+":"+apiPort, "https://"+vmAPIAddr+":"+apiPort, 1)
	if err := os.WriteFile(kubeconfig, []byte(guest), 0o600); err != nil {
		return "", err
	}
	t := time.Now()
	initrd := filepath.Join(dir, "initrd.gz")
	args := append([]string{initrd, vm.KernelDir, vm.BinDir, scenario, kubeconfig + ":/kubeconfig"}, files...)
	build := exec.CommandContext(ctx, filepath.Join(vm.Hack, "build-initramfs.sh"), args...)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build initramfs: %w: %s", err, out)
	}
	c.Phase("VM initramfs", t)
	kernels, _ := filepath.Glob(filepath.Join(vm.KernelDir, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return "", fmt.Errorf("no kernel in %s", vm.KernelDir)
	}
	t = time.Now()
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// -accel tcg: KVM hangs on this machine. restrict=on: the guest reaches nothing but the API
	// server, through guestfwd. Its target is a command (netprobe relay), which QEMU starts for
	// each guest connection: a chardev target ("tcp:HOST:PORT") is one host connection for the
	// VM's whole life, so only the guest's first connection to the API server ever worked (a
	// restarted kube-proxy's TLS handshakes timed out).
	qemu := exec.CommandContext(runCtx, "qemu-system-x86_64", "-accel", "tcg", "-m", "3072", "-smp", "2",
		"-kernel", kernels[0], "-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1",
		"-nographic", "-no-reboot",
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,guestfwd=tcp:%s:%s-cmd:%s relay %s:%s", vmAPIAddr, apiPort, c.Netprobe, APIHostAddr, apiPort),
		"-device", "virtio-net-pci,netdev=n0")
	out, err := qemu.CombinedOutput()
	c.Phase("VM boot, scenario and power-off", t)
	if runCtx.Err() != nil {
		return string(out), fmt.Errorf("the VM did not finish within %s", timeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("qemu: %w", err)
	}
	return string(out), nil
}

var sectionRE = regexp.MustCompile(`(?s)==BEGIN ([^=\n]+)==\r?\n(.*?)==END ([^=\n]+)==`)

// Sections returns what the guest printed between "==BEGIN name==" and "==END name==".
func Sections(console string) map[string]string {
	out := map[string]string{}
	for _, m := range sectionRE.FindAllStringSubmatch(console, -1) {
		if m[1] == m[3] {
			out[m[1]] = strings.ReplaceAll(m[2], "\r\n", "\n")
		}
	}
	return out
}
