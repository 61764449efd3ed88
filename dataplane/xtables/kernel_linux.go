package xtables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/svctrace/svctrace/trace/iptables"
)

// IPT_SO_GET_INFO and IPT_SO_GET_ENTRIES: a legacy table's size and hooks, and its entries.
const (
	iptSoGetInfo    = 64
	iptSoGetEntries = 65
	getInfoSize     = 84 // struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size
	getEntriesHead  = 40 // struct ipt_get_entries: name[32], size, then the entries, aligned to 8
)

func init() {
	hugePages = func(b []byte) {
		if len(b) < 2<<20 {
			return
		}
		start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		from := (start + 2<<20 - 1) &^ (2<<20 - 1)
		to := (start + uintptr(len(b))) &^ (2<<20 - 1)
		if to > from {
			_ = unix.Madvise(b[from-start:to-start], unix.MADV_HUGEPAGE)
		}
	}
}

// legacyTableNames are the legacy tables the kernel has, in the order iptables-legacy-save
// prints them. Only these are asked for: asking for another loads its module.
func legacyTableNames() ([]string, error) {
	names, err := os.ReadFile("/proc/net/ip_tables_names")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(names)), nil
}

// getInfo asks the kernel for a legacy table's hooks, entry count and size (no entry is copied).
func getInfo(fd int, name string) (t KernelTable, size int, err error) {
	if len(name) >= 32 {
		return t, 0, fmt.Errorf("table name %q is too long", name)
	}
	var info [getInfoSize]byte
	copy(info[:], name)
	n := uint32(len(info))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, iptSoGetInfo,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0); e != 0 {
		return t, 0, fmt.Errorf("IPT_SO_GET_INFO %s: %w", name, e)
	}
	t = KernelTable{Name: name, ValidHooks: binary.NativeEndian.Uint32(info[32:])}
	for h := range 5 {
		t.HookEntry[h] = binary.NativeEndian.Uint32(info[36+4*h:])
		t.Underflow[h] = binary.NativeEndian.Uint32(info[56+4*h:])
	}
	t.Count = int(binary.NativeEndian.Uint32(info[76:]))
	return t, int(binary.NativeEndian.Uint32(info[80:])), nil
}

// legacyEntries is how many entries the kernel's legacy iptables tables hold (rules, and a head
// and a policy entry per chain), asked with IPT_SO_GET_INFO, which copies no entry: microseconds,
// against the seconds `iptables-legacy-save` spends fetching and printing them. 0 when it cannot
// tell.
func legacyEntries() int {
	names, err := legacyTableNames()
	if err != nil {
		return 0
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	total := 0
	for _, name := range names {
		if t, _, err := getInfo(fd, name); err == nil {
			total += t.Count
		}
	}
	return total
}

// maxKernelTable bounds one table's entries (the 10,000-Service node's nat table: 105 MB).
const maxKernelTable = 1 << 30

// getEntries copies a legacy table's entries out of the kernel into memory of their own (not
// the Go heap's: release gives it back at once). A table that changes between the two calls
// is asked again.
func getEntries(fd int, name string) (t KernelTable, release func(), err error) {
	for try := 0; ; try++ {
		var size int
		if t, size, err = getInfo(fd, name); err != nil {
			return t, nil, err
		}
		if size > maxKernelTable {
			return t, nil, fmt.Errorf("legacy table %s is larger than %d MiB", name, maxKernelTable>>20)
		}
		buf, err := unix.Mmap(-1, 0, getEntriesHead+size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return t, nil, fmt.Errorf("memory for legacy table %s: %w", name, err)
		}
		// Huge pages where the kernel allows them: a fresh page's first write is a fault,
		// and 2 MiB pages take a 512th of them.
		_ = unix.Madvise(buf, unix.MADV_HUGEPAGE)
		copy(buf, name)
		binary.NativeEndian.PutUint32(buf[32:], uint32(size))
		n := uint32(len(buf))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, iptSoGetEntries,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if e == 0 {
			t.Entries = buf[getEntriesHead : getEntriesHead+size]
			t.SetName = ipsetNames(fd)
			t.Done = func(offset int) {
				// Whole huge pages behind the printer go back to the kernel now.
				if n := (getEntriesHead + offset) &^ (2<<20 - 1); n > 0 {
					_ = unix.Madvise(buf[:n], unix.MADV_DONTNEED)
				}
			}
			return t, func() { _ = unix.Munmap(buf) }, nil
		}
		_ = unix.Munmap(buf)
		// EAGAIN: the table changed size since IPT_SO_GET_INFO (a writer committed).
		if !errors.Is(e, unix.EAGAIN) || try == 4 {
			return t, nil, fmt.Errorf("IPT_SO_GET_ENTRIES %s: %w", name, e)
		}
	}
}

// ipsetNames names ipsets by their kernel index, as iptables-legacy-save does for the set match:
// ipset's IP_SET_OP_GET_BYINDEX on a socket of the IPv4 family (SO_IP_SET), each index asked
// once.
func ipsetNames(fd int) func(index uint16) (string, error) {
	const (
		soIPSet       = 83 // SO_IP_SET
		opGetByIndex  = 7  // IP_SET_OP_GET_BYINDEX
		protocolMin   = 6  // IPSET_PROTOCOL_MIN: the version every kernel since 3.x accepts
		nameLen       = 32 // IPSET_MAXNAMELEN
		reqGetSetSize = 40 // struct ip_set_req_get_set: op, version, then the name or index
	)
	names := map[uint16]string{}
	return func(index uint16) (string, error) {
		if name, ok := names[index]; ok {
			return name, nil
		}
		var req [reqGetSetSize]byte
		binary.NativeEndian.PutUint32(req[0:], opGetByIndex)
		binary.NativeEndian.PutUint32(req[4:], protocolMin)
		binary.NativeEndian.PutUint16(req[8:], index)
		n := uint32(len(req))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, soIPSet,
			uintptr(unsafe.Pointer(&req[0])), uintptr(unsafe.Pointer(&n)), 0)
		if e != 0 {
			return "", fmt.Errorf("the name of ipset %d: %w", index, e)
		}
		name := cstring(req[8 : 8+nameLen])
		names[index] = name
		return name, nil
	}
}

// ReadKernel reads the legacy iptables tables straight from the kernel and parses them, with the
// text `iptables-legacy-save -c` would print (Dump): the kernel's copy of the entries is the
// one slow step iptables-legacy-save and this share, and printing and parsing run on all cores
// as the text is made. An *UnsupportedError says the tables hold something only
// iptables-legacy-save prints; any error leaves the caller to run it.
func ReadKernel() (*iptables.Ruleset, *Dump, error) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return nil, nil, &UnsupportedError{What: "a 32-bit build reads the kernel's 64-bit layout wrongly"}
	}
	names, err := legacyTableNames()
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 {
		return nil, nil, noNatError{what: "the kernel's legacy tables"}
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(fd)
	tables := make([]KernelTable, 0, len(names))
	for _, name := range names {
		t, release, err := getEntries(fd, name)
		if err != nil {
			return nil, nil, err
		}
		defer release()
		tables = append(tables, t)
	}
	// The rules' memory is not made ready up front (as for iptables-save's pipe, while it is
	// silent): here it would add to the kernel's entries, which are all in memory until the
	// printer passes them.
	p := newParser(4 * ruleBlock)
	p.huge = true
	now := time.Now()
	return p.parseChunks(func(emit func([]byte) error) error {
		for i := range tables {
			if err := tables[i].WriteSave(now, 4<<20, emit); err != nil {
				return err
			}
		}
		return nil
	})
}
