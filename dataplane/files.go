package dataplane

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxFileBytes bounds one input file: a dump, an objects file, a conntrack table, a snapshot's
// file. The recorded 10,000-Service node's dump is 35 MB; a gigabyte is far past any real node.
const MaxFileBytes = 1 << 30

// ReadFile reads a file a user named (--dataplane, --objects, --conntrack, --plan, --undo): a
// regular file of at most limit bytes. It never blocks on a FIFO or reads a device: the file is
// opened without blocking and refused unless fstat says it is regular.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadOpened(f, path, limit)
}

// ReadOpened reads a file already opened (without blocking: a FIFO must not be opened for reading
// the ordinary way): refused unless fstat says it is a regular file, and bounded by limit.
func ReadOpened(f fs.File, name string, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, limit>>20)
	}
	// Read into a buffer of the file's size plus one byte (to see it grow meanwhile), not one
	// grown by doubling: a 17 MB dump would otherwise cost 34 MB of fresh pages.
	data := make([]byte, 0, fi.Size()+1)
	r := io.LimitReader(f, limit+1)
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, rerr := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, limit>>20)
	}
	return data, nil
}
