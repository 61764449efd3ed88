package xtables

import (
	"encoding/binary"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iptSoGetInfo is IPT_SO_GET_INFO: a legacy table's size without its entries.
const iptSoGetInfo = 64

// legacyEntries is how many entries the kernel's legacy iptables tables hold (rules, and a head
// and a policy entry per chain), asked with IPT_SO_GET_INFO, which copies no entry: microseconds,
// against the seconds `iptables-legacy-save` spends fetching and printing them. Only the tables
// the kernel already has are asked (/proc/net/ip_tables_names: asking for another loads its
// module). 0 when it cannot tell.
func legacyEntries() int {
	names, err := os.ReadFile("/proc/net/ip_tables_names")
	if err != nil {
		return 0
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	total := 0
	for _, name := range strings.Fields(string(names)) {
		// struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size.
		var info [84]byte
		if len(name) >= 32 {
			continue
		}
		copy(info[:], name)
		size := uint32(len(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, iptSoGetInfo,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 {
			continue
		}
		total += int(binary.NativeEndian.Uint32(info[76:80]))
	}
	return total
}
